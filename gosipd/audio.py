"""Audio files and tone specs for apps: any WAV in, 8 kHz mono int16 out; WAV recording.

Prompts come as whatever the app author had at hand (44.1 kHz stereo, 16 kHz
mono, 8-bit...), and a call speaks 8 kHz mono. ``load_wav`` converts with a
band-limited (windowed-sinc) resampler in numpy: this runs once per file,
not per frame, so clarity beats speed here. numpy is imported by the functions
that use it: a call that plays no file never loads it (the zygote stays ~12 MB
smaller, and so does every fork's page table).
"""

from __future__ import annotations

import array
import errno
import math
import os
import re
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from gosipd import _dsp

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_FILE_SECONDS",
    "RATE",
    "AudioError",
    "RecordingError",
    "WavWriter",
    "load_wav",
    "load_wav_data",
    "parse_wav",
    "read_wav",
    "resample",
    "tones_from_spec",
]

RATE = 8000
FRAME_SAMPLES = 160
#: Half-width of the interpolation kernel, in input samples at the lower rate.
SINC_HALF_TAPS = 16
#: The passband edge as a share of the lower Nyquist frequency (3.8 kHz at 8 kHz).
CUTOFF = 0.95
KAISER_BETA = 8.0
#: The longest WAV a call plays (what one ``play`` may queue: ``media.MAX_PLAYBACK_SAMPLES``).
MAX_FILE_SECONDS = 600
#: The largest WAV read into memory (decoding takes 8 bytes a sample on top): 600 s of
#: 16 kHz stereo 16-bit is 38 MB; CD-quality prompts that long want converting first.
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_TONE_SEGMENTS = 256


class AudioError(ValueError):
    """A file or tone spec we cannot use; the message says why."""


class RecordingError(AudioError):
    """A recording could not be written (the disk is full...); what was written is kept."""


def resample(samples: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """Band-limited resampling of float64 samples with a Kaiser-windowed sinc kernel.

    Polyphase: with ``rate_out / rate_in = up / down`` in lowest terms, every output
    sample falls at one of ``up`` fractional offsets between input samples, so the
    kernel is computed once per offset (not per sample) and applied as a weighted sum
    of the input samples around each output instant.
    """
    import numpy as np

    if rate_in == rate_out or samples.size == 0:
        return samples.astype(np.float64)
    common = math.gcd(rate_in, rate_out)
    up, down = rate_out // common, rate_in // common
    ratio = up / down
    cutoff = min(1.0, ratio) * CUTOFF  # relative to the input Nyquist, with a guard band
    half = int(np.ceil(SINC_HALF_TAPS / min(1.0, ratio)))
    offsets = np.arange(-half + 1, half + 1)
    distance = offsets[None, :] - (np.arange(up) / up)[:, None]  # phase x tap
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (distance / (half + 1)) ** 2, 0, 1)))
    kernels = cutoff * np.sinc(cutoff * distance) * window / np.i0(KAISER_BETA)
    padded = np.concatenate([np.zeros(half), samples.astype(np.float64), np.zeros(half + 1)])
    count = samples.size * up // down
    out = np.empty(count)
    chunk = 4096
    for start in range(0, count, chunk):
        n = np.arange(start, min(count, start + chunk), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
        taps = padded[base[:, None] + offsets[None, :] + half]
        out[start : start + n.size] = np.einsum("ij,ij->i", taps, kernels[phase])
    return out


#: WAVE format tags (RFC 2361) we read; WAVE_FORMAT_EXTENSIBLE names one of them by GUID.
FORMAT_PCM = 0x0001
FORMAT_FLOAT = 0x0003
FORMAT_ALAW = 0x0006
FORMAT_MULAW = 0x0007
FORMAT_EXTENSIBLE = 0xFFFE
FORMAT_NAMES = {
    FORMAT_PCM: "PCM",
    FORMAT_FLOAT: "IEEE float",
    FORMAT_ALAW: "A-law",
    FORMAT_MULAW: "µ-law",
}
#: The tail every KSDATAFORMAT_SUBTYPE GUID shares; its first two bytes are the format tag.
_SUBTYPE_TAIL = bytes.fromhex("000000001000800000aa00389b71")
MAX_CHANNELS = 32
MIN_RATE, MAX_RATE = 1000, 384_000
MAX_CHUNKS = 1000


class WavFormat(NamedTuple):
    tag: int
    channels: int
    rate: int
    bits: int


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A WAV file as float64 samples (frames × channels, full scale ±32768) and its rate.

    See ``parse_wav``; a file larger than ``MAX_FILE_BYTES`` is refused unread.
    """
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise AudioError(f"{path}: {size} bytes is more than {MAX_FILE_BYTES} (too long)")
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: is a directory, not a WAV file") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_wav(data, path)


def parse_wav(data: bytes, path: str | Path) -> tuple[np.ndarray, int]:
    """The bytes of a WAV file (named ``path`` in errors) as ``read_wav`` returns them.

    Reads RIFF/WAVE with PCM (8-bit unsigned, 16, 24 or 32-bit), IEEE float (32 or
    64-bit), µ-law or A-law data, plain or WAVE_FORMAT_EXTENSIBLE; anything else is an
    ``AudioError`` that says what the file is and why it cannot be used, and so is a
    file longer than ``MAX_FILE_SECONDS`` or larger than ``MAX_FILE_BYTES``.
    """
    if len(data) > MAX_FILE_BYTES:
        raise AudioError(f"{path}: more than {MAX_FILE_BYTES} bytes (too long)")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt: WavFormat | None = None
    offset = 12
    for _ in range(MAX_CHUNKS):
        if offset + 8 > len(data):
            break
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _wav_format(path, body)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{path}: the data chunk comes before any fmt chunk")
            return _decode(path, fmt, body), fmt.rate
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    raise AudioError(f"{path}: no {'fmt' if fmt is None else 'data'} chunk in the file")


def _wav_format(path: str | Path, body: bytes) -> WavFormat:
    if len(body) < 16:
        raise AudioError(f"{path}: fmt chunk of {len(body)} bytes is too short (16 needed)")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise AudioError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk is too short")
        subformat = body[24:40]
        if subformat[2:] != _SUBTYPE_TAIL:
            raise AudioError(f"{path}: unknown WAVE_FORMAT_EXTENSIBLE subformat {subformat.hex()}")
        (tag,) = struct.unpack_from("<H", subformat)
    if tag not in FORMAT_NAMES:
        raise AudioError(
            f"{path}: WAV format tag 0x{tag:04x} is not supported "
            f"(only {', '.join(FORMAT_NAMES.values())})"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: {channels} channels (1 to {MAX_CHANNELS} are readable)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    allowed = {
        FORMAT_PCM: (8, 16, 24, 32),
        FORMAT_FLOAT: (32, 64),
        FORMAT_ALAW: (8,),
        FORMAT_MULAW: (8,),
    }[tag]
    if bits not in allowed:
        raise AudioError(f"{path}: {bits}-bit {FORMAT_NAMES[tag]} samples are not supported")
    if block_align != channels * bits // 8:
        raise AudioError(
            f"{path}: block align {block_align} does not match {channels} channels of {bits} bits"
        )
    return WavFormat(tag, channels, rate, bits)


def _decode(path: str | Path, fmt: WavFormat, raw: bytes) -> np.ndarray:
    import numpy as np

    frame_bytes = fmt.channels * fmt.bits // 8
    frames = len(raw) // frame_bytes
    if frames > fmt.rate * MAX_FILE_SECONDS:
        raise AudioError(
            f"{path}: {frames / fmt.rate:.1f} s is longer than the {MAX_FILE_SECONDS} s a prompt "
            "may last"
        )
    raw = raw[: frames * frame_bytes]  # a truncated last frame is dropped
    if fmt.tag == FORMAT_PCM and fmt.bits == 8:
        data = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) * 256.0
    elif fmt.tag == FORMAT_PCM and fmt.bits == 16:
        data = np.frombuffer(raw, "<i2").astype(np.float64)
    elif fmt.tag == FORMAT_PCM and fmt.bits == 24:
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        data = np.where(ints >= 1 << 23, ints - (1 << 24), ints).astype(np.float64) / 256.0
    elif fmt.tag == FORMAT_PCM:
        data = np.frombuffer(raw, "<i4").astype(np.float64) / 65536.0
    elif fmt.tag == FORMAT_FLOAT:
        floats = np.frombuffer(raw, "<f4" if fmt.bits == 32 else "<f8").astype(np.float64)
        data = np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0) * 32768.0
    elif fmt.tag == FORMAT_MULAW:
        data = np.frombuffer(_dsp.ulaw_decode(raw), "<i2").astype(np.float64)
    else:
        data = np.frombuffer(_dsp.alaw_decode(raw), "<i2").astype(np.float64)
    return data.reshape(frames, fmt.channels)


def load_wav(path: str | Path) -> bytes:
    """A WAV file as 8 kHz mono int16 PCM (native endian), whatever its rate and channels
    (see ``parse_wav`` for the encodings and limits); channels are averaged."""
    return _to_call_audio(*read_wav(path))


def load_wav_data(data: bytes, path: str | Path) -> bytes:
    """``load_wav`` of a file already read (``path`` names it in errors)."""
    return _to_call_audio(*parse_wav(data, path))


def _to_call_audio(frames: np.ndarray, rate: int) -> bytes:
    import numpy as np

    mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    out = resample(mono, rate, RATE)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16).tobytes()


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


#: The canonical 44-byte header of the WAVs we write; the sizes are patched as data lands.
WAV_HEADER_BYTES = 44


class WavWriter:
    """An 8 kHz int16 WAV being written: mono, or stereo with one side per channel.

    It owns ``fd`` (a new, empty file open for writing). The RIFF and data sizes in the
    header are rewritten after every write, so the header always matches the bytes on
    disk: after a crash, and after a write that failed (a full disk), when the partial
    frame is cut off and ``RecordingError`` says why.
    """

    def __init__(self, fd: int, path: str | Path, *, stereo: bool = False) -> None:
        self.path = Path(path)
        self.stereo = stereo
        self._fd: int | None = fd
        self._block = 4 if stereo else 2
        self.samples = 0
        self.data_bytes = 0
        try:
            self._write_all(self._header(0))
        except OSError as exc:
            self.close()
            raise RecordingError(f"{path}: cannot write the WAV header ({exc.strerror})") from None

    @classmethod
    def create(cls, path: str | Path, *, stereo: bool = False) -> WavWriter:
        """A new file at ``path`` (never an existing one; no directories are created)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o640)
        except FileExistsError:
            raise RecordingError(
                f"{path}: already exists; a recording never replaces a file"
            ) from None
        except OSError as exc:
            raise RecordingError(f"{path}: cannot record there ({exc.strerror})") from None
        return cls(fd, path, stereo=stereo)

    def _header(self, data_bytes: int) -> bytes:
        channels = 2 if self.stereo else 1
        return struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            WAV_HEADER_BYTES - 8 + data_bytes,
            b"WAVE",
            b"fmt ",
            16,
            FORMAT_PCM,
            channels,
            RATE,
            RATE * self._block,
            self._block,
            16,
            b"data",
            data_bytes,
        )

    def _write_all(self, data: bytes) -> int:
        """Write all of ``data``; an OSError leaves ``written`` on the exception."""
        assert self._fd is not None
        view = memoryview(data)
        done = 0
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:])
            except OSError as exc:
                exc.written = done  # type: ignore[attr-defined]
                raise
        return done

    def write(self, received: bytes, sent: bytes | None = None) -> None:
        if self._fd is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        if self.stereo:
            import numpy as np

            left = np.frombuffer(received, np.int16)
            right = np.frombuffer(sent or bytes(len(received)), np.int16)
            if right.size < left.size:
                right = np.concatenate([right, np.zeros(left.size - right.size, np.int16)])
            frame = np.empty(left.size * 2, np.int16)
            frame[0::2] = left
            frame[1::2] = right[: left.size]
            data = frame.astype("<i2").tobytes()
        elif sys.byteorder == "little":
            data = bytes(received)  # int16 in native order is the WAV's little-endian
        else:
            samples = array.array("h", received)
            samples.byteswap()
            data = samples.tobytes()
        try:
            self.data_bytes += self._write_all(data)
            self.samples += len(received) // 2
            self._patch_header()
        except OSError as exc:
            self._fail(exc)

    def _patch_header(self) -> None:
        assert self._fd is not None
        header = self._header(self.data_bytes)
        os.pwrite(self._fd, header[4:8], 4)
        os.pwrite(self._fd, header[40:44], 40)

    def _fail(self, exc: OSError) -> None:
        """Keep what whole frames reached the disk, with a header that says so; raise why."""
        assert self._fd is not None
        self.data_bytes += getattr(exc, "written", 0)
        self.data_bytes -= self.data_bytes % self._block
        self.samples = self.data_bytes // self._block
        try:
            os.ftruncate(self._fd, WAV_HEADER_BYTES + self.data_bytes)
            self._patch_header()  # rewrites bytes already on disk: needs no free space
        except OSError:
            pass
        self.close()
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
        raise RecordingError(
            f"{self.path}: recording stopped after {self.data_bytes / (RATE * self._block):.2f} s: "
            f"{reason}"
        ) from None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
