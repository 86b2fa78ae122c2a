"""The receive jitter buffer (adaptive 20-200 ms, reordering, concealment, drift, resync).

It is implemented once, in Cython (``gosipd/_jitterbuffer.pyx``), because the
media loop runs it without the GIL on every packet and every tick; this
module is its home in the sans-I/O ``rtp`` package. It reads no clock and
touches no socket: ``push`` takes each packet with its arrival time in
nanoseconds and ``pop`` takes the playout time, so tests drive it with
simulated time exactly as the media loop drives it with the real one. The
design (timing, adaptation, concealment, resync) is described in the
extension's module docstring.
"""

from gosipd._jitterbuffer import (
    ACCEPTED,
    AUDIO,
    COMFORT_NOISE,
    CONCEAL_FRAMES,
    CONCEALED,
    DISCARDED,
    DUPLICATE,
    FRAME_KINDS,
    LATE,
    MAX_DELAY_MS,
    MIN_DELAY_MS,
    PARTIAL,
    RESYNC,
    SILENCE,
    STRETCHED,
    JitterBuffer,
)

__all__ = [
    "ACCEPTED",
    "AUDIO",
    "COMFORT_NOISE",
    "CONCEALED",
    "CONCEAL_FRAMES",
    "DISCARDED",
    "DUPLICATE",
    "FRAME_KINDS",
    "LATE",
    "MAX_DELAY_MS",
    "MIN_DELAY_MS",
    "PARTIAL",
    "RESYNC",
    "SILENCE",
    "STRETCHED",
    "JitterBuffer",
]
