"""``play:FILE``: play a WAV file (any rate, any channels), then hang up. FILE is relative
to ``[files] directory``."""

from __future__ import annotations

from gosipd.call import Call, CallError


async def run(call: Call) -> None:
    if not call.app_arg:
        raise CallError("the play app needs a file: play:prompt.wav (in the files directory)")
    await call.play(call.app_arg)
