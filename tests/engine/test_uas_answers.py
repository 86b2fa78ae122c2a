"""Every request gets the answer RFC 3261 owes it, and nothing that does not belong to the
call changes it: 481, 405/501, 482, 500 with Retry-After, 486, 503 while draining,
OPTIONS/INFO/UPDATE in and out of dialog, stray responses, retransmissions, the ACK
timeout, a BYE in an early dialog."""

from __future__ import annotations

from gosipd import sip
from gosipd.sip import NameAddr, Request, Response, Via
from gosipd.sip import events as ev
from gosipd.sip.dialog import Dialog
from gosipd.sip.ua import CallState

from .conftest import ALICE, ANSWER, BOB, OFFER, Pair, make_pair

STRANGER = ("198.51.100.9", 5060)


def forge(
    dialog: Dialog,
    method: str,
    *,
    cseq: int | None = None,
    branch: str = "z9hG4bKforged",
    to_tag: str | None = None,
    sent_by: tuple[str, int] = ALICE,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request of ``dialog`` (as its owner would send it), with the parts a test bends."""
    remote = dialog.remote_party if to_tag is None else dialog.remote_party.with_tag(to_tag)
    return Request.create(
        method,
        dialog.remote_target,
        from_=dialog.local_party,
        to=remote,
        call_id=dialog.call_id,
        cseq=cseq if cseq is not None else dialog.local_seq + 1,
        via=Via("UDP", *sent_by, branch=branch, rport=True),
        contact=dialog.local_contact,
        body=body,
        content_type=content_type,
    )


def outside(method: str, *, branch: str = "z9hG4bKout", call_id: str = "other@x") -> Request:
    return Request.create(
        method,
        "sip:bob@192.0.2.20:5062",
        from_=NameAddr.parse("<sip:mallory@198.51.100.9>;tag=m1"),
        to=NameAddr.parse("<sip:bob@192.0.2.20>"),
        call_id=call_id,
        cseq=1,
        via=Via("UDP", *STRANGER, branch=branch),
        contact=NameAddr.parse("<sip:mallory@198.51.100.9>"),
        body=OFFER if method == "INVITE" else b"",
        content_type="application/sdp" if method == "INVITE" else None,
    )


def answers(pair: Pair, request: Request, source: tuple[str, int] = STRANGER) -> list[Response]:
    """Inject ``request`` at bob and return bob's responses to it."""
    before = len(pair.net.sent)
    pair.net.inject(bytes(request), source, BOB)
    pair.net.run(pair.net.now + 0.1)
    out = []
    for datagram in pair.net.sent[before:]:
        if datagram.source == BOB and datagram.status is not None:
            message = sip.parse(datagram.data)
            assert isinstance(message, Response)
            if message.cseq.method == request.method and message.call_id == request.call_id:
                out.append(message)
    return out


def confirmed() -> Pair:
    pair = make_pair()
    pair.establish()
    return pair


def test_a_bye_for_an_unknown_dialog_is_answered_481_and_the_call_goes_on() -> None:
    pair = confirmed()
    assert pair.alice.dialog is not None
    [reply] = answers(pair, forge(pair.alice.dialog, "BYE", to_tag="not-bobs"), ALICE)
    assert reply.status == 481
    assert pair.bob.state is CallState.CONFIRMED


def test_a_bye_outside_any_dialog_is_answered_481() -> None:
    pair = make_pair()
    [reply] = answers(pair, outside("BYE"))
    assert reply.status == 481
    assert pair.bob.state is CallState.IDLE


def test_a_cancel_for_an_unknown_transaction_is_answered_481() -> None:
    pair = make_pair()
    [reply] = answers(pair, outside("CANCEL"))
    assert reply.status == 481


def test_a_known_method_we_do_not_serve_gets_405_with_allow() -> None:
    pair = make_pair()
    [reply] = answers(pair, outside("SUBSCRIBE"))
    assert reply.status == 405
    assert set(reply.allow) == set(pair.bob.config.allow)


def test_an_unknown_method_gets_501_in_and_out_of_dialog() -> None:
    pair = confirmed()
    [reply] = answers(pair, outside("FROBNICATE"))
    assert reply.status == 501
    assert pair.alice.dialog is not None
    [reply] = answers(pair, forge(pair.alice.dialog, "FROBNICATE"), ALICE)
    assert reply.status == 501
    assert pair.bob.state is CallState.CONFIRMED


def test_a_merged_invite_arriving_by_a_second_path_gets_482() -> None:
    pair = make_pair()
    first = outside("INVITE", branch="z9hG4bKpath1")
    second = outside("INVITE", branch="z9hG4bKpath2")  # same From tag, Call-ID, CSeq
    [trying] = answers(pair, first)
    assert trying.status == 100
    [looped] = answers(pair, second)
    assert looped.status == 482
    assert len(pair.bob_events(ev.IncomingCall)) == 1
    assert pair.bob.state is CallState.INCOMING


def test_an_out_of_order_cseq_gets_500_with_retry_after_0_to_10_seconds() -> None:
    pair = confirmed()
    dialog = pair.alice.dialog
    assert dialog is not None
    [ok] = answers(pair, forge(dialog, "INFO", cseq=10, branch="z9hG4bKi10"), ALICE)
    assert ok.status == 200
    [late] = answers(pair, forge(dialog, "INFO", cseq=9, branch="z9hG4bKi9"), ALICE)
    assert late.status == 500
    assert late.retry_after is not None and 0 <= late.retry_after.seconds <= 10
    assert len(pair.bob_events(ev.InfoReceived)) == 1


def test_stray_responses_are_dropped_without_a_trace() -> None:
    pair = confirmed()
    sent, events = len(pair.net.sent), list(pair.net.events[ALICE])
    assert pair.alice.dialog is not None
    invite = forge(pair.alice.dialog, "INVITE", branch="z9hG4bKnobody")
    for status in (180, 200, 486):
        stray = Response.for_request(invite, status, to_tag="whoever")
        pair.net.inject(bytes(stray), BOB, ALICE)
    pair.net.run(pair.net.now + 1)
    assert len(pair.net.sent) == sent + 3  # only the three injected datagrams
    assert pair.net.events[ALICE] == events
    assert pair.alice.state is CallState.CONFIRMED


def test_no_ack_for_the_2xx_in_64_t1_ends_the_call_with_a_bye() -> None:
    pair = make_pair()
    pair.net.drop("ACK", times=1000)
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    start = pair.net.now
    pair.bob.answer(start, sdp=ANSWER)
    pair.net.run(start + 40)
    times = [round(t - start, 3) for t in pair.net.sent_times("200/INVITE")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [round(t - start, 3) for t in pair.net.sent_times("BYE", BOB)] == [32.0]
    assert pair.bob_events(ev.AckTimedOut) == [ev.AckTimedOut()]  # told with the BYE
    [ended] = pair.bob_events(ev.Ended)
    assert ended.cause == "ack_timeout"
    assert pair.alice_events(ev.Ended)[0].cause == "remote_hangup"


def test_while_draining_new_invites_and_options_get_503_with_retry_after() -> None:
    pair = make_pair()
    pair.bob.draining = True
    for method in ("OPTIONS", "INVITE"):
        [reply] = [r for r in answers(pair, outside(method)) if r.status >= 200]
        assert reply.status == 503
        assert reply.retry_after is not None and reply.retry_after.seconds > 0
    assert not pair.bob_events(ev.IncomingCall)


def test_draining_lets_in_dialog_requests_through() -> None:
    pair = confirmed()
    pair.bob.draining = True
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    assert pair.net.sent_times("200/BYE")
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"


def test_options_outside_a_dialog_lists_allow_accept_and_supported() -> None:
    pair = make_pair()
    [reply] = answers(pair, outside("OPTIONS"))
    assert reply.status == 200
    assert "INVITE" in reply.allow and "BYE" in reply.allow
    assert "application/sdp" in [a.mime for a in reply.accept]
    assert "100rel" in reply.supported
    assert pair.bob.state is CallState.IDLE


def test_info_in_the_dialog_is_answered_and_reported() -> None:
    pair = confirmed()
    assert pair.alice.dialog is not None
    info = forge(
        pair.alice.dialog,
        "INFO",
        body=b"Signal=5\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
    )
    [reply] = answers(pair, info, ALICE)
    assert reply.status == 200
    [event] = pair.bob_events(ev.InfoReceived)
    assert event.content_type == "application/dtmf-relay"
    assert event.body == b"Signal=5\r\nDuration=160\r\n"


def test_a_retransmitted_info_is_answered_again_but_reported_once() -> None:
    pair = confirmed()
    assert pair.alice.dialog is not None
    info = forge(pair.alice.dialog, "INFO", body=b"Signal=1\r\n", content_type="text/plain")
    first = answers(pair, info, ALICE)
    second = answers(pair, info, ALICE)
    assert [r.status for r in first + second] == [200, 200]
    assert len(pair.bob_events(ev.InfoReceived)) == 1


def test_update_with_an_offer_is_surfaced_and_answered() -> None:
    pair = confirmed()
    assert pair.alice.dialog is not None
    update = forge(pair.alice.dialog, "UPDATE", body=OFFER, content_type="application/sdp")
    pair.net.inject(bytes(update), ALICE, BOB)
    pair.net.run(pair.net.now + 0.1)
    [offer] = pair.bob_events(ev.RemoteOffer)
    assert offer.sdp == OFFER and offer.method == "UPDATE"
    pair.bob.answer_offer(ANSWER, pair.net.now)
    pair.net.run(pair.net.now + 0.1)
    [reply] = pair.net.messages("200/UPDATE", BOB)
    assert reply.sdp == ANSWER


def test_update_without_an_offer_is_simply_accepted() -> None:
    pair = confirmed()
    assert pair.alice.dialog is not None
    [reply] = answers(pair, forge(pair.alice.dialog, "UPDATE"), ALICE)
    assert reply.status == 200
    assert not pair.bob_events(ev.RemoteOffer)


def test_options_inside_the_dialog_is_answered_200() -> None:
    pair = confirmed()
    assert pair.alice.dialog is not None
    [reply] = answers(pair, forge(pair.alice.dialog, "OPTIONS"), ALICE)
    assert reply.status == 200


def test_a_reinvite_while_another_is_unanswered_gets_500_with_retry_after() -> None:
    pair = confirmed()
    dialog = pair.alice.dialog
    assert dialog is not None
    first = forge(
        dialog, "INVITE", cseq=5, branch="z9hG4bKre1", body=OFFER, content_type="application/sdp"
    )
    answers(pair, first, ALICE)
    assert pair.bob_events(ev.RemoteOffer)
    second = forge(
        dialog, "INVITE", cseq=6, branch="z9hG4bKre2", body=OFFER, content_type="application/sdp"
    )
    [reply] = [r for r in answers(pair, second, ALICE) if r.status >= 200]
    assert reply.status == 500
    assert reply.retry_after is not None and 0 <= reply.retry_after.seconds <= 10


def test_another_call_while_busy_gets_486() -> None:
    pair = confirmed()
    [reply] = [r for r in answers(pair, outside("INVITE", call_id="second@x")) if r.status >= 200]
    assert reply.status == 486
    assert len(pair.bob_events(ev.IncomingCall)) == 1


def test_a_duplicated_invite_and_bye_are_absorbed() -> None:
    pair = make_pair()
    pair.net.duplicate("INVITE", times=1)
    pair.net.duplicate("BYE", times=1)
    pair.establish()
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    assert len(pair.bob_events(ev.IncomingCall)) == 1
    assert len(pair.bob_events(ev.Ended)) == 1
    assert len(pair.net.sent_times("200/BYE")) == 2  # the copy got the same answer
    assert pair.alice.finished and pair.bob.finished


def test_a_bye_in_the_early_dialog_ends_the_invite_with_487() -> None:
    pair = make_pair()
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    pair.bob.ring(pair.net.now, reliable=False)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ringing)))
    [invite] = pair.net.messages("INVITE", ALICE)
    [ringing] = pair.net.messages("180", BOB)
    early = Dialog.for_uac(invite, ringing)  # the caller's early dialog
    [reply] = answers(pair, forge(early, "BYE", branch="z9hG4bKearlybye"), ALICE)
    assert reply.status == 200
    assert pair.net.sent_times("487/INVITE")
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"


def test_a_cancel_after_the_200_changes_nothing() -> None:
    pair = make_pair()
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    pair.bob.ring(pair.net.now, reliable=False)
    pair.bob.answer(pair.net.now, sdp=ANSWER)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    [invite] = pair.net.messages("INVITE", ALICE)
    cancel = Request.create(
        "CANCEL",
        invite.uri,
        from_=invite.from_,
        to=invite.to,
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        via=invite.via[:1],
    )
    [reply] = answers(pair, cancel, ALICE)
    assert reply.status == 200  # the transaction exists; the CANCEL has no effect (§9.2)
    assert not pair.net.sent_times("487")
    assert pair.bob.state is CallState.CONFIRMED


def test_an_unreachable_destination_is_an_attempt_failed_by_transport() -> None:
    pair = make_pair()
    pair.dial()
    pair.alice.transport_error(BOB, pair.net.now, "ICMP port unreachable")
    pair.net.flush()
    [failed] = pair.alice_events(ev.AttemptFailed)
    assert failed.reason == "transport" and failed.destination == BOB
    pair.alice.give_up(pair.net.now)
    pair.net.flush()
    assert pair.alice_events(ev.Failed)[0].status == 503


def test_a_481_to_our_reinvite_ends_the_call() -> None:
    pair = confirmed()
    pair.bob.dialog.remote_tag = "forgotten"  # type: ignore[union-attr]  # bob lost it
    pair.alice.reinvite(OFFER, pair.net.now)
    pair.net.run(pair.net.now + 1)
    assert pair.net.sent_times("481/INVITE")
    [rejected] = pair.alice_events(ev.OfferRejected)
    assert rejected.status == 481
    assert pair.alice_events(ev.Ended)[0].cause == "dialog_gone"


def test_the_caller_answers_info_and_update_in_an_early_dialog() -> None:
    pair = make_pair()
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    pair.bob.ring(pair.net.now, reliable=False)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ringing)))
    early = pair.bob.dialog  # the callee's side of the early dialog
    assert early is not None
    requests = [
        forge(
            early,
            "INFO",
            cseq=1,
            branch="z9hG4bKe1",
            sent_by=BOB,
            body=b"Signal=9\r\n",
            content_type="application/dtmf-relay",
        ),
        forge(early, "UPDATE", cseq=2, branch="z9hG4bKe2", sent_by=BOB),
        forge(
            early,
            "UPDATE",
            cseq=3,
            branch="z9hG4bKe3",
            sent_by=BOB,
            body=ANSWER,
            content_type="application/sdp",
        ),
    ]
    for request in requests:
        pair.net.inject(bytes(request), BOB, ALICE)
    pair.net.run(pair.net.now + 0.1)
    replies = {
        r.cseq.number: r
        for d in pair.net.sent
        if d.source == ALICE
        and d.status is not None
        and isinstance(r := sip.parse(d.data), Response)
        and r.cseq.method != "INVITE"
    }
    assert replies[1].status == 200 and pair.alice_events(ev.InfoReceived)
    assert replies[2].status == 200  # a refresh without an offer
    assert replies[3].status == 500 and replies[3].retry_after is not None  # no early offers
    assert pair.alice.state is CallState.PROCEEDING
