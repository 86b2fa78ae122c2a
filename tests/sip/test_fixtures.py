"""Real-world messages: as Asterisk, FreeSWITCH, Kamailio and a carrier send them, and
as SIPp and baresip sent them on loopback (captured by test_interop_peers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gosipd import sip
from gosipd.sip import URI

DATA = Path(__file__).resolve().parent.parent / "data" / "sip"
FIXTURES = sorted(DATA.glob("*.sip"))


def load(name: str) -> sip.Request | sip.Response:
    return sip.parse((DATA / name).read_bytes())


def test_there_are_product_and_captured_fixtures() -> None:
    names = {p.name.split("_")[0] for p in FIXTURES}
    assert {"asterisk", "freeswitch", "kamailio", "carrier", "sipp", "baresip"} <= names


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_parses_validates_and_round_trips(path: Path) -> None:
    data = path.read_bytes()
    message = sip.parse(data)
    assert sip.check(message, supported=("100rel", "timer", "replaces")) is None
    once = bytes(message)
    assert bytes(sip.parse(once)) == once
    # nothing but Content-Length spacing changes on the way through
    assert once.replace(b" ", b"") == data.replace(b" ", b"")
    if isinstance(message, sip.Request) and message.method != "ACK":
        reply = sip.Response.for_request(message, 486, to_tag="busy1")
        assert sip.check(sip.parse(bytes(reply))) is None


def test_asterisk_invite() -> None:
    m = load("asterisk_invite.sip")
    assert isinstance(m, sip.Request)
    assert m.headers.fields("Content-Length") == [str(len(m.body))]  # "Content-Length:   286"
    assert m.supported == ["100rel", "timer", "replaces", "norefersub", "histinfo"]
    assert "PRACK" in m.allow
    assert m.headers.get("Min-SE") == "90"
    (pai,) = [sip.NameAddr.parse(v) for v in m.headers.get_all("P-Asserted-Identity")]
    assert (pai.display_name, pai.uri.user) == ("Front Desk", "2001")
    assert m.via[0].has_rport and m.via[0].branch.startswith("z9hG4bKPj")  # type: ignore[union-attr]
    assert m.sdp is not None and b"m=audio 14612 RTP/AVP 0 8 101" in m.sdp


def test_asterisk_200_ok() -> None:
    m = load("asterisk_200_ok.sip")
    assert isinstance(m, sip.Response) and m.is_success
    assert m.to.tag == "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    assert m.require == ["timer"]
    assert m.contact[0].uri == URI.parse("sip:203.0.113.10:5060")
    assert (m.via[0].received, m.via[0].rport) == ("198.51.100.20", 5060)


def test_freeswitch_invite_with_headers_after_content_length() -> None:
    m = load("freeswitch_invite.sip")
    assert isinstance(m, sip.Request)
    assert m.headers.names()[-3:] == ["Content-Length", "X-FS-Support", "Remote-Party-ID"]
    assert m.headers.get_all("Allow-Events") == ["talk", "hold", "conference", "refer"]
    rpid = sip.NameAddr.parse(m.headers.get("Remote-Party-ID") or "")
    assert rpid.params["party"] == "calling" and rpid.uri.user == "1001"
    assert m.headers.get("Content-Disposition") == "session"
    assert m.max_forwards == 69


def test_freeswitch_200_ok() -> None:
    m = load("freeswitch_200_ok.sip")
    assert isinstance(m, sip.Response)
    assert m.via[0].branch == "z9hG4bK-d8754z-6a1b2c3d4e5f-1---d8754z-"
    assert m.contact[0].uri.transport == "udp"
    assert [r.mime for r in m.accept] == ["application/sdp"]


def test_kamailio_invite_with_record_route_and_credentials() -> None:
    m = load("kamailio_invite.sip")
    assert isinstance(m, sip.Request)
    assert [str(r.uri) for r in m.record_route] == [
        "sip:192.0.2.1;r2=on;lr=on;ftag=8d5b2e07;nat=yes",
        "sip:10.0.0.1;r2=on;lr=on;ftag=8d5b2e07;nat=yes",
    ]
    assert all(r.uri.lr for r in m.record_route)
    assert [v.host for v in m.via] == ["192.0.2.1", "10.0.0.5"]
    assert (m.via[1].received, m.via[1].rport) == ("198.51.100.77", 40521)
    (credentials,) = m.proxy_authorization
    assert (credentials.username, credentials.realm, credentials.qop, credentials.nc) == (
        "alice",
        "lab.test",
        "auth",
        "00000001",
    )
    assert m.contact[0].uri.params["alias"] == "198.51.100.77~40521~1"
    # the UAS's 200 copies the Record-Route in order (RFC 3261 §12.1.1)
    ok = sip.Response.for_request(m, 200, to_tag="3c4d5e6f")
    assert ok.record_route == m.record_route


def test_kamailio_200_ok_route_set_for_the_uac() -> None:
    m = load("kamailio_200_ok.sip")
    assert isinstance(m, sip.Response)
    assert len(m.headers.fields("Record-Route")) == 1 and len(m.record_route) == 2
    route_set = list(reversed(m.record_route))  # RFC 3261 §12.1.2
    assert [r.uri.host for r in route_set] == ["10.0.0.1", "192.0.2.1"]
    assert len(m.via) == 2


def test_kamailio_407_challenge() -> None:
    m = load("kamailio_407.sip")
    assert isinstance(m, sip.Response) and m.status == 407
    (challenge,) = m.proxy_authenticate
    assert (challenge.realm, challenge.nonce, challenge.qop) == (
        "lab.test",
        "Zk9aW2ZPWjoiNzE0YmQ5M2IxZGE0ZjE5",
        ("auth",),
    )


def test_carrier_inbound_invite() -> None:
    m = load("carrier_inbound_invite.sip")
    assert isinstance(m, sip.Request)
    assert (m.uri.user, m.uri.port) == ("+15551234567", 5060)
    assert m.from_.uri.params["user"] == "phone"
    assert m.from_.display_name == "WIRELESS CALLER"
    assert m.supported == ["100rel", "timer"]
    assert m.max_forwards == 68
    diversion = sip.NameAddr.parse(m.headers.get("Diversion") or "")
    assert diversion.params["reason"] == "unconditional"
    ringing = sip.Response.for_request(m, 180, to_tag="r1")
    assert ringing.record_route == m.record_route and ringing.via == m.via


def test_carrier_reliable_183_with_early_media() -> None:
    m = load("carrier_183_session_progress.sip")
    assert isinstance(m, sip.Response) and m.status == 183
    assert (m.require, m.rseq) == (["100rel"], 1)
    assert m.sdp is not None and b"m=audio 17846" in m.sdp
    prack_rack = sip.RAck(m.rseq or 0, m.cseq.number, m.cseq.method)
    assert str(prack_rack) == "1 1 INVITE"


def test_carrier_503_with_retry_after() -> None:
    m = load("carrier_503_retry_after.sip")
    assert isinstance(m, sip.Response)
    assert m.retry_after == sip.RetryAfter(30, "capacity exceeded", sip.Params({"duration": "600"}))
    assert m.headers.get("Reason") == 'Q.850;cause=34;text="No circuit/channel available"'


def test_carrier_sip_i_multipart_invite() -> None:
    m = load("carrier_sip_i_invite.sip")
    assert m.content_type is not None and m.content_type.mime == "multipart/mixed"
    assert m.sdp is not None and m.sdp.startswith(b"v=0\r\n")
    _sdp, isup = m.parts
    assert isup.content_type.mime == "application/isup"
    assert isup.content_type.param("version") == "itu-t92+"
    assert isup.body == bytes.fromhex("0100600a00020a0883901555123456070a03121555987654")


def test_captured_sipp_and_baresip_messages() -> None:
    invite = load("sipp_uac_1_invite.sip")
    assert isinstance(invite, sip.Request)
    assert invite.headers.get("User-Agent") == "SIPp interop"
    assert invite.from_.display_name == "SIPp caller"
    baresip = load("baresip_uac_1_invite.sip")
    assert isinstance(baresip, sip.Request)
    assert (baresip.headers.get("User-Agent") or "").startswith("baresip")
    assert baresip.supported == ["gruu"]
    assert baresip.contact[0].uri.user.startswith("alice-")  # type: ignore[union-attr]
    answered = load("baresip_uas_2_200.sip")
    assert isinstance(answered, sip.Response) and answered.sdp is not None
    assert answered.via[0].received == "127.0.0.1"
