"""The header list: order, case-insensitive and compact names, list elements, edits."""

from __future__ import annotations

import pytest

from gosipd import sip
from gosipd.sip import COMPACT_FORMS, Headers


def parse_headers(*lines: str) -> Headers:
    data = "\r\n".join(["OPTIONS sip:a@example.com SIP/2.0", *lines, "", ""]).encode()
    return sip.parse(data).headers


def test_names_are_case_insensitive_and_canonical() -> None:
    h = parse_headers("cALL-iD: abc", "v: SIP/2.0/UDP h;branch=z9hG4bK1", "x-custom: 1")
    assert h.get("Call-ID") == h.get("call-id") == h.get("i") == "abc"
    assert h.get("VIA") == "SIP/2.0/UDP h;branch=z9hG4bK1"
    assert list(h) == [
        ("Call-ID", "abc"),
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
        ("x-custom", "1"),  # an unknown header keeps its spelling
    ]
    assert h.get("X-CUSTOM") == "1"


@pytest.mark.parametrize(("compact", "full"), sorted(COMPACT_FORMS.items()))
def test_every_compact_form_expands(compact: str, full: str) -> None:
    value = "0" if full == "Content-Length" else "value"
    h = parse_headers(f"{compact.upper()}: {value}")
    assert h.names() == [full]
    assert h.get(full) == h.get(compact) == value


def test_the_issue_lists_these_compact_forms() -> None:
    assert sorted(COMPACT_FORMS) == sorted("imftvlcksеorbuajxydn".replace("е", "e"))


def test_list_headers_read_as_elements_and_keep_their_lines() -> None:
    h = parse_headers(
        'Contact: "A, B" <sip:a@example.com>;q=0.5, <sip:b@example.com>',
        "Supported: 100rel, timer",
        "Supported: replaces",
        "Subject: hello, world",
    )
    assert h.get_all("Contact") == ['"A, B" <sip:a@example.com>;q=0.5', "<sip:b@example.com>"]
    assert h.get("Contact") == '"A, B" <sip:a@example.com>;q=0.5'
    assert h.count("Supported") == 3
    assert h.get_all("Supported") == ["100rel", "timer", "replaces"]
    assert h.fields("Supported") == ["100rel, timer", "replaces"]
    assert h.get_all("Subject") == ["hello, world"]  # not a list header
    assert len(h) == 4


def test_folded_lines_are_joined_with_one_space() -> None:
    h = parse_headers(
        "Subject: I know you're there,", "\t pick up the phone   ", "  and talk to me!"
    )
    assert h.get("Subject") == "I know you're there, pick up the phone and talk to me!"


def test_edits_keep_order_and_invalidate_typed_values() -> None:
    m = sip.parse(
        b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\n"
        b"Max-Forwards: 70\r\nTo: <sip:a@example.com>\r\nX-A: 1\r\n\r\n"
    )
    assert m.max_forwards == 70
    m.headers.set("max-forwards", "10")
    assert m.max_forwards == 10
    m.headers.add("X-A", "2")
    m.headers.add("Via", "SIP/2.0/UDP h0;branch=z9hG4bK0", first=True)
    assert [v.host for v in m.via] == ["h0", "h1"]
    assert m.headers.names() == ["Via", "Max-Forwards", "To", "X-A"]
    assert m.headers.get_all("x-a") == ["1", "2"]
    assert m.headers.remove("X-A") == 2
    assert "X-A" not in m.headers
    m.headers.set_all("Supported", ["100rel", "timer"])
    assert m.supported == ["100rel", "timer"]
    assert m.headers.remove("Nothing") == 0


def test_values_with_line_breaks_are_refused() -> None:
    h = Headers()
    with pytest.raises(ValueError, match="CR or LF"):
        h.add("Subject", "hi\r\nVia: injected")
    with pytest.raises(ValueError, match="header name"):
        h.add("Bad Name", "x")
    with pytest.raises(TypeError):
        h.add("Subject", 5)  # type: ignore[arg-type]


def test_headers_built_from_pairs_or_a_mapping() -> None:
    assert list(Headers({"to": "<sip:a@b.c>"})) == [("To", "<sip:a@b.c>")]
    h = Headers([("f", "<sip:a@b.c>;tag=1"), ("Subject", "  padded  ")])
    assert list(h) == [("From", "<sip:a@b.c>;tag=1"), ("Subject", "padded")]
    assert h == Headers([("From", "<sip:a@b.c>;tag=1"), ("Subject", "padded")])
    copy = h.copy()
    copy.add("X", "1")
    assert "X" not in h


def test_location_names_line_and_offset() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\nTo: <sip:a@example.com>\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    h = sip.parse(data).headers
    assert h.location("CSeq") == (3, data.index(b"CSeq"))
    assert Headers([("CSeq", "1 A")]).location("CSeq") is None
