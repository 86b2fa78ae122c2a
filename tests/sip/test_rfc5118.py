"""RFC 5118: IPv6 references in the Request-URI, Via, Contact and SDP.

The messages are those of RFC 5118 §4, with Content-Length computed from the body
(the RFC's printed lengths do not match its CRLF bodies).
"""

from __future__ import annotations

import pytest

from gosipd import sip

HEAD = {
    "To": "sip:user@example.com",
    "From": "sip:user@example.com;tag=81x2",
    "Via": "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
    "Call-ID": "SSG9559905523997077@hlau_4100",
    "Max-Forwards": "70",
    "Contact": '"Caller" <sip:caller@[2001:db8::1]>',
}


def message(start: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def register(uri: str) -> bytes:
    return message(f"REGISTER {uri} SIP/2.0", {**HEAD, "CSeq": "98176 REGISTER"})


def test_4_1_ipv6_reference_in_request_uri_via_and_contact() -> None:
    m = sip.parse(register("sip:[2001:db8::10]"))
    assert isinstance(m, sip.Request)
    assert (m.uri.host, m.uri.port) == ("2001:db8::10", None)
    assert m.uri.host_port == "[2001:db8::10]"
    assert m.via[0].host == "2001:db8::9:1"
    assert m.contact[0].uri.host == "2001:db8::1"
    assert m.contact[0].display_name == "Caller"
    assert sip.validate(m) is None


def test_4_2_ipv6_address_without_brackets_is_refused_with_400() -> None:
    with pytest.raises(sip.SIPParseError) as info:
        sip.parse(register("sip:2001:db8::10"))
    assert "must be enclosed in '[' ']'" in info.value.reason
    reply = sip.Response.for_malformed(info.value, to_tag="x")
    assert reply is not None and reply.status == 400


@pytest.mark.parametrize(
    "text",
    ["sip:2001:db8::10", "sip:user@2001:db8::10:5060", "sip:[2001:db8::10", "sip:[2001:db8:::10]"],
)
def test_malformed_ipv6_references_are_refused(text: str) -> None:
    with pytest.raises(sip.SIPParseError):
        sip.URI.parse(text)


def test_4_3_a_port_inside_the_brackets_is_part_of_the_address() -> None:
    m = sip.parse(register("sip:[2001:db8::10:5070]"))
    assert (m.uri.host, m.uri.port) == ("2001:db8::10:5070", None)


def test_4_4_a_port_after_the_brackets_is_a_port() -> None:
    m = sip.parse(register("sip:[2001:db8::10]:5070"))
    assert (m.uri.host, m.uri.port) == ("2001:db8::10", 5070)
    assert m.uri.host_port == "[2001:db8::10]:5070"


@pytest.mark.parametrize("received", ["[2001:db8::9:255]", "2001:db8::9:255"])
def test_4_5_via_received_with_and_without_brackets(received: str) -> None:
    via = f"SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKas3-111"
    m = sip.parse(
        message("BYE sip:[2001:db8::10] SIP/2.0", {**HEAD, "Via": via, "CSeq": "321 BYE"})
    )
    assert m.via[0].received == "2001:db8::9:255"
    assert m.via[0].branch == "z9hG4bKas3-111"
    assert sip.validate(m) is None


def test_4_6_ipv6_addresses_in_the_sdp_body() -> None:
    sdp = (
        b"v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\n"
        b"s=Live video feed for today's meeting\r\nc=IN IP6 2001:db8::20\r\n"
        b"t=3338481189 3370017201\r\nm=audio 6000 RTP/AVP 2\r\na=rtpmap:2 G726-32/8000\r\n"
        b"m=video 6024 RTP/AVP 107\r\na=rtpmap:107 H263-1998/90000\r\n"
    )
    headers = {
        **HEAD,
        "To": "sip:user@[2001:db8::10]",
        "Via": "SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111",
        "Contact": '"Caller" <sip:caller@[2001:db8::20]>',
        "CSeq": "8612 INVITE",
    }
    m = sip.parse(message("INVITE sip:user@[2001:db8::10] SIP/2.0", headers, sdp))
    assert m.sdp == sdp
    assert m.to.uri.host == "2001:db8::10"
    assert sip.validate(m) is None


def test_4_7_ipv6_and_ipv4_in_one_via_list() -> None:
    data = (
        b"BYE sip:user@host.example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144\r\n"
        b"Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200\r\n"
        b"Call-ID: 997077@lau_4100\r\nMax-Forwards: 70\r\nCSeq: 89187 BYE\r\n"
        b"To: sip:user@example.net;tag=9817--94\r\nFrom: sip:user@example.com;tag=81x2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    m = sip.parse(data)
    assert [v.sent_by for v in m.via] == [
        ("2001:db8::9:1", 6050),
        ("192.0.2.1", None),
        ("2001:db8::9:255", None),
    ]
    assert m.via[2].received == "192.0.2.200"
    assert str(m.via[0]) == "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111"


def test_4_9_ipv4_mapped_ipv6_addresses() -> None:
    headers = {
        **HEAD,
        "Via": "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
        "Contact": '"T. desk phone" <sip:ted@[::ffff:192.0.2.2]>',
        "CSeq": "612 INVITE",
    }
    m = sip.parse(message("INVITE sip:user@example.com SIP/2.0", headers))
    assert m.via[0].sent_by == ("::ffff:192.0.2.10", 19823)
    assert m.contact[0].uri.host == "::ffff:192.0.2.2"


def test_4_10_the_rfc_3261_three_colon_form_is_tolerated_as_the_same_address() -> None:
    def options(host: str) -> sip.Request | sip.Response:
        headers = {**HEAD, "To": f"sip:user@[{host}]", "CSeq": "689 OPTIONS"}
        return sip.parse(message(f"OPTIONS sip:user@[{host}] SIP/2.0", headers))

    buggy, correct = options("2001:db8:::192.0.2.1"), options("2001:db8::192.0.2.1")
    assert isinstance(buggy, sip.Request) and isinstance(correct, sip.Request)
    assert buggy.uri == correct.uri
    assert hash(buggy.uri) == hash(correct.uri)
    assert buggy.to.uri == correct.to.uri
    # tolerated, not rewritten: a message we only pass on keeps its text
    assert str(buggy.uri) == "sip:user@[2001:db8:::192.0.2.1]"


def test_ipv6_hosts_compare_as_addresses() -> None:
    assert sip.URI.parse("sip:[2001:DB8::10]") == sip.URI.parse("sip:[2001:db8:0:0:0:0:0:10]")
    assert sip.URI.parse("sip:[2001:db8::10]") != sip.URI.parse("sip:[2001:db8::11]")


def test_built_ipv6_values_are_written_with_brackets() -> None:
    uri = sip.URI(host="2001:db8::1", port=5060)
    assert str(uri) == "sip:[2001:db8::1]:5060"
    assert sip.URI(host="[2001:db8::1]").host == "2001:db8::1"
    via = sip.Via("UDP", "2001:db8::1", 5060, branch="z9hG4bK1")
    assert str(via) == "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1"
    assert via.with_params(received="2001:db8::2").received == "2001:db8::2"
