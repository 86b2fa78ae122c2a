"""Typed header values: NameAddr, Via, CSeq, Params, and the Python-level ones
(Content-Type, RAck, digest challenges and credentials, Retry-After, Date)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from gosipd.sip import (
    URI,
    Challenge,
    ContentType,
    Credentials,
    CSeq,
    NameAddr,
    Params,
    RAck,
    RetryAfter,
    SIPParseError,
    Via,
    format_date,
    parse_date,
    quote,
    split_list,
    unquote,
)

# -- NameAddr


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"Bob \\"B\\" Smith" <sip:bob@biloxi.com>;tag=a6c85cf')
    assert quoted.display_name == 'Bob "B" Smith'
    assert quoted.uri == URI.parse("sip:bob@biloxi.com")
    assert quoted.tag == "a6c85cf"
    tokens = NameAddr.parse("Bob   Smith <sip:bob@biloxi.com>")
    assert tokens.display_name == "Bob Smith"
    bare = NameAddr.parse("sip:bob@biloxi.com;tag=x")
    assert (bare.display_name, bare.tag, bare.uri.params) == (None, "x", Params())
    empty = NameAddr.parse('"" <sip:bob@biloxi.com>')
    assert empty.display_name == ""


def test_name_addr_is_written_in_name_addr_form() -> None:
    assert str(NameAddr.parse("sip:bob@biloxi.com ; tag = x")) == "<sip:bob@biloxi.com>;tag=x"
    assert str(NameAddr.parse("Bob <sip:bob@biloxi.com>")) == '"Bob" <sip:bob@biloxi.com>'
    built = NameAddr(URI.parse("sip:alice@atlanta.com"), 'Alice "A"', {"tag": "1928301774"})
    assert str(built) == '"Alice \\"A\\"" <sip:alice@atlanta.com>;tag=1928301774'
    assert NameAddr.parse(str(built)) == built


def test_contact_parameters() -> None:
    contact = NameAddr.parse(
        '<sip:alice@192.0.2.4>;expires=3600;q=0.7;+sip.instance="<urn:uuid:00000000-0000-1000>"'
    )
    assert contact.expires == 3600
    assert contact.q == 0.7
    assert unquote(contact.params["+sip.instance"] or "") == "<urn:uuid:00000000-0000-1000>"
    with pytest.raises(SIPParseError, match="qvalue"):
        _ = NameAddr.parse("<sip:a@b.c>;q=1.5").q
    with pytest.raises(SIPParseError, match="expires"):
        _ = NameAddr.parse("<sip:a@b.c>;expires=soon").expires


def test_name_addr_copies_with_changes() -> None:
    to = NameAddr.parse("<sip:bob@biloxi.com>")
    tagged = to.with_tag("314159")
    assert (to.tag, tagged.tag) == (None, "314159")
    assert str(tagged) == "<sip:bob@biloxi.com>;tag=314159"
    assert tagged.with_tag("2").tag == "2"
    assert str(tagged.without_params("tag")) == "<sip:bob@biloxi.com>"
    assert str(to.replace(display_name="Bob")) == '"Bob" <sip:bob@biloxi.com>'
    with pytest.raises(ValueError, match="token"):
        to.with_tag("not a token")


def test_name_addr_equality_and_pickle() -> None:
    a = NameAddr.parse("<sip:bob@BILOXI.com>;tag=1")
    assert a == NameAddr.parse("sip:bob@biloxi.com;TAG=1")
    assert a != NameAddr.parse("<sip:bob@biloxi.com>;tag=2")
    assert {a: 1}[NameAddr.parse("sip:bob@biloxi.com;tag=1")] == 1
    assert pickle.loads(pickle.dumps(a)) == a


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty value"),
        ('"Unterminated <sip:a@b.c>', "unterminated quoted string"),
        ('"Name" sip:a@b.c', "followed by '<'"),
        ("Bell, Alexander <sip:a@b.c>", "must be quoted"),
        ("< sip:a@b.c >", "whitespace inside"),
        ("<sip:a@b.c", "not closed"),
        ("sip:a@b.c?x=y", "'<' '>'"),
        ("<sip:a@b.c>;;tag=1", "empty parameter"),
        ("<sip:a@b.c>;tag=", "no value"),
        ("<sip:a@b.c> junk", "unexpected"),
        ('"a\rb" <sip:a@b.c>', "control character"),
    ],
)
def test_malformed_name_addrs_are_refused(text: str, reason: str) -> None:
    with pytest.raises(SIPParseError) as info:
        NameAddr.parse(text)
    assert reason in info.value.reason


# -- Via


def test_via_parts() -> None:
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;ttl=16")
    assert (via.protocol, via.version, via.transport) == ("SIP", "2.0", "UDP")
    assert via.sent_protocol == "SIP/2.0/UDP"
    assert via.sent_by == ("pc33.atlanta.com", 5066)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.has_rport and via.rport is None
    assert via.ttl == 16
    assert via.received is None and via.maddr is None


def test_via_with_received_and_rport_as_a_ua_answers() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport")
    answered = via.with_params(received="192.0.2.1", rport=5062)
    assert (
        str(answered) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5062;received=192.0.2.1"
    )
    assert (answered.received, answered.rport) == ("192.0.2.1", 5062)
    assert via.branch == answered.branch


def test_via_built_and_compared() -> None:
    via = Via("tcp", "proxy.example.com", branch="z9hG4bKx", rport=True)
    assert str(via) == "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKx;rport"
    assert via == Via.parse("SIP/2.0/TCP PROXY.example.com;branch=z9hG4bKx;rport")
    assert pickle.loads(pickle.dumps(via)) == via
    assert via.replace(port=5061).sent_by == ("proxy.example.com", 5061)


def test_via_with_lws_everywhere_the_grammar_allows_it() -> None:
    via = Via.parse("SIP  /   2.0 / UDP   host.example.com : 5060 ;  branch  =  z9hG4bKa")
    assert via.sent_by == ("host.example.com", 5060)
    assert via.branch == "z9hG4bKa"
    assert str(via) == "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKa"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SIP/2.0 host", "name/version/transport"),
        ("SIP/2.0/UDP", "no sent-by"),
        ("SIP/2.0/UDPhost", "no sent-by"),
        ("SIP/2.0/UDP host;;", "empty parameter"),
        ("SIP/2.0/UDP host;branch", "branch has no value"),
        ("SIP/2.0/UDP host;ttl=256", "ttl"),
        ("SIP/2.0/UDP host;received=host.example.com", "received"),
        ("SIP/2.0/UDP host;rport=x", "rport"),
        ("SIP/2.0/UDP host:99999", "out of range"),
        ("SIP/2.0/UDP a, SIP/2.0/UDP b", "comma"),
    ],
)
def test_malformed_vias_are_refused(text: str, reason: str) -> None:
    with pytest.raises(SIPParseError) as info:
        Via.parse(text)
    assert reason in info.value.reason


# -- CSeq


def test_cseq() -> None:
    cseq = CSeq.parse("  0042   INVITE ")
    assert (cseq.number, cseq.method, str(cseq)) == (42, "INVITE", "42 INVITE")
    assert cseq == CSeq(42, "INVITE")
    assert CSeq.parse(str(CSeq(2**31 - 1, "BYE"))).number == 2**31 - 1
    for bad, reason in [
        ("INVITE", "sequence number"),
        ("1", "whitespace"),
        ("1INVITE", "whitespace"),
        (str(2**31) + " BYE", "2**31"),
        ("1 INVITE x", "unexpected"),
    ]:
        with pytest.raises(SIPParseError, match=reason.replace("*", r"\*")):
            CSeq.parse(bad)
    with pytest.raises(ValueError):
        CSeq(-1, "INVITE")


# -- Params and string helpers


def test_params_is_an_ordered_case_insensitive_mapping() -> None:
    params = Params([("Transport", "udp"), ("lr", None)])
    assert params["transport"] == "udp"
    assert "LR" in params and params["lr"] is None
    assert "maddr" not in params and params.get("maddr") is None
    assert list(params) == ["Transport", "lr"]
    assert params.with_param("transport", "tcp").items() == [("transport", "tcp"), ("lr", None)]
    assert params.without("lr") == {"transport": "udp"}
    assert str(params) == ";Transport=udp;lr"
    with pytest.raises(KeyError):
        params["maddr"]


def test_quote_and_unquote_round_trip() -> None:
    for text in ["plain", 'with "quotes"', "back\\slash", "tab\tand\x07bell", "ünïcode"]:
        assert unquote(quote(text)) == text
    assert quote('a"b') == '"a\\"b"'
    assert unquote("token") == "token"
    with pytest.raises(ValueError):
        quote("line\r\nbreak")


def test_split_list_respects_quotes_and_angle_brackets() -> None:
    assert split_list('"A, B" <sip:a@b.c;x=1,2>, <sip:c@d.e> ,x') == [
        '"A, B" <sip:a@b.c;x=1,2>',
        "<sip:c@d.e>",
        "x",
    ]
    assert split_list("a,,b") == ["a", "", "b"]
    with pytest.raises(SIPParseError, match="unbalanced"):
        split_list('"open, quote')


# -- Content-Type and Accept


def test_content_type() -> None:
    ct = ContentType.parse('Multipart/Mixed ; boundary="unique-boundary-1" ;charset=utf-8')
    assert (ct.type, ct.subtype, ct.mime) == ("multipart", "mixed", "multipart/mixed")
    assert ct.boundary == "unique-boundary-1"
    assert ct.charset == "utf-8"
    assert str(ct) == 'multipart/mixed;boundary="unique-boundary-1";charset=utf-8'
    assert ContentType.of("application/sdp") == ContentType.parse("application/SDP")
    assert str(ContentType.of("multipart/mixed", boundary="b1")) == "multipart/mixed;boundary=b1"
    with pytest.raises(SIPParseError):
        ContentType.parse("application")


def test_accept_ranges_match() -> None:
    assert ContentType.parse("*/*").matches("application/sdp")
    assert ContentType.parse("application/*").matches("application/sdp")
    assert not ContentType.parse("text/*").matches("application/sdp")
    assert ContentType.parse("application/sdp;q=0.5").q == 0.5


# -- RAck


def test_rack() -> None:
    rack = RAck.parse("776656 1 INVITE")
    assert (rack.rseq, rack.cseq, rack.method) == (776656, 1, "INVITE")
    assert str(rack) == "776656 1 INVITE"
    with pytest.raises(SIPParseError):
        RAck.parse("0 1 INVITE")
    with pytest.raises(SIPParseError):
        RAck.parse("1 INVITE")


# -- authentication headers


def test_digest_challenge() -> None:
    challenge = Challenge.parse(
        'Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth,auth-int",'
        ' nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
    )
    assert challenge.is_digest
    assert challenge.realm == "atlanta.com"
    assert challenge.nonce == "f84f1cec41e6cbe5aea9c8e88d359"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.opaque == ""
    assert not challenge.stale
    assert challenge.algorithm == "MD5"
    assert Challenge.parse(str(challenge)) == challenge


def test_digest_challenge_built() -> None:
    challenge = Challenge.digest("lab.test", "abc123", opaque="xyz", stale=True)
    assert str(challenge) == (
        'Digest realm="lab.test", nonce="abc123", opaque="xyz", stale=true, algorithm=MD5,'
        ' qop="auth"'
    )
    assert challenge.stale


def test_digest_credentials() -> None:
    text = (
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
        ' uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b",'
        ' response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    credentials = Credentials.parse(text)
    assert (credentials.username, credentials.realm, credentials.uri) == (
        "bob",
        "biloxi.com",
        "sip:bob@biloxi.com",
    )
    assert (credentials.qop, credentials.nc, credentials.cnonce) == ("auth", "00000001", "0a4f113b")
    assert credentials.response == "6629fae49393a05397450978507c4ef1"
    assert "6629fae4" not in repr(credentials)  # never into a log through repr()
    built = Credentials.digest(
        username="bob",
        realm="biloxi.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="sip:bob@biloxi.com",
        response="6629fae49393a05397450978507c4ef1",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    assert Credentials.parse(str(built)) == built
    assert built.params == credentials.params


def test_malformed_auth_headers_are_refused() -> None:
    with pytest.raises(SIPParseError):
        Challenge.parse('Digest realm="unterminated')
    with pytest.raises(SIPParseError):
        Credentials.parse("Digest username=bob,")
    with pytest.raises(SIPParseError):
        Challenge.parse("")


# -- Retry-After and Date


def test_retry_after() -> None:
    value = RetryAfter.parse("18000;duration=3600")
    assert (value.seconds, value.duration, value.comment) == (18000, 3600, None)
    commented = RetryAfter.parse("120 (I'm in a meeting (really))")
    assert (commented.seconds, commented.comment) == (120, "I'm in a meeting (really)")
    assert str(RetryAfter(30)) == "30"
    with pytest.raises(SIPParseError):
        RetryAfter.parse("soon")
    with pytest.raises(SIPParseError):
        RetryAfter.parse(str(2**32))


def test_date_is_rfc1123_in_gmt() -> None:
    when = parse_date("Sat, 13 Nov 2010 23:29:00 GMT")
    assert when == datetime(2010, 11, 13, 23, 29, 0, tzinfo=UTC)
    assert format_date(when) == "Sat, 13 Nov 2010 23:29:00 GMT"
    for bad in ["Fri, 01 Jan 2010 16:00:00 EST", "2010-01-01", "Fri, 32 Jan 2010 16:00:00 GMT"]:
        with pytest.raises(SIPParseError):
            parse_date(bad)
