"""Mixing, gain, level, comfort noise and tones: checked as signals, with numpy."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd import _dsp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16)


def peak_frequencies(pcm: bytes, count: int) -> list[float]:
    x = samples(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    peaks = []
    for _ in range(count):
        k = int(np.argmax(spectrum))
        peaks.append(float(freqs[k]))
        spectrum[max(0, k - 20) : k + 21] = 0
    return sorted(peaks)


# --- mix -------------------------------------------------------------------

int16_frames = st.integers(0, 400).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-32768, 32767), min_size=n, max_size=n),
        st.lists(st.integers(-32768, 32767), min_size=n, max_size=n),
    )
)


@given(int16_frames)
def test_mix_of_two_frames_matches_audioop_add(frames):
    a, b = (np.array(f, dtype=np.int16).tobytes() for f in frames)
    assert _dsp.mix(a, b) == audioop.add(a, b, 2)
    assert _dsp.mix(bytearray(a), memoryview(b)) == audioop.add(a, b, 2)


def test_mix_saturates_instead_of_wrapping():
    loud = np.full(160, 30000, dtype=np.int16)
    assert set(samples(_dsp.mix(loud, loud, loud))) == {32767}
    assert set(samples(_dsp.mix(-loud, -loud))) == {-32768}


def test_mix_of_many_frames_equals_sequential_saturating_sum():
    rng = np.random.default_rng(7)
    frames = [rng.integers(-20000, 20000, 160, dtype=np.int16) for _ in range(5)]
    expected = frames[0].astype(np.int32)
    for f in frames[1:]:
        expected = np.clip(expected + f, -32768, 32767)
    assert np.array_equal(samples(_dsp.mix(*frames)), expected)


def test_mix_into_adds_in_place():
    acc = np.full(160, 1000, dtype=np.int16)
    _dsp.mix_into(acc, np.full(160, 2000, dtype=np.int16), bytes(320))
    assert set(acc) == {3000}


def test_mix_refuses_mismatched_or_missing_frames():
    with pytest.raises(ValueError, match="frame 2 has 159 samples, frame 1 has 160"):
        _dsp.mix(bytes(320), bytes(318))
    with pytest.raises(ValueError, match="frame 3 has 1 samples, frame 1 has 160"):
        _dsp.mix(bytes(320), bytes(320), bytes(2))
    with pytest.raises(TypeError, match="at least two frames"):
        _dsp.mix(bytes(320))
    with pytest.raises(ValueError, match="even count"):
        _dsp.mix(bytes(3), bytes(3))
    with pytest.raises(TypeError, match="writable"):
        _dsp.mix_into(bytes(320), bytes(320))


# --- gain and level --------------------------------------------------------


def test_zero_db_gain_is_identity_and_six_db_doubles():
    pcm = np.arange(-8000, 8000, 100, dtype=np.int16)
    assert _dsp.gain(pcm, 0.0) == pcm.tobytes()
    doubled = samples(_dsp.gain(pcm, 20 * np.log10(2)))
    assert np.max(np.abs(doubled.astype(np.int32) - 2 * pcm.astype(np.int32))) <= 1


def test_gain_saturates_and_gain_into_works_in_place():
    pcm = np.array([20000, -20000, 100], dtype=np.int16)
    assert list(samples(_dsp.gain(pcm, 12.0))) == [32767, -32768, 398]
    _dsp.gain_into(pcm, -6.0206)
    assert list(pcm) == [10000, -10000, 50]
    with pytest.raises(ValueError, match="within ±96 dB"):
        _dsp.gain(pcm, 200.0)


def test_rms_dbov_of_reference_signals():
    square = np.tile(np.array([32767, -32768], dtype=np.int16), 80)
    assert _dsp.rms_dbov(square) == pytest.approx(0.0, abs=0.01)
    t = np.arange(8000) / RATE
    sine = np.round(32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert _dsp.rms_dbov(sine) == pytest.approx(-3.01, abs=0.01)
    assert _dsp.rms_dbov(bytes(320)) == _dsp.SILENCE_DBOV
    assert _dsp.rms_dbov(b"") == _dsp.SILENCE_DBOV


# --- comfort noise ---------------------------------------------------------


def test_comfort_noise_is_reproducible_from_its_seed():
    a, b, c = (
        _dsp.ComfortNoise(-50, seed=42),
        _dsp.ComfortNoise(-50, seed=42),
        _dsp.ComfortNoise(-50, seed=43),
    )
    first = [a.frame() for _ in range(10)]
    assert first == [b.frame() for _ in range(10)]
    assert first != [c.frame() for _ in range(10)]


@pytest.mark.parametrize("level", [-70.0, -50.0, -30.0])
def test_comfort_noise_level_is_as_asked(level):
    noise = _dsp.ComfortNoise(level, seed=1)
    pcm = b"".join(noise.frame() for _ in range(250))
    assert _dsp.rms_dbov(pcm) == pytest.approx(level, abs=0.5)


def test_comfort_noise_is_spectrally_white():
    noise = _dsp.ComfortNoise(-30.0, seed=3)
    x = samples(b"".join(noise.frame() for _ in range(2000))).astype(np.float64)
    # Welch-style average of 256-point periodograms, then 8 equal bands.
    segments = x[: len(x) // 256 * 256].reshape(-1, 256)
    power = np.mean(np.abs(np.fft.rfft(segments, axis=1)) ** 2, axis=0)[1:]
    bands = np.array([band.mean() for band in np.array_split(power, 8)])
    spread_db = 10 * np.log10(bands.max() / bands.min())
    assert spread_db < 0.5
    # And successive samples are uncorrelated.
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert abs(lag1) < 0.01


def test_comfort_noise_fills_a_callers_buffer_frame_by_frame():
    noise, again = _dsp.ComfortNoise(-40, seed=9), _dsp.ComfortNoise(-40, seed=9)
    buf = bytearray(320)
    noise.fill_into(buf)
    assert bytes(buf) == again.frame(160)
    with pytest.raises(ValueError, match="between -127 and 0 dBov"):
        _dsp.ComfortNoise(3.0)


# --- tones -----------------------------------------------------------------


@pytest.mark.parametrize("digit", list(_dsp.DTMF_FREQUENCIES))
def test_each_dtmf_digit_has_its_two_frequencies(digit):
    tone = _dsp.ToneGenerator.dtmf(digit)
    pcm = b"".join(tone.frame() for _ in range(25))  # 500 ms
    low, high = _dsp.DTMF_FREQUENCIES[digit]
    found = peak_frequencies(pcm, 2)
    assert found[0] == pytest.approx(low, abs=3)
    assert found[1] == pytest.approx(high, abs=3)


def test_tone_is_phase_continuous_across_frames():
    whole = _dsp.ToneGenerator((697, 1209)).frame(1600)
    pieces = _dsp.ToneGenerator((697, 1209))
    assert b"".join(pieces.frame(n) for n in (160, 7, 153, 480, 800)) == whole
    # No discontinuity: a 1 kHz sine at -3 dBov moves at most 2π·f/fs·A per sample.
    x = samples(_dsp.ToneGenerator(1000, level_dbov=-3.0).frame(8000)).astype(np.int32)
    amplitude = 32768 * 10 ** (-3 / 20) * np.sqrt(2)
    assert np.max(np.abs(np.diff(x))) <= 2 * np.pi * 1000 / RATE * amplitude + 2


def test_tone_level_is_per_component():
    single = _dsp.ToneGenerator(1000, level_dbov=-20.0).frame(8000)
    assert _dsp.rms_dbov(single) == pytest.approx(-20.0, abs=0.05)
    dual = _dsp.ToneGenerator((697, 1209), level_dbov=-20.0).frame(8000)
    assert _dsp.rms_dbov(dual) == pytest.approx(-20.0 + 3.01, abs=0.1)


def test_busy_tone_follows_its_cadence():
    busy = _dsp.ToneGenerator.call_progress("busy")
    x = samples(busy.frame(16000))  # 2 s: on 0.5, off 0.5, on 0.5, off 0.5
    loud = [_dsp.rms_dbov(x[i : i + 400].tobytes()) > -30 for i in range(0, 16000, 400)]
    assert loud == ([True] * 10 + [False] * 10) * 2
    assert peak_frequencies(x[:4000].tobytes(), 2) == pytest.approx([480, 620], abs=3)


def test_named_call_progress_tones_exist_and_unknown_ones_are_refused():
    for name in ("dial", "ringback", "busy", "reorder", "eu_ringback", "uk_ringback"):
        assert _dsp.rms_dbov(_dsp.ToneGenerator.call_progress(name).frame(800)) > -30
    with pytest.raises(ValueError, match="unknown call-progress tone 'bleep'"):
        _dsp.ToneGenerator.call_progress("bleep")
    with pytest.raises(ValueError, match="not a DTMF digit"):
        _dsp.ToneGenerator.dtmf("E")
    with pytest.raises(ValueError, match="Nyquist"):
        _dsp.ToneGenerator(5000)
    with pytest.raises(ValueError, match="on/off pairs"):
        _dsp.ToneGenerator(440, cadence=(100,))
    with pytest.raises(ValueError, match="samples must be between"):
        _dsp.ToneGenerator(440).frame(10**9)
