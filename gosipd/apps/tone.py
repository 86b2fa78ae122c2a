"""``tone:HZ`` (or ``tone:HZ+HZ``): a steady tone until the far end hangs up (default 1 kHz)."""

from __future__ import annotations

from gosipd.call import Call, CallError


async def run(call: Call) -> None:
    frequencies = call.app_arg or "1000"
    while not call.ended:
        try:
            await call.play_tones(f"{frequencies}:1000")
        except CallError:
            return
