"""check()/validate(): the response a parsed request is owed, in RFC 3261 §8.2 order."""

from __future__ import annotations

import pytest

from gosipd import sip

UA = {"allow": ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"), "supported": ("100rel",)}


def request(
    method: str = "OPTIONS",
    uri: str = "sip:bob@biloxi.example.com",
    *extra: str,
    body: bytes = b"",
    cseq_method: str | None = None,
) -> sip.Request | sip.Response:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8",
        "Max-Forwards: 70",
        "To: <sip:bob@biloxi.example.com>",
        "From: <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710",
        f"CSeq: 63104 {cseq_method or method}",
        *extra,
    ]
    return sip.parse(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def test_a_well_formed_request_is_owed_nothing() -> None:
    assert sip.check(request(), **UA) is None
    assert (
        sip.validate(
            request(
                "INVITE",
                "sip:bob@biloxi.example.com",
                "Content-Type: application/sdp",
                body=b"v=0\r\n",
            ),
            **UA,
        )
        is None
    )


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        (("Via: SIP/2.0/UDP h;branch",), "branch has no value"),
        (("Contact: <sip:a@b.c",), "not closed"),
        (("Route: sip:p1.example.com?x=1",), "'<' '>'"),
        (("Record-Route: <sip:p1.example.com;lr>, <sip:bad host>",), "header 'Record-Route'"),
        (("Expires: soon",), "header 'Expires'"),
        (("Require: 100rel, ",), None),  # an empty list element is tolerated
        (("Supported: a b",), "option tag 'a b'"),
        (("Content-Type: sdp",), "media type"),
        (("Retry-After: later",), "Retry-After"),
        (("Date: yesterday",), "Date"),
        (("RSeq: 0",), "RSeq"),
        (("RAck: 1 INVITE",), "RAck"),
        (("Authorization: Digest username=",), "credentials"),
        (("Contact: <sip:a@b.c>;q=2",), "qvalue"),
        (("Contact: <sip:a@b.c>;expires=-1",), "expires"),
        (("Content-Length: 0", "Content-Length: 0"), "appears 2 times"),
        (("Max-Forwards: 70",), "appears 2 times"),
        (("Content-Type: text/plain", "Content-Type: text/html"), "appears 2 times"),
        (("Content-Encoding: gzip, identity",), None),  # a list: not a repeat
        (("Accept: text/plain, ?",), "Accept"),
    ],
)
def test_any_malformed_header_is_owed_400(extra: tuple[str, ...], detail: str | None) -> None:
    rejection = sip.check(request("OPTIONS", "sip:bob@biloxi.example.com", *extra), **UA)
    if detail is None:
        assert rejection is None
        return
    assert rejection is not None
    assert (rejection.status, rejection.reason) == (400, "Bad Request")
    assert detail in rejection.detail


def test_missing_mandatory_headers_are_owed_400_naming_them() -> None:
    m = sip.parse(
        b"OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\nCSeq: 1 OPTIONS\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"
    )
    rejection = sip.check(m)
    assert rejection is not None and rejection.status == 400
    assert rejection.detail == "missing mandatory headers 'From', 'To', 'Call-ID'"


def test_cseq_method_must_match_the_request_method() -> None:
    rejection = sip.check(request("BYE", cseq_method="INVITE"))
    assert rejection is not None and rejection.status == 400
    assert (
        rejection.detail
        == "line 7: header 'CSeq': method 'INVITE' does not match request line 'BYE'"
    )


def test_a_body_needs_a_content_type() -> None:
    rejection = sip.check(request("OPTIONS", "sip:bob@biloxi.example.com", body=b"hello"))
    assert rejection is not None and rejection.status == 400 and "Content-Type" in rejection.detail


def test_contact_wildcard_outside_register_is_owed_400() -> None:
    assert sip.validate(request("INVITE", "sip:bob@biloxi.example.com", "Contact: *")) == 400
    assert (
        sip.validate(request("REGISTER", "sip:biloxi.example.com", "Contact: *", "Expires: 0"))
        is None
    )


def test_method_not_allowed_is_405_with_allow_and_unknown_is_501() -> None:
    rejection = sip.check(request("SUBSCRIBE"), **UA)
    assert rejection is not None
    assert (rejection.status, rejection.headers) == (
        405,
        (("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),),
    )
    assert sip.validate(request("FROBNICATE"), **UA) == 501
    assert sip.validate(request("SUBSCRIBE")) is None  # allow=None: the caller decides


def test_unsupported_request_uri_scheme_is_416() -> None:
    assert sip.validate(request("OPTIONS", "im:bob@biloxi.example.com"), **UA) == 416
    assert sip.validate(request("OPTIONS", "tel:+15550100"), **UA) is None
    assert sip.validate(request("OPTIONS", "tel:+15550100"), schemes=("sip",)) == 416


def test_required_extension_we_lack_is_420_with_unsupported() -> None:
    rejection = sip.check(
        request("INVITE", "sip:bob@biloxi.example.com", "Require: 100rel, foo, bar"), **UA
    )
    assert rejection is not None
    assert (rejection.status, rejection.reason) == (420, "Bad Extension")
    assert rejection.headers == (("Unsupported", "foo, bar"),)
    # CANCEL and ACK are never rejected for Require (RFC 3261 §8.2.2.3)
    assert sip.check(request("CANCEL", "sip:bob@biloxi.example.com", "Require: foo"), **UA) is None


def test_unknown_body_type_or_encoding_is_415() -> None:
    xml = request(
        "INVITE", "sip:bob@biloxi.example.com", "Content-Type: application/xml", body=b"<a/>"
    )
    rejection = sip.check(xml, **UA)
    assert rejection is not None
    assert rejection.status == 415
    assert rejection.headers == (
        ("Accept", "application/sdp, multipart/mixed, multipart/alternative"),
    )
    gzip = request(
        "INVITE",
        "sip:bob@biloxi.example.com",
        "Content-Type: application/sdp",
        "Content-Encoding: gzip",
        body=b"\x1f\x8b",
    )
    rejection = sip.check(gzip, **UA)
    assert rejection is not None
    assert (rejection.status, rejection.headers) == (415, (("Accept-Encoding", "identity"),))


def test_an_invite_that_accepts_no_sdp_is_406() -> None:
    assert sip.validate(request("INVITE", "sip:b@example.com", "Accept: text/plain"), **UA) == 406
    assert (
        sip.validate(request("INVITE", "sip:b@example.com", "Accept: application/*"), **UA) is None
    )
    assert (
        sip.validate(request("INVITE", "sip:b@example.com", "Accept: application/sdp;q=0"), **UA)
        == 406
    )
    assert sip.validate(request("OPTIONS", "sip:b@example.com", "Accept: text/plain"), **UA) is None


def test_checks_run_in_rfc3261_order() -> None:
    # malformed beats method, method beats scheme, scheme beats Require, Require beats body
    m = request(
        "FROBNICATE",
        "im:x@example.com",
        "Require: foo",
        "Content-Type: a/b",
        "Expires: x",
        body=b"x",
    )
    assert sip.validate(m, **UA) == 400
    m = request("FROBNICATE", "im:x@example.com", "Require: foo", "Content-Type: a/b", body=b"x")
    assert sip.validate(m, **UA) == 501
    m = request("OPTIONS", "im:x@example.com", "Require: foo", "Content-Type: a/b", body=b"x")
    assert sip.validate(m, **UA) == 416
    m = request("OPTIONS", "sip:x@example.com", "Require: foo", "Content-Type: a/b", body=b"x")
    assert sip.validate(m, **UA) == 420
    m = request("OPTIONS", "sip:x@example.com", "Content-Type: a/b", body=b"x")
    assert sip.validate(m, **UA) == 415


def test_a_rejection_builds_its_response() -> None:
    m = request("INVITE", "sip:bob@biloxi.example.com", "Require: foo")
    assert isinstance(m, sip.Request)
    rejection = sip.check(m, **UA)
    assert rejection is not None
    response = rejection.response_to(m, to_tag="8321234356")
    assert (response.status, response.reason) == (420, "Bad Extension")
    assert response.unsupported == ["foo"]
    assert response.to.tag == "8321234356" and response.cseq == m.cseq


def test_a_malformed_response_is_marked_for_dropping() -> None:
    ok = sip.parse(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b.c>\r\n"
        b"From: <sip:a@b.c>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    assert sip.check(ok) is None
    bad = sip.parse(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b.c>\r\n"
        b"From: <sip:a@b.c>;tag=1\r\nCall-ID: x\r\nCSeq: x OPTIONS\r\n\r\n"
    )
    assert sip.validate(bad) == 400


def test_a_response_is_not_dropped_for_a_header_the_uac_does_not_act_on() -> None:
    head = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b.c>;tag=2\r\n"
        b"From: <sip:a@b.c>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
    )
    assert sip.check(sip.parse(head + b"Date: yesterday\r\nAccept: ?\r\n\r\n")) is None
    assert sip.validate(sip.parse(head + b"Contact: <sip:a@b.c\r\n\r\n")) == 400
    assert sip.validate(sip.parse(head + b"RSeq: 0\r\n\r\n")) == 400
