"""Audio files and tone specs for apps: any WAV in, 8 kHz mono int16 out; WAV recording.

Prompts come as whatever the app author had at hand (44.1 kHz stereo, 16 kHz
mono, 8-bit...), and a call speaks 8 kHz mono. ``load_wav`` converts with a
band-limited (windowed-sinc) resampler in numpy: this runs once per file,
not per frame, so clarity beats speed here.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np

from gosipd import _dsp

__all__ = ["RATE", "AudioError", "WavWriter", "load_wav", "resample", "tones_from_spec"]

RATE = 8000
FRAME_SAMPLES = 160
#: Half-width of the interpolation kernel, in input samples at the lower rate.
SINC_HALF_TAPS = 16
MAX_FILE_SECONDS = 3600
MAX_TONE_SEGMENTS = 256


class AudioError(ValueError):
    """A file or tone spec we cannot use; the message says why."""


def resample(samples: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """Band-limited resampling of float64 samples (a Kaiser-windowed sinc kernel)."""
    if rate_in == rate_out or samples.size == 0:
        return samples.astype(np.float64)
    ratio = rate_out / rate_in
    cutoff = min(1.0, ratio) * 0.95  # relative to the input Nyquist, with a guard band
    count = int(np.floor(samples.size * ratio))
    step = 1.0 / ratio
    half = int(np.ceil(SINC_HALF_TAPS / min(1.0, ratio)))
    padded = np.concatenate([np.zeros(half), samples.astype(np.float64), np.zeros(half + 1)])
    offsets = np.arange(-half + 1, half + 1)
    window_beta = 8.0
    out = np.empty(count)
    chunk = 8192
    for start in range(0, count, chunk):
        positions = np.arange(start, min(count, start + chunk)) * step
        base = np.floor(positions).astype(np.int64)
        taps = base[:, None] + offsets[None, :]
        distance = taps - positions[:, None]
        kernel = cutoff * np.sinc(cutoff * distance)
        # Kaiser window evaluated at each tap's real distance from the output instant
        kernel *= np.i0(
            window_beta * np.sqrt(np.clip(1 - (distance / (half + 1)) ** 2, 0, 1))
        ) / np.i0(window_beta)
        out[start : start + len(positions)] = np.sum(padded[taps + half] * kernel, axis=1)
    return out


def load_wav(path: str | Path) -> bytes:
    """A WAV file as 8 kHz mono int16 PCM (native endian), whatever its rate and channels."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.getnframes()
            if frames > rate * MAX_FILE_SECONDS:
                raise AudioError(f"{path}: longer than {MAX_FILE_SECONDS} s")
            raw = wav.readframes(frames)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file we can read ({exc})") from None
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) * 256.0
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float64)
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        ints = (
            bytes3[:, 0].astype(np.int32)
            | (bytes3[:, 1].astype(np.int32) << 8)
            | (bytes3[:, 2].astype(np.int32) << 16)
        )
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float64) / 256.0
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float64) / 65536.0
    else:
        raise AudioError(f"{path}: {width * 8}-bit samples are not supported")
    if channels > 1:
        data = data[: data.size - data.size % channels].reshape(-1, channels).mean(axis=1)
    data = resample(data, rate, RATE)
    return np.clip(np.round(data), -32768, 32767).astype(np.int16).tobytes()


_SEGMENT = re.compile(r"^\s*(\d+(?:\.\d+)?(?:\s*\+\s*\d+(?:\.\d+)?)*)\s*:\s*(\d+)\s*$")


def tones_from_spec(spec: str, level_dbov: float = -13.0) -> bytes:
    """``"1209+697:100,0:50,440:500"``: frequencies (``+`` for a sum) and milliseconds;
    frequency 0 is silence. Returns 8 kHz int16 PCM."""
    segments = [s for s in spec.split(",") if s.strip()]
    if not segments:
        raise AudioError("a tone spec needs at least one 'HZ[+HZ]:MS' segment")
    if len(segments) > MAX_TONE_SEGMENTS:
        raise AudioError(f"a tone spec has at most {MAX_TONE_SEGMENTS} segments")
    pieces = []
    for segment in segments:
        match = _SEGMENT.match(segment)
        if match is None:
            raise AudioError(f"tone segment {segment.strip()!r} is not 'HZ[+HZ...]:MS'")
        freqs = [float(f) for f in match.group(1).split("+")]
        ms = int(match.group(2))
        if not 0 < ms <= 60_000:
            raise AudioError(f"tone segment {segment.strip()!r}: duration must be 1-60000 ms")
        samples = RATE * ms // 1000
        if all(f == 0 for f in freqs):
            pieces.append(bytes(samples * 2))
            continue
        try:
            generator = _dsp.ToneGenerator([f for f in freqs if f > 0], level_dbov)
        except ValueError as exc:
            raise AudioError(f"tone segment {segment.strip()!r}: {exc}") from None
        pieces.append(generator.frame(samples))
    return b"".join(pieces)


class WavWriter:
    """An 8 kHz int16 WAV being written: mono, or stereo with one side per channel."""

    def __init__(self, path: str | Path, *, stereo: bool = False) -> None:
        self.path = Path(path)
        self.stereo = stereo
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed by close()
        self._wav.setnchannels(2 if stereo else 1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(RATE)
        self.samples = 0

    def write(self, received: bytes, sent: bytes | None = None) -> None:
        if self.stereo:
            left = np.frombuffer(received, np.int16)
            right = np.frombuffer(sent or bytes(len(received)), np.int16)
            if right.size < left.size:
                right = np.concatenate([right, np.zeros(left.size - right.size, np.int16)])
            frame = np.empty(left.size * 2, np.int16)
            frame[0::2] = left
            frame[1::2] = right[: left.size]
            self._wav.writeframes(frame.tobytes())
        else:
            self._wav.writeframes(received)
        self.samples += len(received) // 2

    def close(self) -> None:
        self._wav.close()
