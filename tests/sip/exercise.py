"""What the SIP property tests and the fuzz script (tests/fuzz/fuzz_sip.py) do with a
datagram, and the material they mutate: one definition, so the two never drift apart."""

from __future__ import annotations

import contextlib
from pathlib import Path

from gosipd import sip

DATA = Path(__file__).resolve().parent.parent / "data"

READERS = (
    "via",
    "top_via",
    "from_",
    "to",
    "call_id",
    "cseq",
    "contact",
    "contact_is_wildcard",
    "route",
    "record_route",
    "max_forwards",
    "content_type",
    "require",
    "proxy_require",
    "supported",
    "unsupported",
    "allow",
    "accept",
    "rseq",
    "rack",
    "www_authenticate",
    "proxy_authenticate",
    "authorization",
    "proxy_authorization",
    "retry_after",
    "expires",
    "min_expires",
    "date",
    "sdp",
    "parts",
)
SUBFIELDS = (
    "uri",
    "params",
    "display_name",
    "tag",
    "branch",
    "received",
    "rport",
    "q",
    "expires",
    "host",
    "port",
    "user",
    "password",
    "transport",
    "headers",
    "realm",
    "nonce",
    "qop",
    "boundary",
)
#: Fragments that make parsers stumble, spliced into real messages.
PIECES = [
    b",",
    b";",
    b'"',
    b"<",
    b">",
    b"\r\n",
    b"\r\n ",
    b"\n",
    b"\r",
    b"%",
    b"%0",
    b"%zz",
    b"\\",
    b"[",
    b"]",
    b"[::1]",
    b":",
    b"@",
    b"=",
    b"\x00",
    b"\xff",
    b"\xc3",
    b" ",
    b"\t",
    b"?",
    b"&",
    b"sip:",
    b"sips:",
    b"tel:+1",
    b"*",
    b"SIP/2.0",
    b"SIP/2.0/UDP ",
    b"0",
    b"99999999999999999999",
    b"-1",
    b";branch=z9hG4bK",
    b";tag=",
    b"Content-Length: ",
    b"l: 0\r\n",
    b"v: SIP/2.0/UDP h\r\n",
    b"multipart/mixed;boundary=b",
    b"--b\r\n",
    b"Digest ",
    b'realm="',
    b"(",
    b")",
]


def corpus() -> list[bytes]:
    files = sorted((DATA / "rfc4475").glob("*.dat")) + sorted((DATA / "sip").glob("*.sip"))
    return [p.read_bytes() for p in files]


def exercise(data: bytes) -> None:
    """Everything a caller may do with a datagram raises SIPParseError or nothing, and a
    message that parses serialises to bytes that parse back to the same bytes."""
    try:
        message = sip.parse(data)
    except sip.SIPParseError as error:
        assert isinstance(error.reason, str) and error.reason
        reply = sip.Response.for_malformed(error, to_tag="fuzz")
        if reply is not None:
            sip.parse(bytes(reply))
        return
    for attribute in READERS:
        try:
            value = getattr(message, attribute)
        except sip.SIPParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            str(item)
            repr(item)
            for sub in SUBFIELDS:
                with contextlib.suppress(sip.SIPParseError):
                    getattr(item, sub, None)
    sip.check(message, supported=("100rel",), allow=("INVITE", "ACK", "BYE"))
    list(message.headers)
    once = bytes(message)
    try:
        twice = bytes(sip.parse(once))
    except sip.SIPParseError as error:
        raise AssertionError(f"serialised message does not parse: {error}") from None
    if twice != once:
        raise AssertionError("serialise -> parse -> serialise changed the bytes")
    if isinstance(message, sip.Request):
        sip.parse(bytes(sip.Response.for_request(message, 486, to_tag="fuzz")))
    with contextlib.suppress(sip.SIPParseError):
        message.to = message.to.with_tag("t2")
        sip.parse(bytes(message))
