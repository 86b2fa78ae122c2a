"""Stream framing (RFC 3261 §18.3) and RFC 5626 keepalives, fed in every possible split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd.sip.framing import KEEPALIVE, Framer, FramingError

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1\r\n"
    b"Content-Length: 10\r\nCall-ID: a\r\nContent-Type: application/sdp\r\n\r\nv=0\r\ns=-\r\n"
)  # Content-Length not last: found wherever it is
OK = b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n"  # the compact form


def test_messages_and_keepalives_come_out_in_order() -> None:
    framer = Framer()
    out = framer.feed(b"\r\n\r\n" + INVITE + b"\r\n" + OK + b"\r\n\r\n")
    assert out == [KEEPALIVE, INVITE, OK, KEEPALIVE]
    assert not framer.pending


@given(st.lists(st.integers(0, len(INVITE + OK) + 4), max_size=6))
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int]) -> None:
    stream = INVITE + b"\r\n\r\n" + OK
    framer = Framer()
    out = []
    last = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += framer.feed(stream[last:cut])
        last = max(last, cut)
    assert out == [INVITE, KEEPALIVE, OK]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "no Content-Length"),
        (b"SIP/2.0 200 OK\r\nContent-Length: ten\r\n\r\n", "malformed Content-Length"),
        (b"SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\n", "malformed Content-Length"),
        (b"SIP/2.0 200 OK\r\nContent-Length: 10000000\r\n\r\n", "a body of 10000000 octets"),
        (b"SIP/2.0 200 OK\r\nX: " + b"a" * 20_000, "no end of the header section"),
        (  # each part within its limit, the whole more than the parser takes
            b"SIP/2.0 200 OK\r\nX: " + b"a" * 10_000 + b"\r\nContent-Length: 60000\r\n\r\n",
            r"a message of 70046 octets \(limit 65536\)",
        ),
    ],
)
def test_what_cannot_be_framed_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(FramingError, match=reason):
        Framer().feed(data)


def test_a_partial_message_is_pending_and_crlfs_alone_are_not() -> None:
    framer = Framer()
    framer.feed(b"\r\n")
    assert not framer.pending
    framer.feed(INVITE[:30])
    assert framer.pending
    assert framer.feed(INVITE[30:]) == [INVITE]
    assert not framer.pending


@given(st.binary(max_size=2000))
def test_any_bytes_give_messages_or_a_framing_error(data: bytes) -> None:
    framer = Framer(max_header=512, max_body=512)
    try:
        out = framer.feed(data)
    except FramingError:
        return
    assert all(item is KEEPALIVE or len(item) <= 512 + 4 + 512 for item in out)
