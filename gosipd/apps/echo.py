"""``echo``: send the caller's audio straight back (for tests, and for testing trunks)."""

from __future__ import annotations

from gosipd.call import Call


async def run(call: Call) -> None:
    async for frame in call.audio():
        call.write(frame)
