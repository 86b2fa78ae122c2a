"""Every RFC 4475 torture message fed to an idle UAS UserAgent gets the answer MANIFEST.tsv
lists: 400/405/415/416/420/406/501/505 with the header fields those need, a call for an
INVITE to "process normally", and silence for the responses."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from gosipd import sip
from gosipd.sip import Request, Response
from gosipd.sip import events as ev
from gosipd.sip.ua import CallState, UAConfig, UserAgent

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
SOURCE = ("192.0.2.99", 5060)
ME = ("192.0.2.1", 5060)


def _manifest() -> list[tuple[str, str]]:
    with (DATA / "MANIFEST.tsv").open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    return [(row[0], row[4]) for row in rows]


MANIFEST = _manifest()

#: What "process normally" means for a UA that serves calls, by method: an INVITE is a
#: call (100 Trying, then the app decides), OPTIONS is answered 200, and the methods a
#: UA knows but does not serve get 405 (a REGISTER "to a non-registrar").
NORMAL = {"INVITE": "call", "OPTIONS": 200, "REGISTER": 405, "MESSAGE": 405}


def expected(file: str, handling: str, data: bytes) -> int | str | None:
    """The manifest's handling as an outcome: a status, "call", or None (dropped)."""
    if handling.startswith("response"):
        return None
    head = handling.split()[0]
    if head.isdigit():
        return int(head)
    method = data.split(b" ", 1)[0].decode("latin-1")
    request = sip.parse(data)
    if isinstance(request, Request) and request.to.tag is not None:
        return 481  # processed normally, it names a dialog an idle UAS does not have
    if "405 or 501" in handling:
        return 405 if method in ("REGISTER", "MESSAGE", "SUBSCRIBE") else 501
    return NORMAL[method]


def feed(data: bytes) -> tuple[UserAgent, list[Response], list[ev.Event], list[tuple[str, int]]]:
    ua = UserAgent(UAConfig(ME, contact_user="uas"), rng=random.Random(4475))
    ua.receive(data, SOURCE, 0.0)
    sent = ua.datagrams_to_send()
    responses = []
    for datagram, _ in sent:
        message = sip.parse(datagram)
        assert isinstance(message, Response), "a UAS only answers"
        responses.append(message)
    return ua, responses, ua.events(), [destination for _, destination in sent]


@pytest.mark.parametrize(("file", "handling"), MANIFEST, ids=[f for f, _ in MANIFEST])
def test_every_torture_message_gets_the_manifest_answer(file: str, handling: str) -> None:
    data = (DATA / file).read_bytes()
    outcome = expected(file, handling, data)
    ua, responses, events, destinations = feed(data)
    if outcome is None:
        assert responses == [] and events == []
        assert ua.state is CallState.IDLE
        return
    if outcome == "call":
        assert [r.status for r in responses] == [100]
        [incoming] = [e for e in events if isinstance(e, ev.IncomingCall)]
        assert incoming.request.call_id == responses[0].call_id
        assert ua.state is CallState.INCOMING
        return
    assert [r.status for r in responses] == [outcome], handling
    [response] = responses
    assert events == [] and ua.state is CallState.IDLE
    # §18.2.2: to the address it came from (received), at the Via's port
    assert [host for host, _ in destinations] == [SOURCE[0]]
    if outcome == 420:
        request = sip.parse(data)
        assert isinstance(request, Request)
        assert response.unsupported == request.require
    if outcome == 415:
        assert "application/sdp" in [a.mime for a in response.accept]
    if outcome == 405:
        assert "INVITE" in response.allow


def test_an_rfc2543_caller_completes_a_call_with_a_branchless_ack() -> None:
    data = (DATA / "inv2543.dat").read_bytes()
    ua, [trying], _, _ = feed(data)
    assert trying.status == 100
    invite = sip.parse(data)
    assert isinstance(invite, Request)
    ua.receive(data, SOURCE, 0.2)  # a retransmission: the 100 again, no second call
    assert [d for d, _ in ua.datagrams_to_send()] == [bytes(trying)]
    assert not ua.events()
    ua.answer(0.3, sdp=b"v=0\r\n")
    [(ok_bytes, destination)] = ua.datagrams_to_send()
    ok = sip.parse(ok_bytes)
    assert isinstance(ok, Response) and ok.status == 200
    assert destination == ("192.0.2.99", 5060)  # the Via host is a name: received wins
    assert ok.record_route == invite.record_route  # copied for the dialog (§12.1.1)
    # RFC 2543: the ACK for the 2xx reuses the INVITE's Via (no branch at all)
    ack = Request.create(
        "ACK",
        invite.uri,
        from_=invite.from_,
        to=ok.to,
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        via=invite.via[:1],
    )
    ua.receive(bytes(ack), SOURCE, 0.4)
    assert ua.state is CallState.CONFIRMED
    assert any(isinstance(e, ev.AckReceived) for e in ua.events())
    # the caller sent no From tag: our BYE carries none either; its Record-Route has no
    # lr, so the BYE is strictly routed, the remote target (its From: no Contact) last
    ua.hangup(1.0)
    [(bye_bytes, _)] = ua.datagrams_to_send()
    bye = sip.parse(bye_bytes)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert bye.to.tag is None and bye.from_.tag == ok.to.tag
    assert bye.uri == invite.record_route[0].uri
    assert [r.uri for r in bye.route] == [invite.from_.uri]


def test_a_bare_cookie_branch_retransmission_gets_the_same_answer() -> None:
    data = (DATA / "badbranch.dat").read_bytes()
    ua, [first], _, _ = feed(data)
    ua.receive(data, SOURCE, 0.5)
    [(again, _)] = ua.datagrams_to_send()
    assert again == bytes(first)  # absorbed by the RFC 2543-matched transaction
