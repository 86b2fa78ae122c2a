"""G.711 against CPython's audioop: every input, every buffer type, every misuse."""

import array
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd import _dsp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib up to 3.12, the audioop-lts distribution after

ALL_SAMPLES = array.array("h", range(-32768, 32768)).tobytes()
ALL_CODES = bytes(range(256))

CODECS = [
    pytest.param(_dsp.ulaw_encode, _dsp.ulaw_decode, audioop.lin2ulaw, audioop.ulaw2lin, id="ulaw"),
    pytest.param(_dsp.alaw_encode, _dsp.alaw_decode, audioop.lin2alaw, audioop.alaw2lin, id="alaw"),
]
INTO = [
    pytest.param(_dsp.ulaw_encode_into, _dsp.ulaw_decode_into, audioop.lin2ulaw, id="ulaw"),
    pytest.param(_dsp.alaw_encode_into, _dsp.alaw_decode_into, audioop.lin2alaw, id="alaw"),
]


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), CODECS)
def test_encode_is_bit_exact_with_audioop_for_all_65536_samples(
    encode, decode, ref_encode, ref_decode
):
    assert encode(ALL_SAMPLES) == ref_encode(ALL_SAMPLES, 2)


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), CODECS)
def test_decode_is_bit_exact_with_audioop_for_all_256_codes(encode, decode, ref_encode, ref_decode):
    assert decode(ALL_CODES) == ref_decode(ALL_CODES, 2)


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), CODECS)
def test_every_decoded_code_encodes_back_to_itself_or_its_twin_zero(
    encode, decode, ref_encode, ref_decode
):
    # G.711 has two codes for zero (positive and negative); all others round-trip.
    back = encode(decode(ALL_CODES))
    for code, again in zip(ALL_CODES, back, strict=True):
        if code != again:
            assert np.frombuffer(decode(bytes([code])), np.int16)[0] in (0, -8, 8)


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: np.frombuffer(b, dtype=np.int16).copy(),
        lambda b: array.array("h", b),
        lambda b: memoryview(b).cast("h"),
    ],
    ids=["bytes", "bytearray", "memoryview", "numpy-int16", "array-h", "memoryview-h"],
)
@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), CODECS)
def test_encode_accepts_any_bytes_like_pcm(make, encode, decode, ref_encode, ref_decode):
    pcm = ALL_SAMPLES[1000:1320]
    assert encode(make(pcm)) == ref_encode(pcm, 2)


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), CODECS)
def test_decode_accepts_numpy_uint8_and_memoryview(encode, decode, ref_encode, ref_decode):
    assert decode(np.arange(256, dtype=np.uint8)) == ref_decode(ALL_CODES, 2)
    assert decode(memoryview(ALL_CODES)[10:20]) == ref_decode(ALL_CODES[10:20], 2)


@pytest.mark.parametrize(("encode_into", "decode_into", "ref_encode"), INTO)
def test_into_variants_fill_the_callers_buffer(encode_into, decode_into, ref_encode):
    pcm = ALL_SAMPLES[:320]
    out = bytearray(200)
    assert encode_into(pcm, out) == 160
    assert bytes(out[:160]) == ref_encode(pcm, 2)
    assert out[160:] == bytearray(40)  # nothing written past what was asked

    samples = np.zeros(160, dtype=np.int16)
    assert decode_into(bytes(out[:160]), samples) == 160
    assert encode_into(samples, out) == 160
    assert bytes(out[:160]) == ref_encode(pcm, 2)


@pytest.mark.parametrize(("encode_into", "decode_into", "ref_encode"), INTO)
def test_into_variants_refuse_short_or_readonly_buffers(encode_into, decode_into, ref_encode):
    with pytest.raises(ValueError, match="room for 10 octets, 160 are needed"):
        encode_into(bytes(320), bytearray(10))
    with pytest.raises(ValueError, match="room for 5 samples, 160 are needed"):
        decode_into(bytes(160), bytearray(10))
    with pytest.raises(TypeError, match="writable"):
        encode_into(bytes(320), bytes(160))
    with pytest.raises(TypeError, match="writable"):
        decode_into(bytes(160), memoryview(bytes(320)))


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), CODECS)
def test_bad_pcm_is_refused_with_a_reason(encode, decode, ref_encode, ref_decode):
    with pytest.raises(ValueError, match="161 bytes: 16-bit PCM needs an even count"):
        encode(bytes(161))
    with pytest.raises(ValueError, match="even count"):
        encode(bytearray(3))
    with pytest.raises(TypeError, match="not str"):
        encode("hello")
    with pytest.raises(TypeError, match="not int"):
        encode(160)
    with pytest.raises(TypeError, match="format 'f'"):
        encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="format 'i'"):
        encode(array.array("i", [1, 2]))
    with pytest.raises(TypeError, match="format 'h'"):
        decode(np.zeros(4, dtype=np.int16))  # encoded data is octets, not samples
    with pytest.raises((TypeError, ValueError)):
        encode(np.zeros((4, 4), dtype=np.int16)[:, 0])  # not contiguous


def test_empty_input_gives_empty_output():
    assert _dsp.ulaw_encode(b"") == b""
    assert _dsp.alaw_decode(bytearray()) == b""


@given(st.binary(max_size=4000))
def test_any_octets_decode_to_two_bytes_each(data):
    assert len(_dsp.ulaw_decode(data)) == 2 * len(data)
    assert _dsp.alaw_decode(data) == audioop.alaw2lin(data, 2)


@given(st.lists(st.integers(-32768, 32767), max_size=500))
def test_ulaw_roundtrip_error_is_within_the_quantisation_step(samples):
    pcm = np.array(samples, dtype=np.int16)
    back = np.frombuffer(_dsp.ulaw_decode(_dsp.ulaw_encode(pcm)), np.int16).astype(np.int32)
    error = np.abs(back - pcm.astype(np.int32))
    # µ-law steps grow with magnitude: at most 1/16 of the value plus the first step.
    assert np.all(error <= np.abs(pcm.astype(np.int32)) // 16 + 132)


def test_decoded_samples_are_native_endian():
    expected = audioop.ulaw2lin(b"\x00", 2)
    assert _dsp.ulaw_decode(b"\x00") == expected
    assert int.from_bytes(expected, sys.byteorder, signed=True) == -32124
