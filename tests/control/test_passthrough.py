"""The header allow-lists: what a dial may set, what an app is shown, and the
configuration that names them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd._sipparse import Headers, NameAddr
from gosipd.config import ConfigError, config_from_dict
from gosipd.networks import Networks
from gosipd.passthrough import (
    DEFAULT_SEND,
    MAX_RECEIVED,
    HeaderError,
    HeaderNames,
    check_outbound,
    incoming,
)

SEND = HeaderNames.parse(DEFAULT_SEND)
TRUNK = Networks(["203.0.113.0/24"])


@pytest.mark.parametrize(
    "headers",
    [
        [("P-Asserted-Identity", '"Acme" <sip:+15551230000@trunk.example>, <tel:+15551230000>')],
        [("Privacy", "id"), ("Privacy", "header;id;critical")],
        [("Diversion", "<sip:+15559998888@trunk.example>;reason=unconditional;counter=1")],
        [("History-Info", "<sip:a@b>;index=1, <sip:c@d>;index=1.1")],
        [("x-anything", "at all"), ("X-Campaign", "spring")],
    ],
)
def test_what_trunks_read_may_be_sent(headers):
    check_outbound(headers, SEND)


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ([("Require", "100rel")], "Require is not in [headers] send"),
        ([("Session-Expires", "90")], "Session-Expires is not in [headers] send"),
        ([("P-Asserted-Identity", "+15551230000")], "is not a name-addr"),
        ([("P-Asserted-Identity", "<sip:a@b>, <sip:c@d>")], "one sip:/sips: and one tel:"),
        ([("Privacy", "id;secret")], "'secret' is not one of"),
        ([("Diversion", "")], "Diversion: '' is not a name-addr"),
    ],
)
def test_a_dial_is_told_which_header_may_not_pass(headers, named):
    with pytest.raises(HeaderError, match=named.replace("[", r"\[").replace("]", r"\]")):
        check_outbound(headers, SEND)


def test_engine_headers_never_pass_whatever_the_list_says():
    everything = HeaderNames.parse(["*"])
    assert everything.allows("X-Foo") and everything.allows("Subject")
    assert not everything.allows("Via") and not everything.allows("proxy-authorization")
    with pytest.raises(HeaderError, match="owned by the engine"):
        HeaderNames.parse(["Call-ID"])
    with pytest.raises(HeaderError, match="not a header name"):
        HeaderNames.parse(["X Foo"])


def test_the_configuration_names_the_bad_entry():
    config = config_from_dict({"headers": {"send": ["X-*"], "receive": ["Diversion"]}})
    assert config.headers.send.allows("x-ticket") and not config.headers.send.allows("Privacy")
    assert config.headers.receive.allows("diversion") and not config.headers.receive.allows("X-A")
    with pytest.raises(ConfigError, match=r"\[headers\] send: Via is owned by the engine"):
        config_from_dict({"headers": {"send": ["Via"]}})
    with pytest.raises(ConfigError, match=r"unknown key \[headers\] allow"):
        config_from_dict({"headers": {"allow": []}})
    with pytest.raises(ConfigError, match=r"\[headers\] receive must be"):
        config_from_dict({"headers": {"receive": "X-*"}})


def caller(*headers: tuple[str, str]) -> Headers:
    return Headers(headers)


FROM = NameAddr.parse('"Alice" <sip:alice@example.com>;tag=1')


def test_an_asserted_identity_is_believed_only_from_a_trusted_source():
    headers = caller(("P-Asserted-Identity", "<sip:+1555@trunk>, <tel:+1555>"), ("X-A", "1"))
    trusted = incoming(headers, FROM, "203.0.113.9", SEND, TRUNK)
    stranger = incoming(headers, FROM, "198.51.100.1", SEND, TRUNK)

    assert trusted.asserted_identity == "sip:+1555@trunk" and trusted.trusted_source
    assert stranger.asserted_identity is None and not stranger.trusted_source
    assert stranger.headers == trusted.headers  # as the caller sent them
    assert trusted.caller_name == "Alice"


@given(
    st.lists(st.tuples(st.sampled_from(["X-A", "Via", "Foo", "Privacy"]), st.text(max_size=2000)))
)
def test_what_an_app_is_shown_is_bounded_and_allowed(pairs):
    clean = [(n, v.replace("\r", "").replace("\n", "")) for n, v in pairs]
    report = incoming(caller(*clean), FROM, "::1", SEND, Networks())

    assert len(report.headers) <= MAX_RECEIVED
    assert all(name in ("X-A", "Privacy") and len(value) <= 1024 for name, value in report.headers)
    allowed = sum(1 for n, _ in clean if n in ("X-A", "Privacy"))
    assert len(report.headers) + report.dropped == allowed
