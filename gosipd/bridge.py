"""Two calls of one process connected: each hears the other and gets its DTMF.

The media loops stay native and separate (each call keeps its jitter buffer, pacing
and codec); what one delivers, 20 ms at a time after its jitter buffer, is queued for
the other to send on its own clock. The queue is bounded: when the two clocks drift
apart, or one side stalls, frames are dropped rather than the delay growing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from gosipd.call import Call

__all__ = ["MAX_BRIDGE_DELAY_SAMPLES", "bridge_calls"]

#: The most audio one side may have queued for the other (120 ms at 8 kHz).
MAX_BRIDGE_DELAY_SAMPLES = 960


async def bridge_calls(a: Call, b: Call) -> None:
    """Until either call ends; then the other is hung up."""
    async with trio.open_nursery() as nursery:

        async def until_ended(call: Call) -> None:
            await call.wait_ended()
            nursery.cancel_scope.cancel()

        for source, sink in ((a, b), (b, a)):
            nursery.start_soon(until_ended, source)
            nursery.start_soon(_audio, source, sink)
            nursery.start_soon(_dtmf, source, sink)
    for call in (a, b):
        if not call.ended:
            await call.hangup()


async def _audio(source: Call, sink: Call) -> None:
    from gosipd.call import CallError

    dropped = 0
    async for frame in source.audio():
        if sink.playback_queued > MAX_BRIDGE_DELAY_SAMPLES:
            dropped += 1
            if dropped in (1, 50) or dropped % 500 == 0:
                source.emit("call.bridge_dropped", to=sink.id, frames=dropped)
            continue
        try:
            sink.write(frame)
        except CallError:
            return  # the sink has ended


async def _dtmf(source: Call, sink: Call) -> None:
    from gosipd.call import CallError

    while digit := await source.collect_dtmf(1):
        try:
            await sink.send_dtmf(digit)
        except CallError:
            return
