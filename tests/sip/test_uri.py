"""URIs: sip/sips/tel and opaque schemes, escapes, canonical text, RFC 3261 §19.1.4."""

from __future__ import annotations

import pickle

import pytest

from gosipd.sip import URI, Params, SIPParseError


def test_a_sip_uri_has_its_parts() -> None:
    uri = URI.parse("sip:alice:secretword@atlanta.com:5061;transport=TCP;lr?subject=project%20x")
    assert uri.scheme == "sip"
    assert (uri.user, uri.password) == ("alice", "secretword")
    assert (uri.host, uri.port) == ("atlanta.com", 5061)
    assert uri.params == Params([("transport", "TCP"), ("lr", None)])
    assert uri.transport == "tcp"
    assert uri.lr
    assert uri.headers["subject"] == "project x"
    assert uri.is_sip
    assert uri.host_port == "atlanta.com:5061"


def test_the_scheme_is_case_insensitive_and_lower_cased() -> None:
    assert URI.parse("SIPS:bob@biloxi.com").scheme == "sips"
    assert URI.parse("Tel:+1-555-0100").scheme == "tel"


def test_a_parsed_uri_is_written_back_as_received() -> None:
    text = "sip:%61lice@AtLanTa.CoM;Transport=TCP"
    assert str(URI.parse(text)) == text


def test_a_built_uri_is_written_canonically_with_escapes_only_where_needed() -> None:
    uri = URI(
        user="alice smith@home",
        password="p:w",
        host="example.com",
        port=5060,
        params={"transport": "tcp", "lr": None},
        headers={"Subject": "hi there"},
    )
    assert (
        str(uri)
        == "sip:alice%20smith%40home:p%3Aw@example.com:5060;transport=tcp;lr?Subject=hi%20there"
    )
    assert URI.parse(str(uri)) == uri
    assert URI.parse(str(uri)).user == "alice smith@home"


def test_unreserved_escapes_decode_to_the_same_uri() -> None:
    assert URI.parse("sip:%75se%72@example.com") == URI.parse("sip:user@example.com")
    assert URI.parse("sip:%75se%72@example.com").user == "user"


def test_user_part_characters_that_need_no_escape() -> None:
    uri = URI.parse("sip:+1-212-555-1212;npdi;rn=+12125550000@gw.example.com;user=phone")
    assert uri.user == "+1-212-555-1212;npdi;rn=+12125550000"
    assert uri.params["user"] == "phone"


def test_copies_with_changes() -> None:
    uri = URI.parse("sip:bob@biloxi.com;transport=udp")
    assert str(uri.replace(port=5080)) == "sip:bob@biloxi.com:5080;transport=udp"
    assert str(uri.with_params(transport="tcp", lr=True)) == "sip:bob@biloxi.com;transport=tcp;lr"
    assert str(uri.with_params(transport=None)) == "sip:bob@biloxi.com"
    assert str(uri.without_params("transport")) == "sip:bob@biloxi.com"
    assert str(uri.replace(user=None)) == "sip:biloxi.com;transport=udp"
    assert uri.with_params({"maddr": "239.255.255.1"}).maddr == "239.255.255.1"
    assert str(uri) == "sip:bob@biloxi.com;transport=udp"  # immutable


def test_tel_uris() -> None:
    uri = URI.parse("tel:+1-201-555-0123;ext=456")
    assert (uri.user, uri.params["ext"], uri.host, uri.port) == ("+1-201-555-0123", "456", "", None)
    # RFC 3966 §4: visual separators do not count
    assert uri == URI.parse("tel:+12015550123;ext=456")
    assert hash(uri) == hash(URI.parse("tel:+12015550123;ext=456"))
    assert uri != URI.parse("tel:+12015550123")
    assert str(URI(scheme="tel", user="+15551234", params={"phone-context": "example.com"})) == (
        "tel:+15551234;phone-context=example.com"
    )


def test_other_schemes_are_kept_opaque() -> None:
    uri = URI.parse("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert (uri.scheme, uri.opaque, uri.user, uri.host) == (
        "urn",
        "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        None,
        "",
    )
    assert str(URI(scheme="mailto", opaque="bob@example.com")) == "mailto:bob@example.com"


# RFC 3261 §19.1.4, the examples of the section itself
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice:one@atlanta.com", "sip:alice:two@atlanta.com"),
    ("sip:alice@atlanta.com;maddr=239.255.255.1", "sip:alice@atlanta.com"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_rfc3261_equivalent_uris_compare_equal_with_equal_hashes(a: str, b: str) -> None:
    assert URI.parse(a) == URI.parse(b)
    assert URI.parse(b) == URI.parse(a)
    assert hash(URI.parse(a)) == hash(URI.parse(b))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_rfc3261_non_equivalent_uris_differ(a: str, b: str) -> None:
    assert URI.parse(a) != URI.parse(b)
    assert URI.parse(b) != URI.parse(a)


def test_uris_work_as_dict_keys_and_pickle() -> None:
    routes = {URI.parse("sip:p1.example.com;lr"): 1}
    assert routes[URI.parse("SIP:P1.EXAMPLE.COM;LR")] == 1
    uri = URI.parse("sip:a@b.example.com;transport=tcp")
    assert pickle.loads(pickle.dumps(uri)) == uri


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty URI"),
        ("<sip:a@b>", "enclosed in '<' '>'"),
        ("sip:", "no host"),
        ("sip:@example.com", "no user"),
        ("sip:a b@example.com", "a space"),
        ("sip:alice@exa_mple.com", "'_'"),
        ("sip:alice@example.com:99999", "out of range"),
        ("sip:alice@example.com:", "port"),
        ("sip:alice@example.com;;lr", "empty URI parameter"),
        ("sip:alice@example.com;x=", "no value"),
        ("sip:alice@example.com?x", "name=value"),
        ("sip:al%4xce@example.com", "two hex digits"),
        ("sip:alice@256.1.1.1", "not a valid IPv4 address"),
        ("sip:alice@example.-com", "not a valid host name"),
        ("sip:alice@example.1com", "not a valid host name"),
        ("example.com", "no ':' after the scheme"),
        ("9sip:alice@example.com", "does not start with a URI scheme"),
        ("tel:", "no number"),
        ("tel:12+34", "'+' may only start"),
        ("http:", "nothing after the scheme"),
        ("http://a b", "a space"),
    ],
)
def test_malformed_uris_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(SIPParseError) as info:
        URI.parse(text)
    assert reason in info.value.reason


def test_building_an_invalid_uri_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="needs a host"):
        URI(user="alice")
    with pytest.raises(ValueError, match="holds a space"):
        URI(host="bad host")
    with pytest.raises(ValueError, match="port"):
        URI(host="example.com", port=70000)
    with pytest.raises(ValueError, match="opaque"):
        URI(scheme="urn")
