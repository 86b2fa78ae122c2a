"""Digest responses (RFC 2617, RFC 7616 test vectors) and the per-call DigestSession rules:
one answer per challenge, realm selection, nonce counts, stale nonces."""

from __future__ import annotations

import hashlib

import pytest

from gosipd.sip import Challenge
from gosipd.sip import Credentials as CredentialsHeader
from gosipd.sip.digest import (
    Credentials,
    DigestChallenge,
    DigestError,
    DigestSession,
    digest_response,
)

# RFC 7616 §3.9.1
MUFASA = Credentials("Mufasa", "Circle of Life")
RFC7616 = {
    "realm": '"http-auth@example.org"',
    "qop": '"auth, auth-int"',
    "nonce": '"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"',
    "opaque": '"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
}
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def params_of(header_value: str) -> CredentialsHeader:
    return CredentialsHeader.parse(header_value)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    challenge = DigestChallenge.from_params("Digest", {**RFC7616, "algorithm": algorithm})
    value = digest_response(
        challenge, MUFASA, method="GET", uri="/dir/index.html", cnonce=RFC7616_CNONCE
    )
    credentials = params_of(value)
    assert credentials.response == expected
    assert credentials.qop == "auth" and credentials.nc == "00000001"
    assert credentials.algorithm == algorithm
    assert credentials.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert credentials.username == "Mufasa" and credentials.uri == "/dir/index.html"


def test_rfc2617_section_3_5_example() -> None:
    challenge = DigestChallenge.from_params(
        "Digest",
        {
            "realm": '"testrealm@host.com"',
            "qop": '"auth,auth-int"',
            "nonce": '"dcd98b7102dd2f0e8b11d0f600bfb0c093"',
            "opaque": '"5ccc069c403ebaf9f0171e9517f40e41"',
        },
    )
    value = digest_response(
        challenge,
        Credentials("Mufasa", "Circle Of Life"),
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert params_of(value).response == "6629fae49393a05397450978507c4ef1"


def test_without_qop_the_response_is_rfc2069s_and_carries_no_nc_or_cnonce() -> None:
    challenge = DigestChallenge.from_params("Digest", {"realm": '"sip.example"', "nonce": "abc"})
    value = digest_response(
        challenge, Credentials("alice", "pw"), method="INVITE", uri="sip:bob@sip.example"
    )
    ha1 = hashlib.md5(b"alice:sip.example:pw").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:bob@sip.example").hexdigest()
    credentials = params_of(value)
    assert credentials.response == hashlib.md5(f"{ha1}:abc:{ha2}".encode()).hexdigest()
    assert credentials.qop is None and credentials.nc is None and credentials.cnonce is None


def test_sip_quotes_what_rfc3261_section_25_1_quotes() -> None:
    challenge = DigestChallenge.from_params(
        "Digest", {"realm": '"r"', "nonce": '"n"', "qop": '"auth"'}
    )
    value = digest_response(challenge, Credentials("u", "p"), method="BYE", uri="sip:x@y")
    assert 'username="u"' in value and 'uri="sip:x@y"' in value
    assert "qop=auth" in value and "nc=00000001" in value and "algorithm=MD5" in value


def test_unanswerable_challenges_name_what_is_wrong() -> None:
    with pytest.raises(DigestError, match="'Basic'"):
        DigestChallenge.from_params("Basic", {"realm": '"r"'})
    with pytest.raises(DigestError, match="'nonce'"):
        DigestChallenge.from_params("Digest", {"realm": '"r"'})
    with pytest.raises(DigestError, match="'SHA-1'"):
        DigestChallenge.from_params("Digest", {"realm": '"r"', "nonce": "n", "algorithm": "SHA-1"})


def _challenge(realm: str = "lab.test", nonce: str = "n1", **kw: object) -> DigestChallenge:
    header = Challenge.digest(realm, nonce, **kw)  # type: ignore[arg-type]
    return DigestChallenge.from_params(header.scheme, header.params)


def test_the_strongest_algorithm_offered_is_answered() -> None:
    session = DigestSession(Credentials("u", "p"), cnonce_source=lambda: "c")
    headers = session.answer(
        [_challenge(algorithm="MD5"), _challenge(algorithm="SHA-256")],
        method="INVITE",
        uri="sip:b@h",
    )
    assert headers is not None
    [(name, value)] = headers
    assert name == "Authorization" and params_of(value).algorithm == "SHA-256"


def test_a_second_challenge_to_credentials_already_sent_gives_up() -> None:
    session = DigestSession(Credentials("u", "p"), cnonce_source=lambda: "c")
    first = session.answer([_challenge(nonce="n1")], method="INVITE", uri="sip:b@h")
    assert first is not None
    # the retried INVITE carried credentials for lab.test and is challenged again
    sent = [("lab.test", False, "n1")]
    assert (
        session.answer([_challenge(nonce="n2")], method="INVITE", uri="sip:b@h", sent=sent) is None
    )


def test_a_stale_nonce_is_answered_once_more() -> None:
    session = DigestSession(Credentials("u", "p"), cnonce_source=lambda: "c")
    session.answer([_challenge(nonce="n1")], method="INVITE", uri="sip:b@h")
    sent = [("lab.test", False, "n1")]
    again = session.answer(
        [_challenge(nonce="n2", stale=True)], method="INVITE", uri="sip:b@h", sent=sent
    )
    assert again is not None and params_of(again[0][1]).nonce == "n2"
    # "stale" about the nonce we just used is a loop, not a stale nonce
    sent = [("lab.test", False, "n2")]
    assert (
        session.answer(
            [_challenge(nonce="n2", stale=True)], method="INVITE", uri="sip:b@h", sent=sent
        )
        is None
    )


def test_a_later_request_challenged_afresh_is_answered() -> None:
    session = DigestSession(Credentials("u", "p"), cnonce_source=lambda: "c")
    session.answer([_challenge(nonce="n1")], method="INVITE", uri="sip:b@h")
    # a BYE sent without credentials for this proxy realm gets a 407 of its own
    headers = session.answer(
        [DigestChallenge.from_params("Digest", {"realm": '"proxy"', "nonce": "p1"}, proxy=True)],
        method="BYE",
        uri="sip:b@h",
    )
    assert headers is not None
    assert sorted(name for name, _ in headers) == ["Authorization", "Proxy-Authorization"]


def test_answered_challenges_are_replayed_with_the_nonce_count_advanced() -> None:
    session = DigestSession(Credentials("u", "p"), cnonce_source=lambda: "cn")
    session.answer([_challenge(qop=("auth",))], method="INVITE", uri="sip:b@h")
    [(_, value)] = session.headers_for(method="BYE", uri="sip:b@h")
    credentials = params_of(value)
    assert credentials.nc == "00000002" and credentials.cnonce == "cn"


def test_a_challenge_for_another_realm_is_not_answered() -> None:
    session = DigestSession(Credentials("u", "p", realm="lab.test"))
    assert session.answer([_challenge(realm="elsewhere")], method="INVITE", uri="sip:b@h") is None


def test_credentials_never_show_the_password() -> None:
    assert "secret" not in repr(Credentials("u", "secret"))
