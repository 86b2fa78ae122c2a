"""gosipd.audio: any WAV an app author has becomes 8 kHz mono PCM that sounds the same;
tone specs; recordings. Judged with FFTs, not by comparing bytes."""

from __future__ import annotations

import contextlib
import re
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gosipd import _dsp
from gosipd.audio import (
    FORMAT_ALAW,
    FORMAT_EXTENSIBLE,
    FORMAT_FLOAT,
    FORMAT_MULAW,
    FORMAT_PCM,
    MAX_TONE_SEGMENTS,
    AudioError,
    WavWriter,
    load_wav,
    read_wav,
    resample,
    tones_from_spec,
)

SUBTYPE_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def riff(
    tag: int,
    channels: int,
    rate: int,
    bits: int,
    data: bytes,
    *,
    extensible: bool = False,
    block_align: int | None = None,
    extra_chunks: bytes = b"",
) -> bytes:
    align = block_align if block_align is not None else channels * bits // 8
    fmt = struct.pack("<HHIIHH", FORMAT_EXTENSIBLE if extensible else tag, channels, rate,
                      rate * align, align, bits)  # fmt: skip
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + SUBTYPE_TAIL
    body = b"WAVE" + extra_chunks + chunk(b"fmt ", fmt) + chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def sine(hz: float, rate: int, seconds: float = 1.0, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)


def level_db(samples: np.ndarray, reference: float) -> float:
    middle = samples[len(samples) // 8 : -len(samples) // 8]
    return float(20 * np.log10(np.sqrt(2 * np.mean(middle**2)) / reference))


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def pcm16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, np.int16).astype(np.float64)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000])
def test_a_1khz_tone_keeps_its_pitch_level_and_length_from_any_rate(rate):
    out = resample(sine(1000, rate) * 10000, rate)
    assert abs(len(out) - 8000) <= 1
    assert abs(dominant_hz(out) - 1000) < 1.5
    assert abs(level_db(out, 10000)) < 0.05


@pytest.mark.parametrize("hz", [300, 1000, 2000, 3000, 3400])
def test_the_telephone_band_passes_flat_from_44_1_khz(hz):
    assert abs(level_db(resample(sine(hz, 44100) * 10000, 44100), 10000)) < 0.3


@pytest.mark.parametrize(("hz", "floor_db"), [(4400, -45), (5000, -70), (6000, -70), (10000, -80)])
def test_what_a_phone_cannot_carry_is_filtered_not_aliased(hz, floor_db):
    """Above 4 kHz a tone would fold back into the band (5 kHz -> 3 kHz) if not filtered."""
    out = resample(sine(hz, 44100) * 10000, 44100)
    assert level_db(out, 10000) < floor_db


def test_upsampling_from_a_low_rate_adds_no_images():
    out = resample(sine(1000, 4000) * 10000, 4000)
    assert len(out) == 8000
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / 8000)
    image = spectrum[(freqs > 2900) & (freqs < 3100)].max()  # 4000 - 1000
    assert 20 * np.log10(image / spectrum.max()) < -50


@settings(max_examples=30, deadline=None)
@given(
    rate=st.integers(1000, 96000),
    length=st.integers(0, 3000),
)
def test_resampling_any_rate_and_length_gives_the_right_length_and_stays_finite(rate, length):
    samples = np.random.default_rng(length).uniform(-32768, 32767, length)
    out = resample(samples, rate)
    assert abs(len(out) - length * 8000 / rate) <= 1
    assert np.isfinite(out).all()


# --------------------------------------------------------------------------- WAV files


def encodings(tone: np.ndarray) -> dict[str, tuple[int, int, bytes]]:
    """The same tone (floats in [-1, 1]) in every sample encoding: name -> (tag, bits, data)."""
    i16 = np.round(tone * 32767).astype("<i2")
    i32 = np.round(tone * 2147483647).astype("<i4")
    i24 = np.round(tone * 8388607).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    return {
        "pcm8": (FORMAT_PCM, 8, (np.round(tone * 127) + 128).astype(np.uint8).tobytes()),
        "pcm16": (FORMAT_PCM, 16, i16.tobytes()),
        "pcm24": (FORMAT_PCM, 24, i24.tobytes()),
        "pcm32": (FORMAT_PCM, 32, i32.tobytes()),
        "float32": (FORMAT_FLOAT, 32, tone.astype("<f4").tobytes()),
        "float64": (FORMAT_FLOAT, 64, tone.astype("<f8").tobytes()),
        "mulaw": (FORMAT_MULAW, 8, _dsp.ulaw_encode(i16.tobytes())),
        "alaw": (FORMAT_ALAW, 8, _dsp.alaw_encode(i16.tobytes())),
    }


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
@pytest.mark.parametrize("name", list(encodings(np.zeros(1))))
def test_every_sample_encoding_loads_as_the_same_8khz_tone(tmp_path, name, extensible):
    rate = 16000
    tag, bits, data = encodings(sine(1000, rate, amplitude=0.5))[name]
    path = tmp_path / f"{name}.wav"
    path.write_bytes(riff(tag, 1, rate, bits, data, extensible=extensible))
    out = pcm16(load_wav(path))
    assert abs(len(out) - 8000) <= 1
    assert abs(dominant_hz(out) - 1000) < 1.5
    tolerance = 0.6 if name == "pcm8" else 0.1
    assert abs(level_db(out, 32767 * 0.5)) < tolerance


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(tmp_path, channels):
    rate = 8000
    frames = np.zeros((rate, channels))
    frames[:, 0] = sine(1000, rate) * 20000  # a tone on the first channel only
    path = tmp_path / "multi.wav"
    path.write_bytes(riff(FORMAT_PCM, channels, rate, 16, frames.astype("<i2").tobytes(),
                          extensible=channels > 2))  # fmt: skip
    out = pcm16(load_wav(path))
    assert abs(level_db(out, 20000 / channels)) < 0.1


def test_opposite_channels_cancel_to_silence(tmp_path):
    tone = sine(440, 8000) * 20000
    frames = np.stack([tone, -tone], axis=1).astype("<i2")
    path = tmp_path / "phase.wav"
    path.write_bytes(riff(FORMAT_PCM, 2, 8000, 16, frames.tobytes()))
    assert np.abs(pcm16(load_wav(path))).max() <= 1


def test_chunks_before_fmt_and_a_truncated_last_frame_are_fine(tmp_path):
    data = (sine(1000, 8000, 0.5) * 10000).astype("<i2").tobytes() + b"\x01"
    path = tmp_path / "odd.wav"
    path.write_bytes(
        riff(FORMAT_PCM, 1, 8000, 16, data, extra_chunks=chunk(b"LIST", b"INFOISFT\x03\0\0\0abc"))
    )
    frames, rate = read_wav(path)
    assert rate == 8000 and frames.shape == (4000, 1)


def test_a_file_written_by_the_wave_module_round_trips(tmp_path):
    path = tmp_path / "std.wav"
    tone = (sine(1000, 22050) * 30000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(tone.tobytes())
    out = pcm16(load_wav(path))
    assert abs(dominant_hz(out) - 1000) < 1.5


def bad_files(tmp_path: Path) -> dict[str, tuple[bytes | None, str]]:
    good = (np.zeros(800)).astype("<i2").tobytes()
    return {
        "missing": (None, "no such file"),
        "empty": (b"", "not a WAV file"),
        "mp3": (b"ID3\x03\x00" + bytes(100), "not a WAV file"),
        "rifx": (b"RIFX" + bytes(4) + b"WAVE", "not a WAV file"),
        "no-fmt": (b"RIFF\x0c\0\0\0WAVE" + chunk(b"data", good), "data chunk comes before"),
        "no-data": (riff(FORMAT_PCM, 1, 8000, 16, b"")[:36], "no data chunk"),
        "gsm": (riff(0x0031, 1, 8000, 8, good), "format tag 0x0031 is not supported"),
        "12-bit": (riff(FORMAT_PCM, 1, 8000, 12, good, block_align=2), "12-bit PCM"),
        "zero-channels": (riff(FORMAT_PCM, 0, 8000, 16, good, block_align=0), "0 channels"),
        "rate": (riff(FORMAT_PCM, 1, 5, 16, good), "sample rate 5 Hz"),
        "align": (riff(FORMAT_PCM, 2, 8000, 16, good, block_align=2), "block align 2"),
        "short-fmt": (b"RIFF\x14\0\0\0WAVE" + chunk(b"fmt ", b"\x01\0\x01\0"), "too short"),
    }


@pytest.mark.parametrize("name", list(bad_files(Path("."))))
def test_a_file_we_cannot_use_is_refused_naming_the_file_and_the_reason(tmp_path, name):
    content, reason = bad_files(tmp_path)[name]
    path = tmp_path / f"{name}.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError) as refused:
        load_wav(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert reason in str(refused.value)


def test_a_directory_is_not_a_wav_file(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_wav(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_after_a_riff_header_raises_audio_error_or_loads(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "x.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(blob) + 4) + b"WAVE" + blob)
    with contextlib.suppress(AudioError):  # anything else (a crash) fails the test
        load_wav(path)


# --------------------------------------------------------------------------- tone specs


def test_a_tone_spec_is_its_segments_in_order():
    pcm = pcm16(tones_from_spec("1209+697:100,0:50,440:500"))
    assert len(pcm) == 800 + 400 + 4000
    dtmf = pcm[:800]
    spectrum = np.abs(np.fft.rfft(dtmf))
    freqs = np.fft.rfftfreq(800, 1 / 8000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert peaks == [700.0, 1210.0]  # 10 Hz bins
    assert not pcm[800:1200].any()
    assert abs(dominant_hz(pcm[1200:]) - 440) < 2.5
    assert abs(level_db(pcm[1200:], 32768) - -10.0) < 0.3  # -13 dBov RMS: a -10 dB peak


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "at least one"),
        ("440", "is not 'HZ[+HZ...]:MS'"),
        ("440:abc", "is not"),
        ("-440:100", "is not"),
        ("440:0", "1-60000 ms"),
        ("440:60001", "1-60000 ms"),
        ("5000:100", "5000"),
        (",".join(["440:10"] * (MAX_TONE_SEGMENTS + 1)), f"at most {MAX_TONE_SEGMENTS}"),
    ],
)
def test_a_bad_tone_spec_is_refused_saying_why(spec, reason):
    with pytest.raises(AudioError, match=re.escape(reason)):
        tones_from_spec(spec)


# --------------------------------------------------------------------------- recording


def test_a_mono_recording_is_8khz_16_bit(tmp_path):
    frame = (sine(1000, 8000, 0.02) * 10000).astype(np.int16).tobytes()
    writer = WavWriter.create(tmp_path / "mono.wav")
    for _ in range(50):
        writer.write(frame)
    writer.close()
    with wave.open(str(writer.path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            1, 2, 8000, 8000,
        )  # fmt: skip
    assert writer.samples == 8000


def test_a_stereo_recording_puts_received_left_and_sent_right(tmp_path):
    left = np.full(160, 1000, np.int16).tobytes()
    right = np.full(160, -2000, np.int16).tobytes()
    writer = WavWriter.create(tmp_path / "stereo.wav", stereo=True)
    writer.write(left, right)
    writer.write(left, None)  # nothing sent that tick
    writer.write(left, right[:100])  # a short frame is padded with silence
    writer.close()
    with wave.open(str(writer.path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert (frames[:, 0] == 1000).all()
    assert (frames[:160, 1] == -2000).all()
    assert not frames[160:320, 1].any()
    assert (frames[320:370, 1] == -2000).all() and not frames[370:, 1].any()
