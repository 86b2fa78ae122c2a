"""``tone:HZ`` (or ``tone:HZ+HZ``): a steady tone until the far end hangs up (default 1 kHz)."""

from __future__ import annotations

import trio

from gosipd.call import Call, CallError

#: Seconds of tone kept queued ahead, so the tone never gaps between refills.
AHEAD_S = 1


async def run(call: Call) -> None:
    frequencies = call.app_arg or "1000"
    second = f"{frequencies}:{AHEAD_S * 1000}"
    try:
        await call.play_tones(second, wait=False)  # also checks the spec
        deadline = trio.current_time()
        while not call.ended:
            await call.play_tones(second, wait=False)
            deadline += AHEAD_S
            await trio.sleep_until(deadline)
    except CallError:
        if not call.ended:
            raise
