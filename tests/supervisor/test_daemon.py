"""The supervisor as an operator meets it: dial, follow, list, refuse, survive bad clients."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.hostile.attacker import Attacker, invite

from .daemon import Connection

pytestmark = pytest.mark.interop


def test_a_dial_streams_the_calls_events_to_the_end(gosipd, sipp_uas):
    uas = sipp_uas("echo")
    daemon = gosipd()
    reply, conn = daemon.dial(uas.uri("echo"), max_duration=2, app="tone:1000")
    assert reply["ok"] is True and reply["id"] == 1
    names = []
    for event in conn.lines():
        names.append(event["event"])
        if event["event"] == "call.ended":
            ended = event
            break
    assert names[0] == "call.started"
    assert "call.answered" in names
    assert ended["cause"] == "max_duration"
    assert ended["sip_status"] == 200
    assert ended["media"]["packets_received"] > 50
    assert ended["call"] == reply["call"]
    assert uas.received("BYE") == 1


def test_a_call_through_the_daemons_own_inbound_listener(gosipd):
    daemon = gosipd()
    reply, conn = daemon.dial(f"sip:echo@127.0.0.1:{daemon.sip_port}", max_duration=2)
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "max_duration"
    assert ended["media"]["packets_received"] > 50
    inbound = [
        e
        for e in daemon.events()
        if e.get("event") == "call.ended" and e.get("call") != reply["call"]
    ]
    assert inbound and inbound[0]["cause"] == "remote_hangup"


def test_a_dial_that_requires_srtp_reaches_an_inbound_call_that_offers_it(gosipd):
    """The dial's ``srtp`` field overrides [rtp] srtp; both legs are gosipd workers."""
    daemon = gosipd(extra='[rtp]\nsrtp = "offer"\nsrtp_suites = ["AEAD_AES_128_GCM"]\n')
    reply, conn = daemon.dial(
        f"sip:echo@127.0.0.1:{daemon.sip_port}", max_duration=2, app="tone:1000", srtp="required"
    )
    ended = conn.until_event("call.ended")
    assert ended["cause"] == "max_duration"
    assert ended["media"]["srtp"] == "AEAD_AES_128_GCM"
    assert ended["media"]["packets_received"] > 50 and ended["media"]["srtp_rejected"] == 0
    (inbound,) = [
        e
        for e in daemon.events()
        if e.get("event") == "call.ended" and e.get("call") != reply["call"]
    ]
    assert inbound["media"]["srtp"] == "AEAD_AES_128_GCM"
    assert "inline:" not in daemon.log.read_text()  # no key reached the log


def _invite(port: int, to_port: int, call_id: str) -> bytes:
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:echo@127.0.0.1:{to_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-nat-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@127.0.0.1>;tag=natcaller\r\n"
        f"To: <sip:echo@127.0.0.1:{to_port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_an_inbound_call_is_answered_from_the_address_the_invite_was_sent_to(gosipd):
    """RFC 3581 §4: a caller behind NAT only hears responses from where it sent the INVITE."""
    daemon = gosipd()
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    caller.settimeout(5)
    port = caller.getsockname()[1]
    caller.sendto(_invite(port, daemon.sip_port, "nat-test-1"), ("127.0.0.1", daemon.sip_port))
    sources = {}
    while 200 not in sources:
        data, source = caller.recvfrom(65536)
        status = int(data.split(b" ", 2)[1])
        sources[status] = source
    assert set(sources.values()) == {("127.0.0.1", daemon.sip_port)}, sources
    ok = data.decode()
    to_line = next(line for line in ok.split("\r\n") if line.lower().startswith("to:"))
    contact = next(line for line in ok.split("\r\n") if line.lower().startswith("contact:"))
    target = contact.split("<", 1)[1].split(">", 1)[0]
    host, worker_port = target.rsplit("@", 1)[1].split(";")[0].rsplit(":", 1)
    common = (
        f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=natcaller\r\n{to_line}\r\n"
        "Call-ID: nat-test-1\r\n"
    )
    caller.sendto(
        f"ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-nat-2\r\n"
        f"{common}CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n".encode(),
        (host, int(worker_port)),
    )
    caller.sendto(
        f"BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-nat-3\r\n"
        f"{common}CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n".encode(),
        (host, int(worker_port)),
    )
    while True:
        data, _ = caller.recvfrom(65536)
        if b"CSeq: 2 BYE" in data:
            break
    assert data.startswith(b"SIP/2.0 200")
    caller.close()


def test_calls_status_and_hangup_of_a_live_call(gosipd, sipp_uas):
    uas = sipp_uas("echo")
    daemon = gosipd()
    reply, conn = daemon.dial(uas.uri("echo"), max_duration=60)
    conn.until_event("call.answered")
    calls = daemon.request({"op": "calls"})["calls"]
    assert [c["call"] for c in calls] == [reply["call"]]
    shown = daemon.request({"op": "show", "call": reply["call"]})
    assert shown["ok"] and shown["state"] == "confirmed" and shown["answered"] is True
    status = daemon.request({"op": "status"})
    assert status["calls"] == 1 and status["draining"] is False
    assert daemon.request({"op": "hangup", "call": reply["call"]})["ok"]
    assert conn.until_event("call.ended")["cause"] == "local_hangup"
    missing = daemon.request({"op": "hangup", "call": "0123456789abcdef"})
    assert missing["error"]["code"] == "no_such_call"


def test_bad_control_input_is_answered_and_disturbs_no_call(gosipd, sipp_uas):
    uas = sipp_uas("echo")
    daemon = gosipd()
    _, call_conn = daemon.dial(uas.uri("echo"), max_duration=8)
    call_conn.until_event("call.answered")

    idle = []
    for _ in range(1000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(daemon.socket))
        idle.append(sock)

    cases = [
        (b"garbage\n", "bad_json"),
        (b'{"op": "dial", "to": 7}\n', "bad_field"),
        (b'{"op": "explode"}\n', "unknown_op"),
        (b'{"id": 3, "op": "dtmf", "call": "nope", "digits": "1"}\n', "no_such_call"),
    ]
    for line, code in cases:
        conn = daemon.connect()
        conn.send(line)
        answer = conn.read()
        assert answer is not None and answer["ok"] is False
        assert answer["error"]["code"] == code
        conn.close()
    # a header the engine must own (or a trunk would refuse) is named, and no call starts
    for header, named in (
        ("Require: 100rel", "Require is not in [headers] send"),
        ("P-Asserted-Identity: +15551230000", "is not a name-addr"),
    ):
        refused = daemon.request({"op": "dial", "to": uas.uri("echo"), "headers": [header]})
        assert refused["ok"] is False and refused["error"]["field"] == "headers"
        assert named in refused["error"]["message"]

    big = daemon.connect(30)
    chunk = b"x" * 1_000_000
    for _ in range(10):  # a 10 MB line
        big.send(chunk)
    big.send(b'\n{"id": 9, "op": "status"}\n')
    first, second = big.read(), big.read()
    assert first is not None and first["error"]["code"] == "too_long"
    assert second is not None and second["ok"] is True
    big.close()

    truncated = daemon.connect()
    truncated.send(b'{"op": "dial", "to": "sip:')
    truncated.close()

    status = daemon.request({"op": "status"})
    assert status["ok"] and status["calls"] == 1
    for sock in idle:
        sock.close()
    ended = call_conn.until_event("call.ended")
    assert ended["cause"] == "max_duration"
    assert ended["media"]["packets_lost"] == 0


def test_the_limits_refuse_calls_with_a_clear_error(gosipd, sipp_uas):
    uas = sipp_uas("echo")
    daemon = gosipd(extra="[limits]\nmax_calls = 2\n")
    conns = []
    for _ in range(2):
        reply, conn = daemon.dial(uas.uri("echo"), max_duration=30)
        assert reply["ok"]
        conns.append(conn)
    for conn in conns:
        conn.until_event("call.answered")
    refused, _ = daemon.dial(uas.uri("echo"))
    assert refused["ok"] is False
    assert refused["error"]["code"] == "too_many_calls"
    assert "2 calls" in refused["error"]["message"]


def test_gosipctl_dial_exit_codes(gosipd, sipp_uas, capsys):
    from gosipd.cli import main

    uas = sipp_uas("echo")
    daemon = gosipd()
    code = main(["--socket", str(daemon.socket), "dial", uas.uri("echo"), "--max-duration", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "answered" in out and "summary:" in out
    refused = sipp_uas("503")
    code = main(["--socket", str(daemon.socket), "dial", refused.uri("x"), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    last = json.loads(captured.out.strip().splitlines()[-1])
    assert last["event"] == "call.ended" and last["sip_status"] == 503
    assert "503" in captured.err
    code = main(["--socket", str(daemon.socket), "dial", "12345"])
    captured = capsys.readouterr()
    assert code == 3
    assert "no_trunk" in captured.err and "no trunk is configured" in captured.err
    code = main(["--socket", str(daemon.directory / "nope.sock"), "status"])
    assert code == 3
    assert "no gosipd listening" in capsys.readouterr().err


def test_the_control_socket_is_group_only(gosipd):
    daemon = gosipd(listen=False)
    mode = daemon.socket.stat().st_mode & 0o777
    assert mode == 0o660
    assert time.time() - daemon.socket.stat().st_mtime < 60
    _ = Connection


def test_a_client_mid_request_is_answered_across_an_upgrade(gosipd):
    """An upgrade re-executes the supervisor; a connection it was serving goes along with
    what the client had sent so far, and nothing the client asked goes unanswered."""
    daemon = gosipd()
    before = daemon.request({"op": "status"})
    idle = daemon.connect()
    half = daemon.connect()
    half.send(b'{"id": "pipelined", "op": "status"}\n{"id": "split", "op": "sta')
    assert half.read()["id"] == "pipelined"
    # the upgrade's own connection is carried over too: it may ask again afterwards
    upgrader = daemon.connect()
    upgrader.send({"id": "up", "op": "upgrade"})
    assert upgrader.read()["ok"]
    time.sleep(0.3)  # likely mid-exec: the rest of the line reaches whichever process is up
    half.send(b'tus"}\n')
    split = half.read()
    assert split["id"] == "split" and split["ok"]
    idle.send({"id": "after", "op": "calls"})
    assert idle.read() == {"id": "after", "ok": True, "calls": []}
    upgrader.send({"id": "again", "op": "status"})
    again = upgrader.read()
    assert again["ok"] and again["pid"] == before["pid"]
    assert again["uptime_s"] < before["uptime_s"] + 0.3  # a new process image: uptime restarted
    for conn in (idle, half, upgrader):
        conn.close()


def test_an_invite_asking_for_a_session_shorter_than_min_se_gets_422_and_no_worker(gosipd):
    """RFC 4028 §9, before a fork: the caller's retry at our Min-SE is then answered."""
    daemon = gosipd()
    caller = Attacker(daemon.sip_port)
    call_id = "brief-session"
    brief = invite(caller.port, call_id=call_id).replace(
        b"Content-Type:", b"Session-Expires: 60\r\nSupported: timer\r\nContent-Type:", 1
    )

    (refusal,) = [r for r in caller.ask(brief) if r.status >= 200]

    assert refusal.status == 422 and refusal.headers.get("Min-SE") == "90"
    assert daemon.request({"op": "status"})["counters"].get("inbound", 0) == 0
    again = brief.replace(b"Session-Expires: 60", b"Session-Expires: 90").replace(
        b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"
    )
    answered = [r for r in caller.ask(again, wait=5) if r.status >= 200]
    assert answered and answered[0].status == 200
    assert answered[0].headers.get("Session-Expires") == "90;refresher=uac"
    assert "timer" in answered[0].require
    caller.close()
