"""Where requests and responses go: Record-Route with loose and strict routing through a
proxy, rport/received (RFC 3581) both ways and behind a NAT, forking, and redirects."""

from __future__ import annotations

from gosipd.sip import URI, NameAddr, Request, Response, Via
from gosipd.sip import events as ev
from gosipd.sip.ua import CallState

from .conftest import ALICE, ANSWER, BOB, CAROL, OFFER, PROXY, Pair, make_pair, user_agent
from .network import Network
from .proxy import Proxy


def proxied_pair(*, strict: bool = False, targets: list[tuple[str, int]] | None = None) -> Pair:
    pair = make_pair()
    pair.net.add(PROXY, Proxy(PROXY, targets=targets or [BOB], strict=strict))
    return pair


def dial_through_proxy(pair: Pair) -> None:
    pair.dial(to=PROXY, via=PROXY)


def test_loose_routing_sends_ack_and_bye_through_the_record_routing_proxy() -> None:
    pair = proxied_pair()
    dial_through_proxy(pair)
    pair.answer_when_called()
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    route = (NameAddr.parse("<sip:192.0.2.5:5060;lr>"),)
    assert pair.alice.dialog is not None and pair.alice.dialog.route_set == route
    assert pair.bob.dialog is not None and pair.bob.dialog.route_set == route
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    for what in ("ACK", "BYE"):
        [sent] = [d for d in pair.net.sent if d.is_(what) and d.source == ALICE]
        assert sent.destination == PROXY
        [request] = pair.net.messages(what, ALICE)
        assert isinstance(request, Request)
        assert request.uri == URI.parse("sip:bob@192.0.2.20:5062")  # the remote target
        assert request.route == list(route)
    assert pair.alice_events(ev.Ended)[0].cause == "local_hangup"
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"


def test_the_callee_routes_its_bye_back_through_the_proxy() -> None:
    pair = proxied_pair()
    dial_through_proxy(pair)
    pair.answer_when_called()
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.bob.hangup(pair.net.now)
    pair.net.run()
    [sent] = [d for d in pair.net.sent if d.is_("BYE") and d.source == BOB]
    assert sent.destination == PROXY
    [bye] = pair.net.messages("BYE", BOB)
    assert isinstance(bye, Request)
    assert bye.uri == URI.parse("sip:alice@192.0.2.10:5060")
    assert pair.alice_events(ev.Ended)[0].cause == "remote_hangup"


def test_strict_routing_puts_the_route_in_the_request_uri_and_the_target_last() -> None:
    pair = proxied_pair(strict=True)
    dial_through_proxy(pair)
    pair.answer_when_called()
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    [bye] = pair.net.messages("BYE", ALICE)
    assert isinstance(bye, Request)
    assert bye.uri == URI.parse("sip:192.0.2.5:5060")  # the strict router's URI
    assert [r.uri for r in bye.route] == [URI.parse("sip:bob@192.0.2.20:5062")]
    # the proxy put the target back in the Request-URI, and bob took the BYE
    [delivered] = pair.net.messages("BYE", PROXY)
    assert isinstance(delivered, Request) and delivered.uri == URI.parse("sip:bob@192.0.2.20:5062")
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"


def test_responses_follow_rport_and_received_to_a_caller_behind_a_nat() -> None:
    private, public = ("10.0.0.10", 5060), ("203.0.113.10", 40000)
    net = Network()
    alice = net.add(private, user_agent(private, "alice", 1))
    bob = net.add(BOB, user_agent(BOB, "bob", 2))
    net.nat(private, public)
    alice.invite(
        URI.parse("sip:bob@192.0.2.20:5062"),
        destination=BOB,
        from_=NameAddr.parse("<sip:alice@example.com>"),
        now=0.0,
        sdp=OFFER,
    )
    net.run(lambda: bool(net.of(BOB, ev.IncomingCall)))
    [incoming] = net.of(BOB, ev.IncomingCall)
    assert incoming.request.via[0].received == "203.0.113.10"
    assert incoming.request.via[0].rport == 40000
    bob.answer(net.now, sdp=ANSWER)
    net.run(lambda: bob.state is CallState.CONFIRMED)
    assert {d.destination for d in net.sent if d.source == BOB} == {public}
    # alice learnt her public address from her Via in bob's responses (RFC 3581 §9)...
    assert alice.public_address == public
    # ...and a target refresh tells bob where she really is
    alice.reinvite(OFFER, net.now)
    net.run(lambda: bool(net.of(BOB, ev.RemoteOffer)))
    [reinvite] = [m for m in net.messages("INVITE") if isinstance(m, Request)][-1:]
    assert reinvite.contact[0].uri.host_port == "203.0.113.10:40000"
    bob.answer_offer(ANSWER, net.now)
    net.run(lambda: bool(net.of(private, ev.OfferAnswered)))
    bob.hangup(net.now)
    net.run()
    [bye] = [d for d in net.sent if d.is_("BYE")]
    assert bye.destination == public
    assert net.of(private, ev.Ended)[0].cause == "remote_hangup"


def test_a_response_without_rport_goes_to_received_and_the_via_port() -> None:
    pair = make_pair()
    options = Request.create(
        "OPTIONS",
        "sip:bob@192.0.2.20:5062",
        from_=NameAddr.parse("<sip:carol@example.com>;tag=c1"),
        to=NameAddr.parse("<sip:bob@192.0.2.20>"),
        call_id="opt1@example.com",
        cseq=1,
        via=Via("UDP", "carol.example.com", 5099, branch="z9hG4bKopt1"),
    )
    pair.net.inject(bytes(options), ("198.51.100.3", 41000), BOB)
    pair.net.run()
    [reply] = [d for d in pair.net.sent if d.source == BOB]
    assert reply.destination == ("198.51.100.3", 5099)  # §18.2.2: received, sent-by port
    [response] = pair.net.messages("200", BOB)
    assert isinstance(response, Response)
    assert response.via[0].received == "198.51.100.3"


def test_a_forked_invite_answered_twice_acks_both_and_hangs_up_the_second() -> None:
    pair = proxied_pair(targets=[BOB, CAROL])
    carol = pair.net.add(CAROL, user_agent(CAROL, "carol", 3))
    dial_through_proxy(pair)
    pair.net.run(
        lambda: bool(pair.bob_events(ev.IncomingCall) and pair.net.of(CAROL, ev.IncomingCall))
    )
    pair.bob.ring(pair.net.now, reliable=False)
    carol.ring(pair.net.now, reliable=False)
    pair.net.run(lambda: len(pair.alice_events(ev.Ringing)) == 2)  # two early dialogs
    pair.bob.answer(pair.net.now, sdp=ANSWER)
    pair.net.run(pair.net.now + 0.005)
    carol.answer(pair.net.now, sdp=ANSWER)
    pair.net.run(pair.net.now + 5)
    assert len(pair.alice_events(ev.Answered)) == 1
    assert (
        pair.alice.dialog is not None and pair.alice.dialog.remote_tag == pair.bob.dialog.local_tag
    )
    acks = pair.net.messages("ACK", ALICE)
    assert sorted(a.to.tag for a in acks) == sorted(
        [pair.bob.dialog.local_tag, carol.dialog.local_tag]
    )
    [bye] = pair.net.messages("BYE", ALICE)
    assert bye.to.tag == carol.dialog.local_tag
    assert pair.bob.state is CallState.CONFIRMED
    assert pair.net.of(CAROL, ev.Ended)[0].cause == "remote_hangup"
    assert pair.alice.state is CallState.CONFIRMED


def test_redirect_contacts_come_best_q_first_and_the_retry_reaches_the_new_target() -> None:
    pair = make_pair()
    carol = pair.net.add(CAROL, user_agent(CAROL, "carol", 3))
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    contacts = [
        NameAddr.parse("<sip:carol@192.0.2.30:5064>;q=0.5"),
        NameAddr.parse("<sip:dave@192.0.2.40>;q=0.9"),
        NameAddr.parse("<sip:erin@192.0.2.50>"),
    ]
    pair.bob.reject(pair.net.now, 302, contacts=contacts)
    pair.net.run(lambda: bool(pair.alice_events(ev.Redirected)))
    [redirected] = pair.alice_events(ev.Redirected)
    assert redirected.status == 302
    assert [str(c) for c in redirected.contacts] == [
        "sip:erin@192.0.2.50",
        "sip:dave@192.0.2.40",
        "sip:carol@192.0.2.30:5064",
    ]
    assert pair.alice.state is CallState.WAITING
    assert pair.net.sent_times("ACK")  # the 302 is ACKed by the transaction
    pair.alice.retry(CAROL, pair.net.now, request_uri=redirected.contacts[2])
    pair.net.run(lambda: bool(pair.net.of(CAROL, ev.IncomingCall)))
    first, second = pair.net.messages("INVITE", ALICE)
    assert second.uri == URI.parse("sip:carol@192.0.2.30:5064")
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.cseq.number == first.cseq.number + 1
    assert second.via[0].branch != first.via[0].branch
    carol.answer(pair.net.now, sdp=ANSWER)
    pair.net.run(lambda: carol.state is CallState.CONFIRMED)
    assert pair.alice_events(ev.Answered)[0].sdp == ANSWER


def test_redirects_beyond_the_cap_fail_the_call() -> None:
    net = Network()
    alice = net.add(ALICE, user_agent(ALICE, "alice", 1, max_redirects=1))
    hops = [("192.0.2.21", 5060), ("192.0.2.22", 5060)]
    redirectors = [net.add(hop, user_agent(hop, "r", 10 + i)) for i, hop in enumerate(hops)]
    alice.invite(
        URI.parse("sip:bob@192.0.2.21"),
        destination=hops[0],
        from_=NameAddr.parse("<sip:alice@192.0.2.10>"),
        now=0.0,
    )
    for hop, redirector in zip(hops, redirectors, strict=True):
        net.run(lambda r=redirector: bool(r.state is not CallState.IDLE))
        redirector.reject(net.now, 302, contacts=[NameAddr.parse("<sip:bob@192.0.2.22>")])
        net.run()
        if hop == hops[0]:
            [redirected] = net.of(ALICE, ev.Redirected)
            alice.retry(hops[1], net.now, request_uri=redirected.contacts[0])
    [failed] = net.of(ALICE, ev.Failed)
    assert failed.status == 302
    assert net.of(ALICE, ev.Ended)[0].cause == "rejected"
    assert alice.state is CallState.TERMINATED
