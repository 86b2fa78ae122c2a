"""``record:FILE``: record what the far end says (stereo: both sides) until it hangs up.
FILE is a new file relative to ``[files] directory``."""

from __future__ import annotations

from gosipd.call import Call, CallError


async def run(call: Call) -> None:
    if not call.app_arg:
        raise CallError("the record app needs a file: record:call.wav (in the files directory)")
    async with call.record(call.app_arg, stereo=True):
        await call.wait_ended()
