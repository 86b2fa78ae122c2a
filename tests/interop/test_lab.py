"""Each peer fixture against the real binary: the lab itself must be trustworthy.

These tests drive the peers against each other (SIPp against SIPp, baresip and Kamailio,
dnspython against dnsmasq, plain sockets against the black hole), so that a failing
gosipd test can be blamed on gosipd and not on its lab.
"""

from __future__ import annotations

import errno
import socket

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import trio

from tests import peers
from tests.peers import LAB_ZONE, MEDIA_DIR

pytestmark = pytest.mark.interop


# --------------------------------------------------------------------------- SIPp


async def test_sipp_echo_uas_answers_a_pcmu_call_and_echoes_its_rtp(sipp_uas, sipp_uac):
    echo = sipp_uas("echo")
    result = await sipp_uac(
        "uac_pcmu", f"{echo.host}:{echo.port}", call_ms=2000, pcap=MEDIA_DIR / "pcmu_tone1k_5s.pcap"
    ).wait()
    assert result.exit_status == 0, result.errors
    assert (result.successful, result.failed) == (1, 0)
    assert echo.received("INVITE") == 1
    assert echo.received("BYE") == 1
    assert echo.sent("200") == 2  # the INVITE's and the BYE's
    assert "m=audio" in echo.message_log()
    final = echo.stop()
    assert final.successful == 0 and final.current == 1  # still in its 4 s timewait
    assert final.echoed_rtp_packets >= 80  # ~100 packets of 20 ms in 2 s, all echoed


async def test_sipp_echo_uas_answers_options_and_counts_it_as_a_call(sipp_uas):
    echo = sipp_uas("echo")
    reply = peers.sip_options(echo.host, echo.port)
    assert reply.startswith("SIP/2.0 200 OK")
    # SIPp writes its message trace as it goes and its statistics every second: poll both
    with trio.move_on_after(5):
        while (echo.received("OPTIONS"), echo.sent("200")) != (1, 1) or echo.stats().created != 1:
            await trio.sleep(0.1)
    assert (echo.received("OPTIONS"), echo.sent("200")) == (1, 1)
    assert echo.stats().created == 1
    options_steps = [m for m in echo.stats().messages if m.name == "OPTIONS"]
    assert [(m.sent, m.count) for m in options_steps] == [(False, 1)]


async def test_sipp_100rel_uas_wants_prack_and_refuses_plain_invites_with_421(sipp_uas, sipp_uac):
    uas = sipp_uas("100rel")
    target = f"{uas.host}:{uas.port}"
    with_prack = await sipp_uac("uac_100rel", target, call_ms=500).wait()
    assert with_prack.ok, with_prack.errors
    plain = await sipp_uac("uac_pcmu", target, call_ms=500, timeout=8).wait()
    assert plain.exit_status == 1
    assert "SIP/2.0 421 Extension Required" in plain.messages


async def test_sipp_302_uas_redirects_to_the_echo_uas(sipp_uas, sipp_uac):
    echo = sipp_uas("echo")
    redirect = sipp_uas("302", redirect_to=echo.uri())
    result = await sipp_uac("uac_302", f"{redirect.host}:{redirect.port}", call_ms=500).wait()
    assert result.ok, result.errors
    assert echo.received("INVITE") == 1


async def test_sipp_503_uas_sends_retry_after_to_invite_and_options(sipp_uas, sipp_uac):
    busy = sipp_uas("503", retry_after=17)
    result = await sipp_uac("uac_503", f"{busy.host}:{busy.port}").wait()
    assert result.ok, result.errors
    assert "Retry-After: 17" in result.messages
    reply = peers.sip_options(busy.host, busy.port)
    assert reply.startswith("SIP/2.0 503 Service Unavailable")
    assert "Retry-After: 17" in reply


@pytest.mark.parametrize("variant", ["auth401", "auth407"])
async def test_sipp_auth_uas_accepts_the_right_digest_and_forbids_a_wrong_one(
    sipp_uas, sipp_uac, variant
):
    uas = sipp_uas(variant, user="alice", password="s3cret")
    target = f"{uas.host}:{uas.port}"
    good, bad = await _gather(
        sipp_uac("uac_auth", target, user="alice", password="s3cret", call_ms=500).wait(),
        sipp_uac("uac_auth", target, user="mallory", password="nope", timeout=8).wait(),
    )
    assert good.ok, good.errors
    assert bad.exit_status == 1
    assert "SIP/2.0 403 Forbidden" in bad.messages


# --------------------------------------------------------------------------- baresip


async def test_baresip_uas_answers_with_its_tone_and_records_what_it_hears(
    baresip_uas, baresip_call
):
    bob = baresip_uas("uas", tone_hz=440, record=True)
    result = await baresip_call(bob.uri, seconds=2, tone_hz=700).wait()
    assert result.established, "\n".join(result.status_lines)
    heard = _tone(result.recording_path)
    assert heard(440) > 0.5 > heard(700)
    await bob.wait_event("CALL_CLOSED")
    bob_heard = _tone(bob.recording_path)
    assert bob_heard(700) > 0.5 > bob_heard(440)


async def test_baresip_echo_loops_the_callers_audio_back(baresip_uas, baresip_call):
    echo = baresip_uas("echo")
    result = await baresip_call(echo.uri, seconds=2, tone_hz=1000).wait()
    assert result.established, "\n".join(result.status_lines)
    heard = _tone(result.recording_path)
    assert heard(1000) > 0.5 > heard(440)


async def test_baresip_call_hears_the_sipp_echo_of_its_own_tone(sipp_uas, baresip_call):
    echo = sipp_uas("echo")
    result = await baresip_call(echo.uri(), seconds=2, tone_hz=700).wait()
    assert result.established, "\n".join(result.status_lines)
    assert _tone(result.recording_path)(700) > 0.5


async def test_baresip_rejects_an_unknown_user_with_404(baresip_uas, baresip_call):
    bob = baresip_uas("uas")
    result = await baresip_call(bob.uri_for("nobody"), seconds=2).wait()
    assert not result.established
    assert any("404 Not Found" in line for line in result.status_lines), result.log[-2000:]


async def test_baresip_ring_is_cancelled_with_487(baresip_uas, sipp_uac):
    ring = baresip_uas("ring")
    host, port = ring.address
    result = await sipp_uac("uac_cancel", f"{host}:{port}", service="ring", call_ms=500).wait()
    assert result.ok, result.errors
    assert "SIP/2.0 487" in result.messages


async def test_baresip_ring_answers_when_told_over_ctrl_tcp(baresip_uas, sipp_uac):
    ring = baresip_uas("ring")
    host, port = ring.address
    uac = sipp_uac("uac_pcmu", f"{host}:{port}", service="ring", call_ms=500, timeout=15)
    await ring.wait_event("CALL_INCOMING")
    response = await ring.ctrl("accept")
    assert response["ok"], response
    result = await uac.wait()
    assert result.ok, result.errors
    await ring.wait_event("CALL_ESTABLISHED")


async def test_baresip_dials_out_over_ctrl_tcp(baresip_uas, sipp_uas):
    echo = sipp_uas("echo")
    bob = baresip_uas("uas")
    response = await bob.ctrl("dial", echo.uri())
    assert response["ok"], response
    await bob.wait_event("CALL_ESTABLISHED")
    await bob.ctrl("hangup")
    await bob.wait_event("CALL_CLOSED")


# --------------------------------------------------------------------------- Kamailio


async def test_kamailio_registrar_registers_with_digest_and_proxies_with_407(
    kamailio, sipp_uas, sipp_uac
):
    registrar = kamailio("registrar")
    echo = sipp_uas("echo")
    target = f"{registrar.host}:{registrar.port}"
    assert peers.sip_options(*registrar.address, user="").startswith("SIP/2.0 200 Keepalive")

    wrong = await sipp_uac("uac_register", target, password="nope", timeout=5).wait()
    assert wrong.exit_status != 0
    registered = await sipp_uac(
        "uac_register", target, contact=f"{echo.host}:{echo.port}", timeout=5
    ).wait()
    assert registered.ok, registered.errors
    assert f"sip:labuser@{echo.host}:{echo.port}" in registrar.rpc("ul.dump")

    call = await sipp_uac("uac_auth", target, service="labuser", call_ms=500).wait()
    assert call.ok, call.errors
    assert "SIP/2.0 407 Proxy Authentication Required" in call.messages
    assert echo.received("INVITE") == 1
    unknown = await sipp_uac("uac_auth", target, service="nobody", timeout=5).wait()
    assert "SIP/2.0 404 Not Found" in unknown.messages


async def test_kamailio_dispatcher_probes_with_options_and_avoids_a_503_backend(
    kamailio, sipp_uas, sipp_uac
):
    good, busy = sipp_uas("echo"), sipp_uas("503")
    dispatcher = kamailio("dispatcher", backends=[good.address, busy.address], ping_interval=1)
    with trio.fail_after(8):
        while "FLAGS: IP" not in (listing := dispatcher.rpc("dispatcher.list")):
            await trio.sleep(0.2)
    assert listing.count("FLAGS: AP") == 1
    result = await sipp_uac(
        "uac_pcmu", f"{dispatcher.host}:{dispatcher.port}", calls=3, rate=10, call_ms=300
    ).wait()
    assert result.ok, result.errors
    assert good.received("INVITE") == 3
    assert busy.received("INVITE") == 0


async def test_baresip_registers_with_kamailio_and_is_reached_through_it(
    kamailio, baresip_uas, sipp_uac
):
    registrar = kamailio("registrar")
    registrar_hostport = f"{registrar.host}:{registrar.port}"
    bob = baresip_uas("uas", users=["bob"], registrar=registrar_hostport, password="bobpass")
    with trio.fail_after(5):
        while "AoR: bob" not in registrar.rpc("ul.dump"):
            await trio.sleep(0.1)
    call = await sipp_uac("uac_auth", registrar_hostport, service="bob", call_ms=500).wait()
    assert call.ok, call.errors
    await bob.wait_event("CALL_ESTABLISHED")


async def test_baresip_finds_a_sipp_uas_through_naptr_and_srv_in_dnsmasq(
    dnsmasq, sipp_uas, baresip_call
):
    echo = sipp_uas("echo")
    server = dnsmasq(
        [
            peers.NAPTR("lab.test", 10, 10, "S", "SIP+D2U", "_sip._udp.lab.test"),
            peers.SRV("_sip._udp.lab.test", "sip.lab.test", echo.port),
            peers.Host("sip.lab.test", echo.host),
        ]
    )
    result = await baresip_call("sip:echo@lab.test", seconds=1, dns=server.nameserver).wait()
    assert result.established, "\n".join(result.status_lines)
    assert echo.received("INVITE") == 1
    assert ("SRV", "_sip._udp.lab.test") in server.queries()


# --------------------------------------------------------------------------- dnsmasq


def _query(server: peers.DnsServer, name: str, kind: str) -> dns.message.Message:
    host, port = server.nameserver
    return dns.query.udp(dns.message.make_query(name, kind), host, port=port, timeout=2)


async def test_dnsmasq_serves_the_zone_it_is_given(dnsmasq):
    server = dnsmasq(LAB_ZONE, ttl=42)
    naptr = _query(server, "lab.test", "NAPTR")
    services = sorted((r.order, r.service.decode()) for r in naptr.answer[0])
    assert services == [(10, "SIP+D2U"), (20, "SIP+D2T")]
    assert naptr.answer[0].ttl == 42
    srv = _query(server, "_sip._udp.lab.test", "SRV").answer[0]
    assert sorted((r.priority, r.weight, str(r.target)) for r in srv) == [
        (10, 40, "sip-b.lab.test."),
        (10, 60, "sip-a.lab.test."),
        (20, 0, "sip-c.lab.test."),
    ]
    assert [r.address for r in _query(server, "sip-a.lab.test", "AAAA").answer[0]] == ["::1"]
    assert [r.address for r in _query(server, "plain.lab.test", "A").answer[0]] == ["127.0.0.1"]
    v6only = _query(server, "v6only.lab.test", "A")
    assert v6only.rcode() == dns.rcode.NOERROR and not v6only.answer
    assert _query(server, "nothere.lab.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert _query(server, "example.com", "A").rcode() == dns.rcode.REFUSED
    assert ("NAPTR", "lab.test") in server.queries()


async def test_dnsmasq_gives_every_address_of_a_name(dnsmasq):
    server = dnsmasq([peers.Host("multi.lab.test", a) for a in ("127.0.0.7", "127.0.0.8")])
    answer = _query(server, "multi.lab.test", "A").answer[0]
    assert sorted(r.address for r in answer) == ["127.0.0.7", "127.0.0.8"]


# --------------------------------------------------------------------------- black hole

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Linux; Python names it from 3.12 on
PROBE = b"OPTIONS sip:probe@blackhole SIP/2.0\r\nContent-Length: 0\r\n\r\n"


def _probe(address: str, *, recverr: bool = False, timeout: float = 1.0) -> str:
    """One connected-UDP probe: "timeout", "reply" or the errno name of the error."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if recverr:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.connect((address, 5060))
        s.settimeout(timeout)
        s.send(PROBE)
        try:
            s.recv(2048)
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]
        return "reply"


@pytest.mark.root
async def test_blackhole_is_silent_refusing_and_unreachable_where_it_says(blackhole):
    hole = blackhole()
    dropped = hole.dropped_packets()
    assert _probe(hole.silent_addr, recverr=True) == "timeout"
    assert hole.dropped_packets() == dropped + 1
    assert _probe(hole.refusing_addr) == "ECONNREFUSED"
    # no ARP answer: ~3 s until the kernel gives up, and only IP_RECVERR reports it
    assert _probe(hole.unreachable_addr, recverr=True, timeout=6) == "EHOSTUNREACH"


@pytest.mark.root
async def test_blackhole_leaves_no_namespace_or_route_behind(peer_lab):
    hole = peer_lab.blackhole()
    namespace, network = hole.namespace, str(hole.network)
    hole.destroy()
    assert namespace not in peers._ip("netns", "list").stdout
    assert network not in peers._ip("route", "show", "table", "all").stdout


# --------------------------------------------------------------------------- missing peers


def test_a_missing_peer_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-peer"):
        peers.require_binary("no-such-peer")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-peer"):
        peers.require_binary("no-such-peer")


# --------------------------------------------------------------------------- helpers


def _tone(path):
    samples, rate = peers.read_wav_mono(path)
    return lambda hz: peers.tone_ratio(samples, rate, hz)


async def _gather(*awaitables):
    results = [None] * len(awaitables)

    async def run(i, awaitable):
        results[i] = await awaitable

    async with trio.open_nursery() as nursery:
        for i, awaitable in enumerate(awaitables):
            nursery.start_soon(run, i, awaitable)
    return results
