"""RTCP compound packets (RFC 3550 §6, A.2), the report schedule and round-trip time."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd.rtp import rtcp
from gosipd.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RTCPError,
    RtcpSession,
    SenderInfo,
    SenderReport,
    SenderSnapshot,
    SourceDescription,
    build_compound,
    parse_compound,
)
from gosipd.rtp.statistics import ReceptionSnapshot

blocks = st.builds(
    ReportBlock,
    ssrc=st.integers(0, 2**32 - 1),
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(2**23), 2**23 - 1),
    highest_sequence=st.integers(0, 2**32 - 1),
    jitter=st.integers(0, 2**32 - 1),
    lsr=st.integers(0, 2**32 - 1),
    dlsr=st.integers(0, 2**32 - 1),
)


@given(
    ssrc=st.integers(0, 2**32 - 1),
    ntp=st.integers(0, 2**64 - 1),
    reports=st.lists(blocks, max_size=5).map(tuple),
    cname=st.binary(min_size=1, max_size=60),
    reason=st.none() | st.text(max_size=20),
)
def test_compound_round_trip(
    ssrc: int, ntp: int, reports: tuple[ReportBlock, ...], cname: bytes, reason: str | None
) -> None:
    packets: list[rtcp.RtcpPacket] = [
        SenderReport(ssrc, SenderInfo(ntp, 1, 2, 3), reports),
        SourceDescription(((ssrc, ((rtcp.SDES_CNAME, cname),)),)),
        Bye((ssrc,), reason),
    ]
    data = build_compound(packets)
    assert len(data) % 4 == 0
    assert parse_compound(data) == packets


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\xc9\x00\x01", "cannot hold"),
        (bytes.fromhex("80ca000100000001"), "must start with SR or RR"),
        (bytes.fromhex("40c9000100000001"), "version 1"),
        (bytes.fromhex("80c9000500000001"), "length field"),
        (bytes.fromhex("81c9000100000001"), "report blocks do not fit"),
        (bytes.fromhex("80c900010000000100"), "multiple of 4"),
        (
            bytes.fromhex("a0c9000100000001") + bytes.fromhex("80ca000000000000"),
            "padding in a packet",
        ),
    ],
)
def test_invalid_compound_packets_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(RTCPError, match=reason):
        parse_compound(data)


@given(st.binary(max_size=120))
def test_parse_never_raises_anything_but_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RTCPError):
        parse_compound(data)


def test_reports_are_scheduled_about_every_five_seconds_first_one_sooner() -> None:
    s = RtcpSession(ssrc=1, cname="a@b", rng=random.Random(3))
    s.start(100.0)
    first = s.next_timer()
    assert first is not None and 100.0 + 1.0 <= first <= 100.0 + 3.1
    assert s.handle_timer(first - 0.01, 0.0, None, None) is None
    gaps = []
    now = first
    for _ in range(200):
        assert s.handle_timer(now, 0.0, None, None) is not None
        nxt = s.next_timer()
        assert nxt is not None
        gaps.append(nxt - now)
        now = nxt
    assert min(gaps) >= 2.0 and max(gaps) <= 6.2
    assert 3.6 <= sum(gaps) / len(gaps) <= 4.6  # 5 s / (e - 3/2), RFC 3550 §6.3.1


def test_sender_report_carries_counts_and_a_report_block_with_interval_loss() -> None:
    s = RtcpSession(ssrc=10, cname="me@host")
    first = ReceptionSnapshot(ssrc=20, received=100, expected=100, extended_max=1099, jitter=12.7)
    s.report(1000.0, SenderSnapshot(50, 8000, 4000), first)
    second = ReceptionSnapshot(ssrc=20, received=175, expected=200, extended_max=1199, jitter=30.0)
    packets = parse_compound(s.report(1005.0, SenderSnapshot(300, 48000, 44000), second))
    sr = packets[0]
    assert isinstance(sr, SenderReport)
    assert (sr.sender.packet_count, sr.sender.octet_count, sr.sender.rtp_timestamp) == (
        300,
        48000,
        44000,
    )
    (block,) = sr.reports
    assert block.ssrc == 20 and block.cumulative_lost == 25 and block.highest_sequence == 1199
    assert block.fraction_lost == int(25 / 100 * 256)
    assert block.jitter == 30
    assert isinstance(packets[1], SourceDescription) and packets[1].cname(10) == "me@host"


def test_receiver_report_when_we_sent_nothing() -> None:
    s = RtcpSession(ssrc=10, cname="x")
    packets = parse_compound(s.report(0.0, SenderSnapshot(0, 0, 0), None))
    assert isinstance(packets[0], ReceiverReport) and packets[0].reports == ()


def test_round_trip_time_from_lsr_and_dlsr() -> None:
    """Two sessions exchange reports across a path with 30 ms each way."""
    a = RtcpSession(ssrc=1, cname="a")
    b = RtcpSession(ssrc=2, cname="b")
    stats_of_a = ReceptionSnapshot(ssrc=1, received=10, expected=10, extended_max=10, jitter=0.0)
    t = 5000.0
    sr_from_a = a.report(t, SenderSnapshot(10, 1600, 1600), None)
    b.receive(sr_from_a, t + 0.030)
    # b holds a's SR for 1.2 s, then reports; the report reaches a 30 ms later.
    rr_from_b = b.report(t + 1.230, None, stats_of_a)
    a.receive(rr_from_b, t + 1.260)
    assert a.rtt is not None and abs(a.rtt - 0.060) < 0.001
    assert a.remote_report is not None and a.remote_report.ssrc == 1


def test_malformed_rtcp_is_counted_and_ignored() -> None:
    s = RtcpSession(ssrc=1, cname="a")
    assert s.receive(b"\x00\x01", 0.0) == []
    assert s.malformed == 1


def test_bye_is_appended_on_request() -> None:
    s = RtcpSession(ssrc=5, cname="a")
    packets = parse_compound(s.report(0.0, SenderSnapshot(1, 160, 0), None, bye="hangup"))
    assert packets[-1] == Bye((5,), "hangup")
