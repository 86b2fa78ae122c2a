"""``bridge:TARGET``: call TARGET (a SIP URI, or a number for the trunk) from this call's
process and connect the two ("connect the caller to an agent"). If TARGET never
answers, the call ends with cause ``app_error`` and the leg's reason."""

from __future__ import annotations

from gosipd.call import Call, CallError


async def run(call: Call) -> None:
    if not call.app_arg:
        raise CallError("bridge needs a target: bridge:sip:agent@example.com")
    leg = await call.dial(call.app_arg)
    await call.bridge(leg)
