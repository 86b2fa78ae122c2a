"""In-band DTMF detection (Goertzel, in _dsp): what it must hear and what it must not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gosipd import _dsp

RATE = 8000
DIGITS = "0123456789*#ABCD"


def tone(freqs: tuple[float, ...], ms: int, level_dbov: float = -13.0) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    amp = 32768 * 10 ** (level_dbov / 20) * np.sqrt(2)
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs)  # type: ignore[return-value]


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16).tobytes()


def detect(audio: bytes, frame: int = 160) -> list[tuple[str, int]]:
    d = _dsp.DtmfDetector()
    out: list[tuple[str, int]] = []
    for i in range(0, len(audio), frame * 2):
        out += d.feed(audio[i : i + frame * 2])
    return out + d.flush()


def keyed(sequence: str, on_ms: int = 100, off_ms: int = 60, level: float = -13.0) -> bytes:
    parts = []
    for digit in sequence:
        parts.append(tone(_dsp.DTMF_FREQUENCIES[digit], on_ms, level))
        parts.append(np.zeros(RATE * off_ms // 1000))
    return pcm(np.concatenate(parts))


@pytest.mark.parametrize("level", [-6.0, -13.0, -25.0, -33.0])
def test_every_digit_is_heard_once_at_levels_down_to_minus_33_dbov(level: float) -> None:
    got = detect(keyed(DIGITS, level=level))
    assert "".join(d for d, _ in got) == DIGITS
    assert all(80 <= ms <= 115 for _, ms in got)


def test_digits_survive_a_g711_round_trip_and_line_noise() -> None:
    audio = keyed("159#", level=-20.0)
    noise = _dsp.ComfortNoise(-45.0, seed=7).frame(len(audio) // 2)
    noisy = _dsp.mix(audio, noise)
    for codec in ("ulaw", "alaw"):
        encode, decode = getattr(_dsp, f"{codec}_encode"), getattr(_dsp, f"{codec}_decode")
        assert "".join(d for d, _ in detect(decode(encode(noisy)))) == "159#"


def test_duration_is_reported_within_one_block() -> None:
    ((digit, ms),) = detect(keyed("8", on_ms=400))
    assert digit == "8" and abs(ms - 400) <= 26


def test_repeated_digit_with_a_40ms_pause_is_two_digits() -> None:
    assert [d for d, _ in detect(keyed("55", on_ms=60, off_ms=40))] == ["5", "5"]


def test_a_40ms_tone_is_heard_and_a_20ms_one_is_not() -> None:
    assert [d for d, _ in detect(keyed("3", on_ms=40))] == ["3"]
    assert detect(keyed("3", on_ms=20)) == []


@pytest.mark.parametrize("offset", [-0.015, 0.015])
def test_frequency_error_of_1_5_percent_is_tolerated(offset: float) -> None:
    low, high = _dsp.DTMF_FREQUENCIES["9"]
    audio = pcm(
        np.concatenate([tone((low * (1 + offset), high * (1 + offset)), 100), np.zeros(480)])
    )
    assert [d for d, _ in detect(audio)] == ["9"]


@pytest.mark.parametrize("twist_db", [-6.0, 6.0])
def test_twist_of_6_db_is_accepted(twist_db: float) -> None:
    low, high = _dsp.DTMF_FREQUENCIES["0"]
    audio = tone((low,), 100, -15.0) + tone((high,), 100, -15.0 + twist_db)
    assert [d for d, _ in detect(pcm(np.concatenate([audio, np.zeros(480)])))] == ["0"]


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(lambda: tone((697,), 500), id="single row tone"),
        pytest.param(lambda: tone((1336,), 500), id="single column tone"),
        pytest.param(lambda: tone((1000,), 500), id="1 kHz test tone"),
        pytest.param(lambda: tone((350, 440), 1000, -16), id="dial tone"),
        pytest.param(lambda: tone((440, 480), 1000, -16), id="ringback"),
        pytest.param(lambda: tone((697, 1209), 500, -45.0), id="digit below the level floor"),
    ],
)
def test_signals_that_are_not_dtmf_are_not_digits(signal: object) -> None:
    assert detect(pcm(signal())) == []  # type: ignore[operator]


def test_noise_and_speech_like_sound_give_no_digits() -> None:
    assert detect(_dsp.ComfortNoise(-15.0, seed=3).frame(8000 * 10)) == []
    rng = np.random.default_rng(11)
    t = np.arange(RATE * 10) / RATE
    # a voiced "speech" stand-in: a wandering 100-250 Hz pitch with its harmonics
    pitch = 170 + 70 * np.sin(2 * np.pi * 0.7 * t) + rng.normal(0, 5, t.size).cumsum() / 200
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    speech = voiced * envelope * 6000
    assert detect(pcm(speech)) == []


@settings(max_examples=25, deadline=None)
@given(
    frame=st.sampled_from([80, 160, 240, 333]),
    sequence=st.text(alphabet=DIGITS, min_size=1, max_size=5),
)
def test_frame_size_does_not_matter(frame: int, sequence: str) -> None:
    assert "".join(d for d, _ in detect(keyed(sequence), frame=frame)) == sequence


def test_bad_input_is_refused() -> None:
    d = _dsp.DtmfDetector()
    with pytest.raises(ValueError, match="even count"):
        d.feed(b"\x00\x01\x02")
    with pytest.raises(TypeError, match="bytes-like"):
        d.feed("audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        _dsp.DtmfDetector(rate=100)
