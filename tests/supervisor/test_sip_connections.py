"""Inbound calls over TCP and TLS: the supervisor holds the connection, the call runs in
its worker. Callers: the daemon's own outbound calls, SIPp over TCP, baresip over TLS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.hostile.attacker import stream_options
from tests.peers import MEDIA_DIR, free_port

from .daemon import Daemon

pytestmark = pytest.mark.interop


def stream_daemon(gosipd: Any, certificates: dict[str, Path] | None = None, **kwargs: Any) -> Any:
    """A daemon listening on UDP, TCP and (with ``certificates``) TLS, trusting the test CA;
    ``.tcp_port`` and ``.tls_port``."""
    tcp_port = free_port(tcp=True)
    inbound = [f'listen_tcp = "127.0.0.1:{tcp_port}"']
    extra = '[sip]\ntransports = ["udp", "tcp", "tls"]\n'
    tls_port = None
    if certificates is not None:
        tls_port = free_port(tcp=True)
        inbound.append(f'listen_tls = "127.0.0.1:{tls_port}"')
        server = certificates["server"]
        extra += (
            f'[tls]\ncert_file = "{server}"\nkey_file = "{server}"\n'
            f'ca_file = "{certificates["ca"]}"\n'
        )
    inbound.append(kwargs.pop("inbound", ""))
    daemon = gosipd(inbound="\n".join(inbound), extra=extra + kwargs.pop("extra", ""), **kwargs)
    daemon.tcp_port, daemon.tls_port = tcp_port, tls_port
    return daemon


def ended_events(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {e["call"]: e for e in daemon.events() if e.get("event") == "call.ended"}


def inbound_ended(daemon: Daemon, timeout: float = 10) -> dict[str, Any]:
    """The call.ended of the first inbound call to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = daemon.events()
        inbound = {
            e.get("call")
            for e in events
            if e.get("event") == "call.started" and e.get("direction") == "inbound"
        }
        for event in events:
            if event.get("event") == "call.ended" and event.get("call") in inbound:
                return event
        time.sleep(0.05)
    raise AssertionError("no inbound call ended")


def call_itself(daemon: Daemon, uri: str, transport: str) -> dict[str, Any]:
    """A 1 s call from the daemon to its own listener at ``uri``, hung up by the caller:
    both legs over ``transport``, with audio; the inbound leg's call.ended."""
    _, conn = daemon.dial(uri, max_duration=1)
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "max_duration" and ended["sip"]["transport"] == transport
    assert ended["media"]["packets_received"] > 25
    answered = inbound_ended(daemon)
    assert answered["cause"] == "remote_hangup" and answered["sip"]["transport"] == transport
    return answered


def test_a_call_over_tcp_through_the_daemons_listener_hung_up_by_either_side(gosipd):
    daemon = stream_daemon(gosipd)
    # the caller hangs up: its BYE goes on its connection, the supervisor relays it
    answered = call_itself(daemon, f"sip:echo@127.0.0.1:{daemon.tcp_port};transport=tcp", "tcp")
    assert answered["sip"]["local"] == ["127.0.0.1", daemon.tcp_port]  # Via, Contact

    # the called side hangs up: its BYE leaves on the caller's connection
    _reply, conn = daemon.dial(
        f"sip:echo@127.0.0.1:{daemon.tcp_port};transport=tcp", max_duration=20
    )
    conn.until_event("call.answered")
    calls = daemon.request({"op": "calls"})["calls"]
    (called,) = [
        c["call"] for c in calls if c["direction"] == "inbound" and c["call"] != answered["call"]
    ]
    assert daemon.request({"op": "hangup", "call": called})["ok"]
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "remote_hangup", ended
    assert ended["duration_s"] < 10
    assert daemon.request({"op": "status"})["counters"]["inbound_dropped"] == 0


def test_a_call_over_tls_to_the_daemons_listener(gosipd, certificates):
    daemon = stream_daemon(gosipd, certificates)
    status = daemon.request({"op": "status"})
    assert status["inbound_tls"] == ["127.0.0.1", daemon.tls_port]
    call_itself(daemon, f"sips:echo@127.0.0.1:{daemon.tls_port}", "tls")


def test_a_tls_caller_that_does_not_trust_our_certificate_never_reaches_a_call(
    gosipd, certificates
):
    daemon = stream_daemon(gosipd, certificates)
    # a second daemon as the caller, trusting only the system store
    caller = gosipd(listen=False, extra='[sip]\ntransports = ["tls"]\n')
    _reply, conn = caller.dial(f"sips:echo@127.0.0.1:{daemon.tls_port}", max_duration=1)
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "tls_failed", ended
    deadline = time.monotonic() + 5
    while daemon.request({"op": "status"})["counters"]["tls_failures"] < 1:
        assert time.monotonic() < deadline, "the failed handshake was not counted"
        time.sleep(0.05)
    assert daemon.request({"op": "status"})["counters"]["inbound"] == 0


async def test_sipp_calls_over_tcp_and_hears_its_audio_echoed(gosipd, sipp_uac):
    daemon = stream_daemon(gosipd)
    result = await sipp_uac(
        "uac_pcmu",
        f"127.0.0.1:{daemon.tcp_port}",
        call_ms=1500,
        pcap=MEDIA_DIR / "pcmu_tone1k_5s.pcap",
        transport="tcp",
    ).wait()
    assert result.ok, result.errors
    answered = inbound_ended(daemon)
    assert answered["cause"] == "remote_hangup" and answered["sip"]["transport"] == "tcp"
    assert answered["media"]["packets_received"] > 50
    assert answered["media"]["packets_sent"] > 50  # the echo went back


async def test_baresip_calls_over_tls(gosipd, baresip_call, certificates):
    daemon = stream_daemon(gosipd, certificates)
    call = baresip_call(
        f"sip:echo@127.0.0.1:{daemon.tls_port};transport=tls",
        seconds=3,
        cafile=certificates["ca"],
    )
    result = await call.wait()
    assert result.established, result.log[-2000:]
    with trio.fail_after(10):
        while not ended_events(daemon):
            await trio.sleep(0.05)
    answered = inbound_ended(daemon)
    assert answered["sip"]["transport"] == "tls"
    assert answered["cause"] == "remote_hangup", answered
    assert answered["media"]["packets_received"] > 50


def _tcp_invite(port: int, call_id: str, padding: int = 0, header_padding: int = 0) -> bytes:
    """``padding``: that many more octets of SDP (session attributes, ignored);
    ``header_padding``: of an X-Pad header."""
    pad = "".join(f"a=x-pad:{'p' * 90}\r\n" for _ in range(padding // 100))
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"{pad}m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    extra = f"X-Pad: {'h' * header_padding}\r\n" if header_padding else ""
    return (
        f"INVITE sip:echo@127.0.0.1:{port};transport=tcp SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-tcp-1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:caller@127.0.0.1>;tag=tcpcaller\r\n"
        f"To: <sip:echo@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@127.0.0.1:9;transport=tcp>\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def answered_over_tcp(daemon: Any, call_id: str, **padding: int) -> socket.socket:
    """A raw caller: INVITE on a new connection, the 200, its ACK; the connection, open."""
    caller = socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=5)
    caller.sendall(_tcp_invite(daemon.tcp_port, call_id, **padding))
    data = b""
    while b"SIP/2.0 200" not in data or not data.endswith(b"a=sendrecv\r\n"):
        chunk = caller.recv(65536)
        assert chunk, data
        data += chunk
    final = data[data.index(b"SIP/2.0 200") :]
    assert b";transport=tcp>" in final  # the Contact: our listener, over TCP
    to = next(line for line in final.split(b"\r\n") if line.lower().startswith(b"to:"))
    ack = (
        f"ACK sip:echo@127.0.0.1:{daemon.tcp_port};transport=tcp SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-tcp-2\r\nMax-Forwards: 70\r\n"
        "From: <sip:caller@127.0.0.1>;tag=tcpcaller\r\n"
        f"{to.decode()}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )
    caller.sendall(ack.encode())
    return caller


def bye_on(caller: socket.socket) -> bytes:
    """What the raw caller read until our BYE to its Contact; fails if it is closed first."""
    data = b""
    caller.settimeout(5)
    while b"BYE sip:caller@127.0.0.1:9;transport=tcp SIP/2.0" not in data:
        chunk = caller.recv(65536)
        assert chunk, f"the connection closed before a BYE: {data!r}"
        data += chunk
    return data


def only_call(daemon: Any) -> str:
    deadline = time.monotonic() + 5
    while not (calls := daemon.request({"op": "calls"})["calls"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (call,) = calls
    return str(call["call"])


def test_a_caller_whose_connection_is_gone_is_hung_up_at_once(gosipd):
    """The Via names port 9 (nobody): the 200 still comes back on the connection. Once the
    caller closes it, our BYE has no connection to go on, and the call ends there and then
    instead of retransmitting into nothing for 64·T1."""
    daemon = stream_daemon(gosipd)
    with answered_over_tcp(daemon, "tcp-gone-1"):
        time.sleep(0.3)
    call = only_call(daemon)
    started = time.monotonic()
    assert daemon.request({"op": "hangup", "call": call})["ok"]
    ended = inbound_ended(daemon)
    assert time.monotonic() - started < 3
    assert ended["cause"] == "local_hangup" and ended["answered"], ended


def test_a_crashed_tcp_call_is_hung_up_on_the_callers_connection(gosipd):
    daemon = stream_daemon(gosipd)
    with answered_over_tcp(daemon, "tcp-crash-1") as caller:
        call = only_call(daemon)
        time.sleep(0.3)  # the confirmed dialog is published
        os.kill(daemon.worker_pids()[call], signal.SIGKILL)
        data = bye_on(caller)
    assert b"Call-ID: tcp-crash-1" in data and b"Via: SIP/2.0/TCP 127.0.0.1:" in data


def test_an_upgrade_keeps_the_tcp_listener_and_its_calls(gosipd):
    """The listener is handed to the new process (no connection is refused meanwhile); a
    call in progress loses its connection, and the caller's next request (its BYE, on a
    new connection) still reaches the call by Call-ID."""
    daemon = stream_daemon(gosipd)
    target = f"sip:echo@127.0.0.1:{daemon.tcp_port};transport=tcp"
    _, conn = daemon.dial(target, max_duration=4)
    conn.until_event("call.answered")
    before = daemon.request({"op": "status"})
    assert daemon.request({"op": "upgrade"})["ok"]
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError, AssertionError):
            after = daemon.request({"op": "status"}, timeout=2)
            if after["uptime_s"] < before["uptime_s"]:
                break
        assert time.monotonic() < deadline, "the upgrade did not finish"
        time.sleep(0.05)
    assert after["inbound_tcp"] == ["127.0.0.1", daemon.tcp_port]
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "max_duration", ended
    answered = inbound_ended(daemon)
    assert answered["cause"] == "remote_hangup", answered
    # and a new call is taken as before
    _, conn = daemon.dial(target, max_duration=1)
    assert conn.until_event("call.ended")["cause"] == "max_duration"


def test_a_call_through_a_kamailio_tls_proxy_to_sipp(gosipd, kamailio, sipp_uas, certificates):
    """Out: gosipd -TLS-> Kamailio (record-routing) -UDP-> SIPp; our BYE follows the route
    back on our TLS connection."""
    uas = sipp_uas("echo")
    proxy = kamailio(
        "tls_proxy",
        certificate=certificates["server"],
        ca=certificates["ca"],
        inner=(uas.host, uas.port),
    )
    daemon = stream_daemon(gosipd, certificates)
    _, conn = daemon.dial(f"sips:echo@127.0.0.1:{proxy.tls_port}", max_duration=2)
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "max_duration", ended
    assert ended["sip"]["transport"] == "tls"
    assert ended["media"]["packets_received"] > 50  # SIPp's echo, through no proxy
    assert uas.received("BYE") == 1
    log = proxy.log()
    assert "relay INVITE" in log and " tls} " in log  # the INVITE and BYE came over TLS


async def test_sipp_calls_through_a_kamailio_tls_proxy_to_our_tls_listener(
    gosipd, kamailio, sipp_uac, certificates
):
    """In: SIPp -UDP-> Kamailio -TLS-> gosipd's listener, Kamailio verifying our
    certificate; SIPp's BYE comes over Kamailio's connection and reaches the call."""
    daemon = stream_daemon(gosipd, certificates)
    proxy = kamailio(
        "tls_proxy",
        certificate=certificates["server"],
        ca=certificates["ca"],
        outer=("127.0.0.1", daemon.tls_port),
    )
    result = await sipp_uac(
        "uac_pcmu",
        f"127.0.0.1:{proxy.port}",
        call_ms=1500,
        pcap=MEDIA_DIR / "pcmu_tone1k_5s.pcap",
    ).wait()
    assert result.ok, result.errors
    answered = inbound_ended(daemon)
    assert answered["cause"] == "remote_hangup", answered
    assert answered["sip"]["transport"] == "tls"
    assert answered["media"]["packets_received"] > 50


def test_the_largest_invite_a_connection_may_carry_reaches_its_call_whole(gosipd):
    """64 KiB exactly (what the parser takes; more than a UDP datagram can hold), with a
    15 KB header field: relayed to the worker intact and answered. One octet more closes
    the connection, with the reason logged."""
    daemon = stream_daemon(gosipd)
    size = len(_tcp_invite(daemon.tcp_port, "tcp-large-1", header_padding=15_000))
    padding = 65_536 - size
    largest = _tcp_invite(daemon.tcp_port, "tcp-large-1", padding, header_padding=15_000)
    pad_line = len(f"a=x-pad:{'p' * 90}\r\n")
    extra = 65_536 - len(largest)  # the padding goes in whole lines: top up the header
    largest = _tcp_invite(daemon.tcp_port, "tcp-large-1", padding, 15_000 + extra)
    assert len(largest) == 65_536 and pad_line == 100
    with answered_over_tcp(daemon, "tcp-large-1", padding=padding, header_padding=15_000 + extra):
        call = only_call(daemon)
    assert daemon.request({"op": "hangup", "call": call})["ok"]
    assert inbound_ended(daemon)["answered"]
    assert daemon.request({"op": "status"})["counters"]["inbound_dropped"] == 0

    too_large = _tcp_invite(daemon.tcp_port, "tcp-large-2", padding, 15_000 + extra + 1)
    with socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=5) as caller:
        caller.sendall(too_large)
        with contextlib.suppress(ConnectionResetError):  # closed with it unread: as good
            assert caller.recv(65536) == b""  # closed, unanswered
    assert "a message of 65537 octets (limit 65536)" in daemon.log.read_text()


async def test_pjsip_calls_over_tls_with_srtp(gosipd, pjsua, certificates):
    """PJSIP's own stack dials our TLS listener with SRTP mandatory (RTP/SAVP)."""
    daemon = stream_daemon(gosipd, certificates, extra='[rtp]\nsrtp = "offer"\n')
    caller = pjsua(
        f"sip:echo@127.0.0.1:{daemon.tls_port};transport=tls",
        "--ca",
        str(certificates["ca"]),
        "--srtp",
        "mandatory",
        "--seconds",
        "2",
    )
    result = await caller.result()
    assert result["confirmed"] and result["status"] == 200, result
    assert result["rx_packets"] > 50  # our echo of its audio, decrypted by PJSIP
    answered = inbound_ended(daemon)
    assert answered["sip"]["transport"] == "tls"
    assert answered["media"]["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    assert answered["media"]["packets_received"] > 50 and answered["media"]["srtp_rejected"] == 0
    assert answered["cause"] == "remote_hangup"


async def test_a_call_to_pjsip_over_tls_with_srtp_required(gosipd, pjsua, certificates):
    """We dial PJSIP's TLS transport (its certificate verified against the test CA) with
    SRTP required: RTP/SAVP offered, and taken."""
    port = free_port(tcp=True)
    callee = pjsua(
        "--listen", str(port), "--cert", str(certificates["server"]), "--srtp", "optional"
    )
    daemon = stream_daemon(gosipd, certificates)
    _, conn = daemon.dial(
        f"sips:pjsua@127.0.0.1:{port}", max_duration=2, app="tone:1000", srtp="required"
    )
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "max_duration", ended
    assert ended["sip"]["transport"] == "tls" and ended["media"]["srtp"]
    assert ended["media"]["packets_received"] > 50
    result = await callee.result()
    assert result["confirmed"] and result["disconnected"], result
    assert result["rx_packets"] > 50


def test_a_quiet_connection_is_kept_while_its_call_lives_and_closed_once_idle(gosipd):
    daemon = stream_daemon(gosipd, inbound="connection_idle_s = 1")
    with socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=5) as prober:
        prober.sendall(stream_options())
        assert prober.recv(65536).startswith(b"SIP/2.0 200")
        started = time.monotonic()
        assert prober.recv(65536) == b""  # closed: nothing uses it
        assert 0.8 < time.monotonic() - started < 3
    with answered_over_tcp(daemon, "tcp-quiet-1") as caller:
        call = only_call(daemon)
        time.sleep(2.5)  # silence both ways, well past the idle time
        assert daemon.request({"op": "hangup", "call": call})["ok"]
        bye_on(caller)  # the connection of the live call was kept


async def test_a_crashed_call_to_a_tls_peer_is_hung_up_over_tls(gosipd, baresip_uas, certificates):
    """The worker's connection died with it: the supervisor opens one of its own, checks
    the far end's certificate as the call did, and sends the BYE; baresip hangs up."""
    bob = baresip_uas("uas", certificate=certificates["server"])
    daemon = stream_daemon(gosipd, certificates)
    reply, conn = daemon.dial(f"sips:bob@127.0.0.1:{bob.tls_port}", max_duration=30)
    conn.until_event("call.answered")
    await bob.wait_event("CALL_ESTABLISHED")
    await trio.sleep(0.3)  # the confirmed dialog is published
    os.kill(daemon.worker_pids()[reply["call"]], signal.SIGKILL)
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "worker_crashed" and ended["bye_sent"] is True
    await bob.wait_event("CALL_CLOSED", timeout=10)
    with trio.fail_after(10):
        while not (logged := [e for e in daemon.events() if e.get("event") == "call.crash_bye"]):
            await trio.sleep(0.05)
    assert logged[0]["transport"] == "tls" and logged[0]["sip_status"] == 200, logged
