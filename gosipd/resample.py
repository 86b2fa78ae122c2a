"""Streaming 2:1 resampling between the call's 8 kHz and a 16 kHz media stream.

A call's audio is G.711 at 8 kHz; a ``binary`` stream may want L16 at 16 kHz
(speech recognisers and voice agents often do). Audio arrives in frames of
any length (20 ms from the call, whatever the server sends), so each
direction keeps the filter's history between frames and the output is the
same as resampling the whole stream at once: no clicks at frame edges.

One linear-phase low-pass FIR (a Kaiser-windowed sinc, cut-off at 3.8 kHz,
over 60 dB down at 4 kHz's image) serves both ways: after zero-stuffing to
16 kHz (``Upsampler``), and before dropping every other sample
(``Downsampler``). Its delay, 2 ms, is the same both ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TAPS", "Downsampler", "Upsampler"]

#: Filter length: odd, so the delay is a whole number of 16 kHz samples (32 = 2 ms).
TAPS = 65
_CUTOFF_HZ = 3800.0
_KAISER_BETA = 7.0


def _kernel() -> np.ndarray:
    import numpy as np

    n = np.arange(TAPS) - (TAPS - 1) / 2
    ideal = 2 * _CUTOFF_HZ / 16000 * np.sinc(2 * _CUTOFF_HZ / 16000 * n)
    kernel: np.ndarray = ideal * np.kaiser(TAPS, _KAISER_BETA)
    return kernel / float(kernel.sum())  # unity gain at DC


def _clip16(x: np.ndarray) -> bytes:
    import numpy as np

    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


class Upsampler:
    """8 kHz int16 (native) in, 16 kHz little-endian int16 out, frame by frame."""

    def __init__(self) -> None:
        import numpy as np

        self._kernel = _kernel() * 2  # zero-stuffing halves the energy per sample
        self._history = np.zeros(TAPS - 1)

    def process(self, pcm: bytes) -> bytes:
        import numpy as np

        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        stuffed = np.zeros(2 * samples.size)
        stuffed[::2] = samples
        signal = np.concatenate([self._history, stuffed])
        self._history = signal[-(TAPS - 1) :]
        return _clip16(np.convolve(signal, self._kernel, mode="valid"))


class Downsampler:
    """16 kHz little-endian int16 in (any length), 8 kHz int16 (native) out."""

    def __init__(self) -> None:
        import numpy as np

        self._kernel = _kernel()
        self._history = np.zeros(TAPS - 1)
        self._phase = 0  # 1: the next filtered sample is dropped

    def process(self, pcm: bytes) -> bytes:
        import numpy as np

        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        signal = np.concatenate([self._history, samples])
        self._history = signal[-(TAPS - 1) :]
        filtered = np.convolve(signal, self._kernel, mode="valid")
        kept = filtered[self._phase :: 2]
        self._phase = (self._phase + filtered.size) % 2
        return np.clip(np.round(kept), -32768, 32767).astype(np.int16).tobytes()
