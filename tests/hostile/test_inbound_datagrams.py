"""What a stranger's datagrams can do to a live supervisor: no datagram stops it, every
request gets the answer RFC 3261 §8.2 owes, and the answers tell a scanner nothing."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gosipd import sip
from gosipd.sip import Request
from tests.engine.test_rfc4475 import DATA as RFC4475
from tests.engine.test_rfc4475 import MANIFEST, expected
from tests.fuzz.fuzz_sip import mutate
from tests.sip.exercise import corpus
from tests.supervisor.daemon import Daemon

from .attacker import Attacker, invite, options, raw_call_id

Start = Callable[..., Daemon]


def _alive(daemon: Daemon, attacker: Attacker) -> None:
    assert daemon.process is not None and daemon.process.poll() is None, "the supervisor died"
    [ok] = attacker.ask(options(attacker.port), wait=5)
    assert ok.status == 200


@pytest.mark.parametrize("method", ["OPTIONS", "INVITE"])
def test_a_garbage_via_gets_400_and_the_supervisor_keeps_answering(
    gosipd: Start, attacker: Callable[[int], Attacker], method: str
) -> None:
    daemon = gosipd()
    a = attacker(daemon.sip_port)
    datagram = options(a.port, via="garbage")
    if method == "INVITE":
        datagram = datagram.replace(b"OPTIONS", b"INVITE")
    for _ in range(10):  # under systemd, five crashes in a row left the unit failed
        [reply] = a.ask(datagram)
        assert reply.status == 400
        assert "Via" in (reply.reason or "")
    _alive(daemon, a)
    assert daemon.request({"op": "status"})["calls"] == 0  # nothing was forked


def test_unanswerable_datagrams_are_dropped_and_counted(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd()
    a = attacker(daemon.sip_port)
    junk = [
        b"",
        b"\r\n\r\n",
        b"\x00" * 300,
        b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n",  # a response: never answered
        b"OPTIONS sip:x SIP/2.0\r\nVia: garbage\r\n\r\n",  # no From/To/Call-ID/CSeq
        options(a.port).replace(b"Call-ID", b"Call-ID: a\r\nCall-ID"),
        options(a.port, via="SIP/2.0/UDP [::1"),
    ]
    for datagram in junk:
        a.send(datagram)
    a.responses(1.0)
    _alive(daemon, a)
    status = daemon.request({"op": "status"})
    assert status["counters"]["inbound_dropped"] >= 4


# RFC 4475's requests name sent-by hosts without a port (5060) or with 5050: a stranger's
# loopback address with sockets on both ports receives every answer owed.
def _torture_source() -> tuple[Attacker, socket.socket]:
    for _ in range(20):
        host = (
            f"127.{random.randrange(1, 250)}.{random.randrange(1, 250)}.{random.randrange(2, 250)}"
        )
        try:
            main = Attacker(0, host=host, port=5060)
        except OSError:
            continue
        side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            side.bind((host, 5050))
        except OSError:
            main.close()
            side.close()
            continue
        return main, side
    pytest.fail("no loopback address with ports 5060 and 5050 free")


def test_every_rfc4475_request_gets_the_answer_the_rfc_owes(gosipd: Start, tmp_path: Path) -> None:
    daemon = gosipd(inbound='trusted_sources = ["127.0.0.0/8"]')
    a, side = _torture_source()
    a.target = ("127.0.0.1", daemon.sip_port)
    right, wrong = [], []
    try:
        for file, handling in MANIFEST:
            data = (RFC4475 / file).read_bytes()
            outcome = expected(file, handling, data)
            call_id = raw_call_id(data)
            a.send(data)
            if outcome is None:
                replies = a.responses(0.5)
            else:
                found = a.reply_to(call_id, 5.0)
                replies = [found] if found is not None else []
            side.settimeout(0.05 if replies else 0.5)
            with contextlib.suppress(TimeoutError):
                replies += [sip.parse(side.recv(65535))]  # type: ignore[list-item]
            # answers that belong to an earlier message's call (the echo app's 200s)
            replies = [r for r in replies if raw_call_id(bytes(r)) == call_id]
            statuses = [r.status for r in replies]
            if outcome is None:
                ok = statuses == []
            elif outcome == "call":
                ok = bool(statuses) and all(s in (100, 180, 183, 200) for s in statuses)
            else:
                ok = statuses[:1] == [outcome]
                if ok and outcome == 420:
                    request = sip.parse(data)
                    assert isinstance(request, Request)
                    ok = replies[0].unsupported == request.require
            (right if ok else wrong).append(f"{file}: wanted {outcome}, got {statuses}")
    finally:
        a.close()
        side.close()
    assert not wrong, f"{len(right)}/{len(MANIFEST)} right; wrong:\n" + "\n".join(wrong)
    assert len(right) == 49


def test_answers_name_no_software_and_claim_only_what_is_on(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd()
    a = attacker(daemon.sip_port)
    [ok] = a.ask(options(a.port))
    assert ok.status == 200
    assert "Server" not in ok.headers and "User-Agent" not in ok.headers
    assert ok.supported == ["100rel", "timer"]  # session timers are on by default
    [refused] = a.ask(options(a.port).replace(b"OPTIONS sip:", b"OPTIONS nope:"))
    assert refused.status == 416 and "Server" not in refused.headers
    daemon.stop()

    off = gosipd(extra="[sip]\nsession_expires = 0\n")
    b = attacker(off.sip_port)
    [ok] = b.ask(options(b.port))
    assert ok.supported == ["100rel"]  # not claimed while off


def test_a_configured_user_agent_is_sent(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(extra='[sip]\nuser_agent = "acme-pbx"\n')
    a = attacker(daemon.sip_port)
    [ok] = a.ask(options(a.port))
    assert ok.headers.get("Server") == "acme-pbx"


def test_unknown_and_routed_users_look_the_same_to_options_and_register(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(routes={"1001": "echo", "support": "echo"})
    a = attacker(daemon.sip_port)

    def shape(user: str, method: str) -> tuple[int, str | None, list[str]]:
        datagram = options(a.port, user=user)
        if method == "REGISTER":
            datagram = datagram.replace(b"OPTIONS", b"REGISTER")
        [reply] = a.ask(datagram)
        return reply.status, reply.reason, sorted(name.lower() for name, _ in reply.headers)

    for method in ("OPTIONS", "REGISTER"):
        assert shape("1001", method) == shape("1002", method) == shape("support", method)


def test_a_source_over_its_limits_gets_503_before_any_fork(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(inbound="max_calls_per_source = 2\ninvites_per_source_per_second = 100")
    a = attacker(daemon.sip_port)
    for _ in range(2):
        replies = a.ask(invite(a.port), wait=5)
        assert replies and replies[0].status in (100, 180, 200)
    [busy] = a.ask(invite(a.port))
    assert busy.status == 503 and busy.retry_after is not None
    assert daemon.request({"op": "status"})["calls"] == 2
    # another source is not held back by the first one's calls
    b = Attacker(daemon.sip_port, host="127.0.0.2")
    replies = b.ask(invite(b.port), wait=5)
    b.close()
    assert replies and replies[0].status in (100, 180, 200)


def test_a_source_sending_invites_too_fast_gets_503(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(inbound="invites_per_source_per_second = 2")
    a = attacker(daemon.sip_port)
    for _ in range(6):
        a.send(invite(a.port))
    statuses = [r.status for r in a.responses(3.0)]
    assert statuses.count(503) == 4
    assert daemon.request({"op": "status"})["counters"]["inbound_refused"] == 4


def test_an_inbound_flood_never_takes_the_calls_kept_for_dials(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(
        inbound='trusted_sources = ["127.0.0.1"]',
        extra="[limits]\nmax_calls = 4\nreserved_for_dials = 0.5\n",
    )
    a = attacker(daemon.sip_port)
    statuses = []
    for _ in range(5):
        replies = a.ask(invite(a.port), wait=3)
        statuses.append(replies[0].status if replies else None)
    assert statuses.count(503) == 3, statuses
    # the host still dials: two of its four calls were kept for that
    far = Attacker(0)
    try:
        reply, conn = daemon.dial(f"sip:someone@127.0.0.1:{far.port}", app="echo")
        conn.close()
        assert reply.get("ok"), reply
    finally:
        far.close()


def test_a_hundred_thousand_mutated_datagrams_leave_it_answering(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(routes={})  # INVITEs are answered 404: the fuzz forks nothing
    a = attacker(daemon.sip_port)
    prober = attacker(daemon.sip_port)  # its answers are not lost among the fuzz's
    rng = random.Random(13)
    seeds = corpus()
    sent = 0
    started = time.monotonic()
    while sent < 100_000:
        for _ in range(100):
            a.send(mutate(rng, seeds))
        sent += 100
        a.drain()
        # the probe queues behind the batch: its answer paces the run (the kernel's
        # receive buffer holds the batch) and proves life; one the kernel dropped is resent
        for _attempt in range(5):
            probe = options(prober.port)
            prober.send(probe)
            reply = prober.reply_to(raw_call_id(probe), 2)
            if reply is not None:
                break
        assert reply is not None, f"no answer to OPTIONS after {sent} mutated datagrams"
        assert reply.status == 200
    _alive(daemon, prober)
    status = daemon.request({"op": "status"})
    assert status["calls"] == 0
    print(f"100,000 datagrams in {time.monotonic() - started:.1f} s; counters {status['counters']}")


@pytest.mark.parametrize("forged", ["maddr=127.0.0.2", "received=127.0.0.2"])
def test_a_via_naming_a_third_party_gets_it_no_response(gosipd: Start, forged: str) -> None:
    """The call's responses (its 200, retransmitted until an ACK that never comes) go to
    the address the INVITE came from, never to the ``maddr`` or ``received`` its Via was
    forged with."""
    daemon = gosipd()
    assert daemon.sip_port is not None
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.2", 0))
    port = victim.getsockname()[1]
    sender_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # same port, real IP
    sender_side.bind(("127.0.0.1", port))
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    try:
        forged_invite = invite(port).replace(b";rport\r\n", f";{forged}\r\n".encode(), 1)
        assert forged.encode() in forged_invite
        attacker.sendto(forged_invite, ("127.0.0.1", daemon.sip_port))
        sender_side.settimeout(5)
        answer = sender_side.recv(65535)
        assert answer.startswith(b"SIP/2.0 "), answer[:40]  # to the sender's address
        victim.settimeout(2)
        with pytest.raises(TimeoutError):
            victim.recv(65535)
    finally:
        for sock in (victim, sender_side, attacker):
            sock.close()
