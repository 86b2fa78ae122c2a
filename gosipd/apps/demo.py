"""``demo:FILE``: the caller's side of ``make run``. Records the call (stereo) to FILE,
waits for the IVR's prompt, keys in 1234#, listens to the digits read back, and
stays until the IVR hangs up (or 20 s pass)."""

from __future__ import annotations

import trio

from gosipd.call import Call, CallError

DIGITS = "1234#"


async def run(call: Call) -> None:
    if not call.app_arg:
        raise CallError("the demo app needs a file to record to: demo:call.wav")
    async with call.record(call.app_arg, stereo=True):
        await trio.sleep(1.2)  # the IVR's prompt
        await call.send_dtmf(DIGITS)
        with trio.move_on_after(20):
            await call.wait_ended()
