"""RTP packet parse/build (RFC 3550 §5.1) and the RFC 5761 demultiplexing rule."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd.rtp import packet
from gosipd.rtp.packet import RTPError, RtpPacket, is_rtcp

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127).filter(lambda pt: not 72 <= pt <= 76),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)


@given(packets)
def test_build_then_parse_gives_the_same_packet(p: RtpPacket) -> None:
    assert RtpPacket.parse(p.build()) == p


def test_a_pcmu_packet_on_the_wire() -> None:
    p = RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=160,
        ssrc=0xDEADBEEF,
        payload=b"\xff" * 160,
        marker=True,
    )
    wire = p.build()
    assert wire[:12] == bytes.fromhex("80801234000000a0deadbeef")
    assert len(wire) == 172


def test_extension_is_skipped_to_find_the_payload() -> None:
    wire = (
        bytes.fromhex("90000001000000020000000a")
        + bytes.fromhex("bede0002")
        + b"12345678"
        + b"voice"
    )
    p = RtpPacket.parse(wire)
    assert p.extension == (0xBEDE, b"12345678")
    assert p.payload == b"voice"


def test_padding_is_removed_from_the_payload() -> None:
    wire = bytes.fromhex("a0000001000000020000000a") + b"voice" + b"\0\0\x03"
    assert RtpPacket.parse(wire).payload == b"voice"


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (bytes.fromhex("8000000100000002"), packet.TOO_SHORT),
        (bytes.fromhex("40000001000000020000000a") + b"x", packet.BAD_VERSION),
        (bytes.fromhex("83000001000000020000000a") + b"\0" * 8, packet.CSRC_OVERRUN),
        (bytes.fromhex("90000001000000020000000a") + b"\xbe\xde", packet.EXTENSION_OVERRUN),
        (
            bytes.fromhex("90000001000000020000000a") + bytes.fromhex("bede0004") + b"1234",
            packet.EXTENSION_OVERRUN,
        ),
        (bytes.fromhex("a0000001000000020000000a") + b"ab\x00", packet.BAD_PADDING),
        (bytes.fromhex("a0000001000000020000000a") + b"ab\x09", packet.BAD_PADDING),
        (bytes.fromhex("80c80001000000020000000a"), packet.RTCP_PAYLOAD_TYPE),
        (bytes.fromhex("80000001000000020000000a") + b"\0" * 1500, packet.TOO_LONG),
    ],
    ids=[
        "short",
        "version",
        "csrc",
        "ext-header",
        "ext-body",
        "pad-zero",
        "pad-long",
        "rtcp-pt",
        "long",
    ],
)
def test_malformed_packets_are_refused_with_the_rule_they_break(wire: bytes, kind: int) -> None:
    with pytest.raises(RTPError) as info:
        RtpPacket.parse(wire)
    assert info.value.kind == kind
    assert "RTP packet invalid at byte" in str(info.value)


@given(st.binary(max_size=64))
def test_parse_never_raises_anything_but_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RTPError):
        RtpPacket.parse(data)


def test_rfc5761_demultiplexing() -> None:
    assert is_rtcp(bytes.fromhex("80c8000600000001"))  # SR, PT 200
    assert is_rtcp(bytes.fromhex("81c9000700000001"))  # RR, PT 201
    assert not is_rtcp(RtpPacket(0, 1, 2, 3, b"x").build())
    assert not is_rtcp(RtpPacket(101, 1, 2, 3, b"x", marker=True).build())  # 0x80|101 = 229
    assert not is_rtcp(b"\x80")


def test_random_start_values_are_in_range_and_differ() -> None:
    starts = {packet.random_start() for _ in range(20)}
    assert len(starts) == 20
    for ssrc, seq, ts in starts:
        assert 0 <= ssrc < 2**32 and 0 <= seq < 2**16 and 0 <= ts < 2**32
