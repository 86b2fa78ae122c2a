"""SIP message budget: parse a typical 900-byte INVITE with SDP and read what the engine
reads from every message (Via, From, To, Call-ID, CSeq, Contact, Max-Forwards), against a
plain split-based pure-Python parser doing the same work, measured in the same run.

Budget (issue 3): at least 5x the plain parser; aim: under 5 µs. Serialising the same
message is reported against a plain join-based serialiser.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Budget, median_seconds, report

from gosipd import sip

SDP = (
    b"v=0\r\n"
    b"o=gosipd 1718300000 1718300000 IN IP4 198.51.100.10\r\n"
    b"s=gosipd\r\n"
    b"c=IN IP4 198.51.100.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)
# What a UA sends a carrier: 900-ish octets, 15 header fields, an SDP offer.
INVITE = (
    b"INVITE sip:+15551234567@trunk.example.net:5060;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-524287-1---8a7c6f3d2e1b0a99;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:gosipd@198.51.100.10:5060;transport=udp>\r\n"
    b"To: <sip:+15551234567@trunk.example.net;user=phone>\r\n"
    b'From: "Alice Example" <sip:+15557654321@example.com;user=phone>;tag=4f2a9c1e\r\n'
    b"Call-ID: 8c1f4a2b9e7d6c5b4a3f2e1d0c9b8a7f@198.51.100.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b'P-Asserted-Identity: "Alice Example" <sip:+15557654321@example.com;user=phone>\r\n'
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO\r\n"
    b"Supported: 100rel, timer, replaces\r\n"
    b"Session-Expires: 1800;refresher=uac\r\n"
    b"User-Agent: gosipd/0.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


# -- the reference: a straightforward split-based pure-Python parser, written plainly


class PlainMessage:
    def __init__(self, start: list[str], headers: dict[str, list[str]], body: bytes) -> None:
        self.start = start
        self.headers = headers
        self.body = body


COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
}
CANONICAL = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "contact": "Contact",
    "max-forwards": "Max-Forwards",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
}


def plain_parse(data: bytes) -> PlainMessage:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    start = lines[0].split(" ", 2)
    headers: dict[str, list[str]] = {}
    last: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            last[-1] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        name = COMPACT.get(name, name)
        last = headers.setdefault(name, [])
        last.append(value.strip())
    length = int(headers.get("content-length", [str(len(rest))])[0])
    return PlainMessage(start, headers, rest[:length])


def plain_params(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";")[1:]:
        name, _, value = part.partition("=")
        out[name.strip().lower()] = value.strip()
    return out


def plain_name_addr(text: str) -> tuple[str | None, str, dict[str, str]]:
    if "<" in text:
        display, _, rest = text.partition("<")
        uri, _, tail = rest.partition(">")
        return display.strip().strip('"'), uri, plain_params(tail)
    uri, _, tail = text.partition(";")
    return None, uri, plain_params(";" + tail)


def plain_via(text: str) -> tuple[str, str, int | None, dict[str, str]]:
    protocol, _, rest = text.partition(" ")
    host, _, port = rest.split(";")[0].strip().partition(":")
    return protocol, host, int(port) if port else None, plain_params(rest)


def plain_read(msg: PlainMessage) -> tuple[object, ...]:
    """Read what the engine reads from every message."""
    h = msg.headers
    vias = [plain_via(v.strip()) for value in h["via"] for v in value.split(",")]
    from_tag = plain_name_addr(h["from"][0])[2].get("tag")
    to_tag = plain_name_addr(h["to"][0])[2].get("tag")
    number, method = h["cseq"][0].split()
    contact = [plain_name_addr(c.strip())[1] for v in h.get("contact", []) for c in v.split(",")]
    return (
        vias[0][3].get("branch"),
        from_tag,
        to_tag,
        h["call-id"][0],
        int(number),
        method,
        contact,
        int(h["max-forwards"][0]),
    )


def plain_serialize(msg: PlainMessage) -> bytes:
    lines = [" ".join(msg.start)]
    for name, values in msg.headers.items():
        if name == "content-length":
            continue
        for value in values:
            lines.append(f"{CANONICAL.get(name, name)}: {value}")
    lines.append(f"Content-Length: {len(msg.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + msg.body


# -- ours


def ours_read(data: bytes) -> tuple[object, ...]:
    m = sip.parse(data)
    return (
        m.via[0].branch,
        m.from_.tag,
        m.to.tag,
        m.call_id,
        m.cseq.number,
        m.cseq.method,
        m.contact[0].uri,
        m.max_forwards,
    )


def main() -> bool:
    assert len(INVITE) > 900, len(INVITE)
    ours_msg, plain_msg = sip.parse(INVITE), plain_parse(INVITE)
    # both do the same work and find the same values
    assert ours_read(INVITE)[:6] == plain_read(plain_msg)[:6]
    assert sip.parse(plain_serialize(plain_msg)).via == ours_msg.via

    names = {
        "sip": sip,
        "data": INVITE,
        "ours_read": ours_read,
        "plain_read": plain_read,
        "plain_parse": plain_parse,
        "ours_msg": ours_msg,
        "plain_msg": plain_msg,
        "plain_serialize": plain_serialize,
    }

    def pair(stmt: str, ref: str, **kw: int) -> tuple[float, float]:
        # interleave ours and the reference so drift on a shared machine hits both
        ours, refs = [], []
        for _ in range(7):
            ours.append(median_seconds(stmt, names, **kw))
            refs.append(median_seconds(ref, names, **kw))
        return statistics.median(ours), statistics.median(refs)

    budgets = []
    o, r = pair("ours_read(data)", "plain_read(plain_parse(data))", number=5_000, repeat=9)
    budgets.append(Budget("parse + read 7 headers, INVITE", o, r, 5.0))
    o, r = pair("sip.parse(data)", "plain_parse(data)", number=5_000, repeat=9)
    budgets.append(Budget("parse only (frame, no typed read)", o, r, 5.0))
    o, r = pair("bytes(ours_msg)", "plain_serialize(plain_msg)", number=5_000, repeat=9)
    budgets.append(Budget("serialise the parsed INVITE", o, r, 2.0))
    ok = report(
        f"SIP message ({len(INVITE)}-octet INVITE with SDP; median of repeats)",
        "plain Python",
        budgets,
    )
    aim = budgets[0].ours * 1e6
    print(f"parse + read: {aim:.2f} µs per message (aim: under 5 µs)")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
