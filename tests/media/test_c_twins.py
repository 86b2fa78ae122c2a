"""The media loop's C header parser and RFC 3550 statistics against the Python ones,
on the same inputs (the loop runs the C versions without the GIL)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gosipd import _media
from gosipd.rtp.packet import RTPError, RtpPacket
from gosipd.rtp.statistics import ReceptionStatistics


def python_view(data: bytes) -> tuple[int, bool, int, int, int, bytes] | int:
    try:
        p = RtpPacket.parse(data)
    except RTPError as exc:
        return exc.kind
    return (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc, p.payload)


headerish = st.binary(min_size=0, max_size=80).map(
    lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:] if b else b
)


@settings(max_examples=2000)
@given(st.one_of(st.binary(max_size=60), headerish))
def test_c_and_python_rtp_parsers_agree_on_any_bytes(data: bytes) -> None:
    assert _media.parse_rtp_header(data) == python_view(data)


def test_c_and_python_rtp_parsers_agree_on_the_edge_cases() -> None:
    cases = [
        bytes(1501),
        b"\x80" * 12,
        bytes.fromhex("b0000001000000020000000a") + bytes.fromhex("00000000") + b"\x01",
        bytes.fromhex("af000001000000020000000a") + bytes(60) + b"\x04",
    ]
    for data in cases:
        assert _media.parse_rtp_header(data) == python_view(data)


streams = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 0, 1, -1, 2, 5, 200, -50, 3001, 40000]),  # sequence step
        st.integers(0, 40_000_000),  # arrival jitter in ns
        st.sampled_from([7, 7, 7, 7, 7, 7, 9]),  # ssrc
        st.sampled_from([True, True, True, False]),  # timing (False: an RFC 4733 event)
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(streams, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
def test_c_and_python_statistics_agree_on_any_stream(
    stream: list[tuple[int, int, int, bool]], seq0: int, ts0: int
) -> None:
    py, c = ReceptionStatistics(), _media.ReceptionStatistics()
    seq, ts, t = seq0, ts0, 10**12
    for step, jitter, ssrc, timing in stream:
        seq = (seq + step) & 0xFFFF
        ts = (ts + 160 * step) & 0xFFFFFFFF
        t += 20_000_000
        arrival = t + jitter
        assert py.update(ssrc, seq, ts, arrival, timing=timing) == c.update(
            ssrc, seq, ts, arrival, timing
        )
        s = py.snapshot()
        assert (
            s.ssrc,
            s.received,
            s.expected,
            s.extended_max,
            s.jitter,
            s.duplicates,
        ) == c.snapshot()


def test_c_and_python_statistics_agree_on_a_long_lossy_wrapping_stream() -> None:
    rng = random.Random(5)
    py, c = ReceptionStatistics(), _media.ReceptionStatistics()
    seq, ts = 65000, 2**32 - 100_000
    for k in range(20_000):
        seq = (seq + (2 if rng.random() < 0.05 else 1)) & 0xFFFF
        ts = (ts + 160) & 0xFFFFFFFF
        arrival = k * 20_000_000 + rng.randrange(0, 30_000_000)
        py.update(1, seq, ts, arrival)
        c.update(1, seq, ts, arrival)
        if rng.random() < 0.02:  # a duplicate
            py.update(1, seq, ts, arrival + 1000)
            c.update(1, seq, ts, arrival + 1000)
    s = py.snapshot()
    assert (s.ssrc, s.received, s.expected, s.extended_max, s.jitter, s.duplicates) == c.snapshot()
    assert s.lost > 800 and s.duplicates > 300
