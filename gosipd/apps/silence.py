"""``silence``: answer and say nothing (comfort noise) until the far end hangs up."""

from __future__ import annotations

from gosipd.call import Call


async def run(call: Call) -> None:
    await call.wait_ended()
