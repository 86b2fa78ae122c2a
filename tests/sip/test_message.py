"""Requests and responses: framing, typed reads and edits, builders, serialisation."""

from __future__ import annotations

import pytest

from gosipd import sip
from gosipd.sip import URI, BodyPart, ContentType, CSeq, NameAddr, Via

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

# RFC 3665 §3.1 F1, the basic INVITE
INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def test_parse_reads_the_start_line_and_the_typed_headers() -> None:
    m = sip.parse(INVITE)
    assert isinstance(m, sip.Request) and isinstance(m, sip.Message)
    assert (m.method, str(m.uri)) == ("INVITE", "sip:bob@biloxi.example.com")
    (hop,) = m.via
    assert (hop.transport, hop.sent_by, hop.branch) == (
        "TCP",
        ("client.atlanta.example.com", 5060),
        "z9hG4bK74bf9",
    )
    assert m.top_via == hop
    assert (m.from_.display_name, m.from_.tag) == ("Alice", "9fxced76sl")
    assert (m.to.display_name, m.to.tag) == ("Bob", None)
    assert m.call_id == "3848276298220188511@atlanta.example.com"
    assert m.cseq == CSeq(1, "INVITE")
    assert [str(c.uri) for c in m.contact] == ["sip:alice@client.atlanta.example.com;transport=tcp"]
    assert m.max_forwards == 70
    assert m.content_type == ContentType("application", "sdp")
    assert m.body == SDP and m.sdp == SDP


def test_a_response_parses_too() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;received=192.0.2.1\r\n"
        b"To: <sip:b@example.com>;tag=8321234356\r\nFrom: <sip:a@example.com>;tag=1\r\n"
        b"Call-ID: x\r\nCSeq: 1 INVITE\r\nRequire: 100rel\r\nRSeq: 1\r\n"
        b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    m = sip.parse(data)
    assert isinstance(m, sip.Response)
    assert (m.status, m.reason, m.is_provisional, m.is_final) == (180, "Ringing", True, False)
    assert m.require == ["100rel"] and m.rseq == 1
    assert [r.uri.host for r in m.record_route] == ["p2.example.com", "p1.example.com"]
    assert m.via[0].received == "192.0.2.1"


def test_serialisation_expands_compact_names_and_recomputes_content_length() -> None:
    data = b"OPTIONS sip:a@b.example.com SIP/2.0\r\ni: x\r\nl: 99\r\nc: text/plain\r\n\r\nhi"
    with pytest.raises(sip.SIPParseError, match="99 octets announced but only 2"):
        sip.parse(data)
    m = sip.parse(data.replace(b"l: 99", b"l: 2"))
    assert bytes(m) == (
        b"OPTIONS sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nContent-Length: 2\r\n"
        b"Content-Type: text/plain\r\n\r\nhi"
    )
    m.body = b"hello"
    assert b"Content-Length: 5\r\n" in bytes(m)


def test_a_missing_content_length_means_the_rest_of_the_datagram() -> None:
    m = sip.parse(
        b"MESSAGE sip:a@b.example.com SIP/2.0\r\nContent-Type: text/plain\r\n\r\nall of it"
    )
    assert m.body == b"all of it"
    assert bytes(m).endswith(b"Content-Length: 9\r\n\r\nall of it")


def test_leading_crlf_and_bare_lf_line_ends_are_accepted() -> None:
    m = sip.parse(b"\r\n\r\nOPTIONS sip:a@b.example.com SIP/2.0\nCall-ID: x\n\n")
    assert isinstance(m, sip.Request) and m.call_id == "x"
    assert (
        bytes(m)
        == b"OPTIONS sip:a@b.example.com SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty datagram"),
        (b"\r\n\r\n", "keep-alive"),
        (b"OPTIONS sip:a@b.c SIP/2.0", "not terminated by CRLF"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\nTo: x", "no CRLF"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\n To: x\r\n\r\n", "no header before it"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\nTo x\r\n\r\n", "not followed by ':'"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\nT(o): x\r\n\r\n", "which a header name cannot"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\n: x\r\n\r\n", "expected a header name"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\nTo: a\rb\r\n\r\n", "bare CR"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\nSubject: \xff\xfe\r\n\r\n", "not valid UTF-8"),
        (b"OPTIONS sip:a@b.c SIP/2.0\r\nl: 1x\r\n\r\n", "not a non-negative decimal"),
        (b"OPTIONS sip:a@b.c SIP/3.0\r\n\r\n", "not supported"),
        (b"OPTIONS sip:a@b.c HTTP/1.1\r\n\r\n", "not a SIP-Version"),
        (b"OPTIONS\tsip:a@b.c SIP/2.0\r\n\r\n", "not a tab"),
        (b"OPTIONS sip:a@b.c\r\n\r\n", "no SIP-Version"),
        (b"<html> SIP/2.0\r\n\r\n", "expected a method"),
        (b"SIP/2.0 20 OK\r\n\r\n", "three digits"),
        (b"SIP/2.0 099 Early\r\n\r\n", "outside 100..699"),
        (b"SIP/2.0\r\n\r\n", "no status code"),
        (b"SIP/2.0 200 OK\r\nVia: \xc3\r\n\r\n", "not valid UTF-8"),
    ],
)
def test_unframeable_input_raises_a_parse_error_that_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(sip.SIPParseError) as info:
        sip.parse(data)
    assert reason in info.value.reason
    assert 0 <= info.value.offset <= len(data) or info.value.offset == -1


def test_a_response_that_fails_is_owed_nothing() -> None:
    with pytest.raises(sip.SIPParseError) as info:
        sip.parse(b"SIP/2.0 200 OK\r\nl: x\r\nVia: SIP/2.0/UDP h\r\n\r\n")
    assert info.value.status == 0 and info.value.is_request is False
    assert sip.Response.for_malformed(info.value) is None


def test_typed_reads_report_the_header_and_line_of_a_bad_value() -> None:
    m = sip.parse(
        b"OPTIONS sip:a@b.example.com SIP/2.0\r\nTo: <sip:a@b.example.com>\r\n"
        b"CSeq: one OPTIONS\r\n\r\n"
    )
    with pytest.raises(sip.SIPParseError) as info:
        _ = m.cseq
    assert info.value.reason.startswith("line 3: header 'CSeq': CSeq 'one OPTIONS'")
    assert (info.value.line, info.value.header) == (3, "CSeq")
    assert info.value.offset == m.headers.location("CSeq")[1]  # type: ignore[index]


def test_a_repeated_single_value_header_is_an_error_when_read() -> None:
    m = sip.parse(b"OPTIONS sip:a@b.example.com SIP/2.0\r\nCall-ID: 1\r\nCall-ID: 2\r\n\r\n")
    with pytest.raises(
        sip.SIPParseError, match=r"line 3: header 'Call-ID' appears 2 times \(lines 2, 3\)"
    ):
        _ = m.call_id


def test_a_missing_mandatory_header_is_an_error_when_read() -> None:
    m = sip.parse(b"OPTIONS sip:a@b.example.com SIP/2.0\r\n\r\n")
    for attribute, name in [
        ("from_", "From"),
        ("to", "To"),
        ("call_id", "Call-ID"),
        ("cseq", "CSeq"),
    ]:
        with pytest.raises(sip.SIPParseError, match=f"missing header '{name}'"):
            getattr(m, attribute)
    assert (m.via, m.contact, m.route, m.max_forwards, m.top_via) == ([], [], [], None, None)


def test_typed_reads_are_cached_until_the_header_changes() -> None:
    m = sip.parse(INVITE)
    assert m.to is m.to
    m.to = m.to.with_tag("314159")
    assert m.to.tag == "314159"
    assert b'To: "Bob" <sip:bob@biloxi.example.com>;tag=314159\r\n' in bytes(m)
    m.headers.set("To", "<sip:carol@chicago.example.com>")
    assert m.to.uri.user == "carol"
    listed = m.via
    listed.clear()  # a read is a copy: the message does not change
    assert len(m.via) == 1


def test_via_push_and_pop() -> None:
    m = sip.parse(INVITE)
    m.push_via(Via("UDP", "proxy.example.com", 5060, branch="z9hG4bKp1"))
    assert [v.branch for v in m.via] == ["z9hG4bKp1", "z9hG4bK74bf9"]
    assert sip.parse(bytes(m)).via == m.via
    assert m.pop_via().branch == "z9hG4bKp1"
    assert [v.branch for v in m.via] == ["z9hG4bK74bf9"]
    m.via = [m.via[0].with_params(received="192.0.2.9")]
    assert sip.parse(bytes(m)).via[0].received == "192.0.2.9"


def test_setters_write_canonical_text_and_check_their_values() -> None:
    m = sip.parse(INVITE)
    m.contact = [NameAddr("sip:alice@192.0.2.1:5062")]
    m.route = [NameAddr("sip:p1.example.com;lr"), URI.parse("sip:p2.example.com;lr")]  # type: ignore[list-item]
    m.max_forwards = 69
    m.call_id = "new-call@example.com"
    m.cseq = CSeq(2, "INVITE")
    text = bytes(m)
    assert b"Contact: <sip:alice@192.0.2.1:5062>\r\n" in text
    assert b"Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n" in text
    assert b"Max-Forwards: 69\r\n" in text and b"CSeq: 2 INVITE\r\n" in text
    with pytest.raises(ValueError):
        m.max_forwards = 256
    with pytest.raises(ValueError):
        m.call_id = "has space"
    with pytest.raises(TypeError):
        m.to = "sip:a@b.c"  # type: ignore[assignment]
    m.max_forwards = None
    assert "Max-Forwards" not in m.headers


def test_other_typed_headers_read_and_write() -> None:
    m = sip.Request("REGISTER", "sip:registrar.example.com")
    m.expires = 3600
    m.supported = ["path", "gruu"]
    m.require = ["100rel"]
    m.allow = ["INVITE", "ACK"]
    m.rack = sip.RAck(1, 1, "INVITE")
    m.rseq = 7
    m.retry_after = 30
    assert (m.expires, m.supported, m.require, m.allow) == (
        3600,
        ["path", "gruu"],
        ["100rel"],
        ["INVITE", "ACK"],
    )
    assert (m.rack, m.rseq, m.retry_after) == (sip.RAck(1, 1, "INVITE"), 7, sip.RetryAfter(30))
    again = sip.parse(bytes(m))
    assert again.expires == 3600 and again.rack == sip.RAck(1, 1, "INVITE")
    assert again.headers.get("Retry-After") == "30"
    with pytest.raises(ValueError):
        m.supported = ["not a token"]


def test_contact_wildcard() -> None:
    m = sip.parse(b"REGISTER sip:r.example.com SIP/2.0\r\nContact: *\r\nExpires: 0\r\n\r\n")
    assert m.contact == [] and m.contact_is_wildcard


def test_request_create_fills_the_mandatory_headers() -> None:
    req = sip.Request.create(
        "INVITE",
        "sip:bob@biloxi.example.com",
        from_=NameAddr("sip:alice@atlanta.example.com", "Alice").with_tag("9fxced76sl"),
        to=NameAddr("sip:bob@biloxi.example.com", "Bob"),
        call_id="3848276298220188511@atlanta.example.com",
        cseq=1,
        via=Via("TCP", "client.atlanta.example.com", 5060, branch="z9hG4bK74bf9"),
        contact=NameAddr("sip:alice@client.atlanta.example.com;transport=tcp"),
        body=SDP,
        content_type="application/sdp",
        headers=[("Supported", "100rel"), ("User-Agent", "gosipd")],
    )
    assert bytes(req) == (
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
        b"Max-Forwards: 70\r\n"
        b'From: "Alice" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n'
        b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
        b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
        b"Supported: 100rel\r\nUser-Agent: gosipd\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
    )
    assert sip.validate(sip.parse(bytes(req))) is None


def test_request_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="token"):
        sip.Request("IN VITE", "sip:a@b.c")
    with pytest.raises(sip.SIPParseError):
        sip.Request("INVITE", "not a uri")
    with pytest.raises(ValueError):
        sip.Response(700)
    with pytest.raises(ValueError):
        sip.Response(200, "OK\r\nVia: x")
    assert sip.Response(486).reason == "Busy Here"
    assert sip.Response(499).reason == "Request Failure"


def test_response_for_request_copies_what_rfc3261_8_2_6_says() -> None:
    request = sip.parse(
        INVITE.replace(
            b"Max-Forwards: 70\r\n",
            b"Max-Forwards: 70\r\nTimestamp: 54\r\n"
            b"Record-Route: <sip:p1.example.com;lr>\r\n"
            b"Via: SIP/2.0/UDP second.example.com;branch=z9hG4bK2\r\n",
        )
    )
    assert isinstance(request, sip.Request)
    trying = sip.Response.for_request(request, 100)
    assert trying.headers.get("Timestamp") == "54"
    assert trying.to.tag is None and "Record-Route" not in trying.headers
    assert trying.headers.get_all("Via") == request.headers.get_all("Via")
    ok = sip.Response.for_request(request, 200, to_tag="a6c85cf")
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.to.tag == "a6c85cf" and ok.to.uri == request.to.uri
    assert (ok.from_, ok.call_id, ok.cseq) == (request.from_, request.call_id, request.cseq)
    assert ok.record_route == request.record_route
    assert "Timestamp" not in ok.headers and "Contact" not in ok.headers
    busy = sip.Response.for_request(request, 486, to_tag="a6c85cf")
    assert busy.reason == "Busy Here" and "Record-Route" not in busy.headers
    # a request inside a dialog already has a To tag: it is kept
    request.to = request.to.with_tag("existing")
    assert sip.Response.for_request(request, 200, to_tag="other").to.tag == "existing"


def test_response_for_malformed_answers_a_request_that_did_not_parse() -> None:
    data = INVITE.replace(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"INVITE  sip:bob@biloxi.example.com SIP/2.0"
    )
    with pytest.raises(sip.SIPParseError) as info:
        sip.parse(data)
    reply = sip.Response.for_malformed(info.value, to_tag="x1")
    assert reply is not None and reply.status == 400
    assert reply.to.tag == "x1" and reply.call_id == "3848276298220188511@atlanta.example.com"
    ack = data.replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK")
    with pytest.raises(sip.SIPParseError) as info:
        sip.parse(ack)
    assert sip.Response.for_malformed(info.value) is None  # an ACK is never answered


def test_copy_is_independent() -> None:
    m = sip.parse(INVITE)
    c = m.copy()
    assert isinstance(c, sip.Request) and (c.method, c.uri, c.body) == (m.method, m.uri, m.body)
    c.push_via(Via("UDP", "p.example.com", branch="z9hG4bKc"))
    c.method = "BYE"
    assert len(m.via) == 1 and m.method == "INVITE"
    assert bytes(m) == bytes(sip.parse(INVITE))


def test_multipart_body_with_sdp_and_isup_as_a_carrier_sends_it() -> None:
    isup = bytes.fromhex("0100600a000207038390")
    boundary, body = sip.join_multipart(
        [
            BodyPart.of("application/sdp", SDP),
            BodyPart.of(
                "application/isup;version=itu-t92+",
                isup,
                content_disposition="signal;handling=optional",
            ),
        ],
        "unique-boundary-1",
    )
    req = sip.Request("INVITE", "sip:+15551234567@gw.example.com;user=phone")
    req.set_body(body, ContentType.of("multipart/mixed", boundary=boundary))
    m = sip.parse(bytes(req))
    assert m.sdp == SDP
    parts = m.parts
    assert [p.content_type.mime for p in parts] == ["application/sdp", "application/isup"]
    assert parts[1].body == isup
    assert parts[1].headers.get("Content-Disposition") == "signal;handling=optional"


def test_sdp_is_none_without_an_sdp_body() -> None:
    m = sip.parse(b"MESSAGE sip:a@b.example.com SIP/2.0\r\nContent-Type: text/plain\r\n\r\nhi")
    assert m.sdp is None and m.parts == []
    m.set_body(b"", None)
    assert m.content_type is None and m.body == b""
    with pytest.raises(ValueError, match="Content-Type"):
        m.set_body(b"x", None)


def test_broken_multipart_bodies_are_parse_errors_when_read() -> None:
    m = sip.parse(
        b"INVITE sip:a@b.example.com SIP/2.0\r\nContent-Type: multipart/mixed;boundary=x\r\n"
        b"\r\n--x\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
    )
    with pytest.raises(sip.SIPParseError, match="no closing boundary"):
        _ = m.sdp


def test_wrong_types_are_refused_not_written() -> None:
    m = sip.parse(INVITE)
    for attribute, value in [
        ("uri", None),
        ("method", None),
        ("method", "BAD METHOD"),
        ("headers", None),
        ("body", None),
        ("via", [None]),
        ("contact", ["sip:a@b.c"]),
        ("cseq", "1 INVITE"),
    ]:
        with pytest.raises((TypeError, ValueError)):
            setattr(m, attribute, value)
    with pytest.raises(TypeError):
        m.push_via(None)  # type: ignore[arg-type]
    assert bytes(m) == bytes(sip.parse(INVITE))
    bare = sip.Request.__new__(sip.Request)
    with pytest.raises(TypeError, match="no headers"):
        _ = bare.via
    with pytest.raises(TypeError):
        bytes(bare)
    with pytest.raises(ValueError):
        sip.Response(200).status = 42


def test_the_uri_inside_from_and_to_is_checked_when_first_used() -> None:
    m = sip.parse(
        INVITE.replace(
            b"From: Alice <sip:alice@atlanta.example.com>",
            b"From: Alice <sip:alice@atlanta_example.com>",
        )
    )
    assert m.from_.tag == "9fxced76sl"  # the dialog layer reads tags on every message
    assert str(m.from_) == '"Alice" <sip:alice@atlanta_example.com>;tag=9fxced76sl'
    with pytest.raises(sip.SIPParseError) as info:
        _ = m.from_.uri
    assert info.value.reason.startswith("line 4: header 'From': '_' is not allowed")
    assert (info.value.line, info.value.header) == (4, "From")
    rejection = sip.check(m)
    assert rejection is not None and rejection.status == 400  # the door still refuses it
    with pytest.raises(sip.SIPParseError):
        sip.NameAddr.parse("<sip:alice@atlanta_example.com>")  # parsing on its own is eager
