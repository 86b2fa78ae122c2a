"""The worker's pure parts, without peers: app names, the call spec, dial targets and
caller identity through a trunk, DTMF in SIP INFO, and the TOML trunk section."""

from __future__ import annotations

from pathlib import Path

import pytest

from gosipd.apps import echo, play, tone
from gosipd.call import CallError, CallSpec, dtmf_from_info, resolve_app
from gosipd.config import ConfigError, TrunkConfig, load_config
from gosipd.trunk import DialError, caller_identity, dial_target, normalise_number

FLOWROUTE = TrunkConfig(
    domain="us-west-or.sip.flowroute.com",
    username="12345678",
    password="secret",
    from_uri="sip:+15551230000@us-west-or.sip.flowroute.com",
    caller_id="Acme Support",
    prefix="12345678*",
)


# --------------------------------------------------------------------------- apps


async def an_app(call: object) -> None:
    pass


async def another_app(call: object) -> None:
    pass


def not_async(call: object) -> None:
    pass


run = an_app  # so that "tests.worker.test_call_units" alone names an app


class AsyncCallable:
    async def __call__(self, call: object) -> None:
        pass


instance_app = AsyncCallable()


@pytest.mark.parametrize(
    ("name", "app", "arg"),
    [
        (None, echo.run, None),
        ("echo", echo.run, None),
        ("play:prompts/welcome.wav", play.run, "prompts/welcome.wav"),
        ("tone:440+480", tone.run, "440+480"),
        ("tests.worker.test_call_units:another_app", another_app, None),
        ("tests.worker.test_call_units:another_app:x:y", another_app, "x:y"),
        ("tests.worker.test_call_units", an_app, None),
        ("tests.worker.test_call_units:instance_app", instance_app, None),
    ],
)
def test_an_app_name_resolves_to_its_function_and_argument(name, app, arg):
    assert resolve_app(name) == (app, arg)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nosuchapp", "no built-in 'nosuchapp' (built-ins: bridge, demo, echo, ivr, play, record"),
        ("no.such.module:run", "no module to import"),
        ("tests.worker.test_call_units:missing", "has no 'missing'"),
        ("tests.worker.test_call_units:not_async", "is not an async function"),
        ("tests.worker.test_call_units:FLOWROUTE", "is not an async function"),
    ],
)
def test_an_app_name_that_names_nothing_usable_is_refused_saying_why(name, reason):
    with pytest.raises(CallError) as refused:
        resolve_app(name)
    assert reason in str(refused.value)


# --------------------------------------------------------------------------- the spec


def test_a_spec_from_the_supervisor_decodes_the_inbound_invite_and_its_source():
    spec = CallSpec.from_dict(
        {
            "call": "abc",
            "direction": "inbound",
            "app": "ivr",
            "to": "sip:support@192.0.2.1",
            "datagram": b"INVITE sip:support@192.0.2.1 SIP/2.0\r\n".hex(),
            "source": ["192.0.2.9", 5062],
            "local_host": "192.0.2.1",
            "headers": [["X-Ticket", "42"]],
            "ring_timeout": 20,
        }
    )
    assert spec.datagram == b"INVITE sip:support@192.0.2.1 SIP/2.0\r\n"
    assert spec.source == ("192.0.2.9", 5062)
    assert spec.headers == [("X-Ticket", "42")]
    assert (spec.direction, spec.app, spec.ring_timeout) == ("inbound", "ivr", 20)


def test_a_dial_spec_has_outbound_defaults():
    spec = CallSpec.from_dict({"call": "x", "to": "+15551234567"})
    assert (spec.direction, spec.app, spec.from_, spec.datagram) == ("outbound", None, None, None)


# --------------------------------------------------------------------------- dialling


def test_a_full_sip_uri_is_dialled_as_it_is_without_a_trunk():
    target = dial_target("sip:echo@127.0.0.1:5070", TrunkConfig())
    assert str(target.request_uri) == "sip:echo@127.0.0.1:5070"
    assert (target.host, target.port, target.via_proxy, target.secure) == (
        "127.0.0.1",
        5070,
        False,
        False,
    )


def test_a_sips_uri_is_located_for_tls():
    assert dial_target("sips:+15551234567@sip.example.net", TrunkConfig()).secure


@pytest.mark.parametrize("dialled", ["+15557654321", "tel:+1-555-765-4321", "tel:+1(555)765.4321"])
def test_a_number_goes_to_the_trunk_domain_with_the_tech_prefix(dialled):
    target = dial_target(dialled, FLOWROUTE)
    assert str(target.request_uri) == "sip:12345678*+15557654321@us-west-or.sip.flowroute.com"
    assert (target.host, target.port, target.via_proxy) == (FLOWROUTE.domain, None, False)


def test_with_a_trunk_proxy_everything_is_sent_through_it():
    trunk = TrunkConfig(domain="carrier.example", proxy="192.0.2.5:5080")
    number = dial_target("5551234", trunk)
    assert str(number.request_uri) == "sip:5551234@carrier.example"
    assert (number.host, number.port, number.via_proxy) == ("192.0.2.5", 5080, True)
    uri = dial_target("sip:alice@elsewhere.example", trunk)
    assert str(uri.request_uri) == "sip:alice@elsewhere.example"
    assert (uri.host, uri.via_proxy) == ("192.0.2.5", True)


def test_a_proxy_only_trunk_puts_its_host_in_the_request_uri():
    target = dial_target("+15551234567", TrunkConfig(proxy="sbc.example:5060"))
    assert str(target.request_uri) == "sip:+15551234567@sbc.example"


@pytest.mark.parametrize(
    ("dialled", "trunk", "reason"),
    [
        ("+15551234567", TrunkConfig(), "no trunk is configured"),
        ("call mom", FLOWROUTE, "neither a SIP URI nor a phone number"),
        ("+1555abc", FLOWROUTE, "neither a SIP URI nor a phone number"),
        ("sip:", TrunkConfig(), "is not a SIP URI"),
    ],
)
def test_a_target_we_cannot_dial_is_refused_saying_why(dialled, trunk, reason):
    with pytest.raises(DialError, match=reason):
        dial_target(dialled, trunk)


def test_numbers_lose_their_visual_separators_and_parameters():
    assert normalise_number("tel:+1-555-123-4567;phone-context=example.com") == "+15551234567"
    assert normalise_number(" 555 1234 ") == "5551234"


@pytest.mark.parametrize(
    ("from_", "trunk", "expected"),
    [
        (None, TrunkConfig(), "<sip:gosipd@192.0.2.7>"),
        (None, FLOWROUTE, '"Acme Support" <sip:+15551230000@us-west-or.sip.flowroute.com>'),
        ("+15559990000", FLOWROUTE,
         '"Acme Support" <sip:+15559990000@us-west-or.sip.flowroute.com>'),
        ('"Night Desk" <sip:+15559990000@x.example>', FLOWROUTE,
         '"Night Desk" <sip:+15559990000@x.example>'),
        ("sip:bot@x.example", TrunkConfig(), "<sip:bot@x.example>"),
        ("5551234", TrunkConfig(), "<sip:5551234@192.0.2.7>"),
    ],
)  # fmt: skip
def test_the_caller_identity_comes_from_the_call_then_the_trunk(from_, trunk, expected):
    assert str(caller_identity(from_, trunk, "192.0.2.7")) == expected


def test_an_ipv6_local_address_is_bracketed_in_the_default_identity():
    assert str(caller_identity(None, TrunkConfig(), "2001:db8::7")) == "<sip:gosipd@[2001:db8::7]>"


def test_a_from_that_is_no_identity_is_refused():
    with pytest.raises(DialError, match="neither a SIP URI nor a phone number"):
        caller_identity("the front desk", TrunkConfig(), "192.0.2.7")


# --------------------------------------------------------------------------- SIP INFO DTMF


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("Application/DTMF-Relay; charset=utf-8", b"signal= #\nduration=100", "#"),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=160", "#"),
        ("application/dtmf-relay", b"Signal=a", "A"),
        ("application/dtmf", b"*", "*"),
        ("application/dtmf", b" 7\r\n", "7"),
        ("application/dtmf-relay", b"Duration=160", None),
        ("application/dtmf-relay", b"Signal=X", None),
        ("application/dtmf-relay", b"Signal=99", None),
        ("application/media_control+xml", b"<media_control/>", None),
        (None, b"Signal=5", None),
    ],
)
def test_the_digit_in_a_sip_info_is_read_from_either_dtmf_body(content_type, body, digit):
    assert dtmf_from_info(content_type, body) == digit


# --------------------------------------------------------------------------- trunk TOML


def test_a_flowroute_style_trunk_section_configures_the_trunk(tmp_path: Path):
    path = tmp_path / "gosipd.toml"
    path.write_text(
        """
[trunk]
domain = "us-west-or.sip.flowroute.com"
username = "12345678"
password = "secret"
from = "sip:+15551230000@us-west-or.sip.flowroute.com"
caller_id = "Acme Support"
prefix = "12345678*"
"""
    )
    config = load_config(path)
    assert config.trunk == FLOWROUTE
    assert "secret" not in repr(config.trunk)
    target = dial_target("+15557654321", config.trunk)
    assert str(target.request_uri) == "sip:12345678*+15557654321@us-west-or.sip.flowroute.com"


def test_an_unknown_trunk_key_is_refused_by_name(tmp_path: Path):
    path = tmp_path / "gosipd.toml"
    path.write_text('[trunk]\ndomian = "typo.example"\n')
    with pytest.raises(ConfigError, match=r"unknown key \[trunk\] domian"):
        load_config(path)


@pytest.mark.parametrize(
    ("trunk", "error"),
    [
        (
            'redirects = "everywhere"',
            r"redirects must be one of trunk, any, none, not 'everywhere'",
        ),
        ("max_redirects = 11", r"max_redirects must be 0 to 10"),
        (
            'username = "u"\npassword = "p"',
            r"username and password need \[trunk\] domain or proxy",
        ),
        ('domain = "t.example"\nregister = true', r"register needs username"),
        ("register = true", r"register needs domain, proxy or registrar"),
        (
            'domain = "t.example"\nusername = "u"\nregister = true',
            r"register needs \[inbound\] listen",
        ),
        ('domain = "t.example"\nregister_expires = 30', r"register_expires must be 60 to 86400"),
        ('registrar = "host:notaport"', r"\[trunk\] registrar"),
    ],
    ids=[
        "unknown_policy",
        "too_many_redirects",
        "credentials_without_a_trunk",
        "register_without_user",
        "register_without_registrar",
        "register_without_listener",
        "register_expires_too_brief",
        "bad_registrar",
    ],
)
def test_trunk_redirect_and_credential_settings_are_checked(tmp_path: Path, trunk, error):
    path = tmp_path / "gosipd.toml"
    path.write_text(f"[trunk]\n{trunk}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_redirects_follow_only_the_trunk_by_default(tmp_path: Path):
    path = tmp_path / "gosipd.toml"
    path.write_text('[trunk]\ndomain = "sip.example"\n')
    assert load_config(path).trunk.redirects == "trunk"
    path.write_text('[trunk]\ndomain = "sip.example"\nredirects = "none"\nmax_redirects = 0\n')
    trunk = load_config(path).trunk
    assert (trunk.redirects, trunk.max_redirects) == ("none", 0)


def test_the_media_threads_realtime_priority_is_configurable_and_checked(tmp_path: Path):
    path = tmp_path / "gosipd.toml"
    path.write_text("[rtp]\nrealtime_priority = 0\n")
    assert load_config(path).rtp_realtime_priority == 0
    path.write_text("[rtp]\nrealtime_priority = 120\n")
    with pytest.raises(ConfigError, match=r"realtime_priority must be 0 \(off\) to 99"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[rtp]\nsrtp = "yes"', r"\[rtp\] srtp must be one of off, offer, required, not 'yes'"),
        ("[rtp]\nsrtp = true", r"\[rtp\] srtp must be a string"),
        (
            '[rtp]\nsrtp_suites = ["AES_CM_128_HMAC_SHA1_80", "NULL"]',
            r"srtp_suites: 'NULL' is not one",
        ),
        ("[rtp]\nsrtp_suites = []", "at least one suite"),
        ('[sip]\ntransports = ["udp", "sctp"]', r"\[sip\] transports must list some of"),
        ("[sip]\ntransports = []", r"\[sip\] transports must list some of"),
        ('[trunk]\ndomain = "x.test"\ntransport = "ws"', r"\[trunk\] transport must be one of"),
        ('[tls]\nca_file = "/nonexistent/ca.pem"', r"\[tls\] ca_file: no such file"),
        ("[tls]\nverify = 1", r"\[tls\] verify must be true or false"),
        ('[tls]\nkey_file = "{here}"', "cert_file and key_file go together"),
        ('[inbound]\nlisten_tcp = "127.0.0.1:5060"', r"listen_tcp needs \[inbound\] listen"),
        (
            '[inbound]\nlisten = "127.0.0.1:5060"\nlisten_tls = "127.0.0.1:5061"',
            r"listen_tls needs \[tls\] cert_file and key_file",
        ),
        ('[inbound]\nlisten_tcp = "127.0.0.1:x"', r"\[inbound\] listen_tcp"),
        ("[inbound]\nmax_connections_per_source = 0", "must be positive"),
    ],
)
def test_srtp_transport_and_tls_settings_are_checked(tmp_path: Path, text: str, error: str):
    path = tmp_path / "gosipd.toml"
    path.write_text(text.replace("{here}", str(path)) + "\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_transports_default_to_udp_and_tls_verifies_by_default(tmp_path: Path):
    config = load_config(None)
    assert config.transports == ("udp",) and config.tls_verify
    path = tmp_path / "gosipd.toml"
    path.write_text(
        '[sip]\ntransports = ["TLS", "tcp"]\n[trunk]\ndomain = "x.test"\ntransport = "TLS"\n'
    )
    config = load_config(path)
    assert config.transports == ("tls", "tcp") and config.trunk.transport == "tls"


def test_srtp_is_off_by_default_and_configurable(tmp_path: Path):
    assert load_config(None).rtp_srtp == "off"
    path = tmp_path / "gosipd.toml"
    path.write_text('[rtp]\nsrtp = "required"\nsrtp_suites = ["AEAD_AES_128_GCM"]\n')
    config = load_config(path)
    assert config.rtp_srtp == "required" and config.rtp_srtp_suites == ("AEAD_AES_128_GCM",)


def test_apps_can_name_the_call_type_from_the_package():
    import gosipd
    from gosipd.call import Call

    assert gosipd.Call is Call
    with pytest.raises(AttributeError):
        _ = gosipd.NoSuchThing  # type: ignore[attr-defined]


def test_the_zygote_s_preload_leaves_numpy_for_the_calls_that_play_files():
    """numpy is 12 MB of mappings every fork copies page tables for and every exit tears
    down; only a call that decodes or records a file imports it."""
    import subprocess
    import sys

    script = (
        "import sys, gosipd.call, gosipd.worker, gosipd.spare; gosipd.spare.preload(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
