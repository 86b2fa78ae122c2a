"""Whole calls between a UAC and a UAS engine, in memory, with simulated time."""

from __future__ import annotations

import json

from gosipd.sip import Via
from gosipd.sip import events as ev
from gosipd.sip.dialog import PUBLISHED_KEYS
from gosipd.sip.requests import bye_from_state
from gosipd.sip.ua import CallState

from .conftest import ALICE, ANSWER, BOB, OFFER, PROXY, make_pair
from .proxy import Proxy


def answer_when_called(pair, *, ring: bool = True, sdp: bytes = ANSWER) -> None:
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    if ring:
        pair.bob.ring(pair.net.now)
    pair.bob.answer(pair.net.now, sdp=sdp)


def test_a_call_is_answered_acked_and_hung_up(pair):
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    [answered] = pair.alice_events(ev.Answered)
    assert answered.sdp == ANSWER
    [incoming] = pair.bob_events(ev.IncomingCall)
    assert incoming.sdp == OFFER
    assert pair.alice.state is CallState.CONFIRMED
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    assert pair.alice_events(ev.Ended)[0].cause == "local_hangup"
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"
    assert pair.alice.finished and pair.bob.finished


def test_the_side_that_hung_up_is_quiet_at_once_the_other_only_after_timer_j(pair):
    """``quiet`` lets a process exit without lingering: our BYE answered, nothing can
    send again (Timer K only absorbs responses); a BYE we answered may come again."""
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.alice.hangup(pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ended)))
    assert pair.alice.quiet and not pair.alice.finished  # Timer K still runs
    assert pair.bob_events(ev.Ended) and not pair.bob.quiet  # Timer J: the BYE may return
    pair.net.run()
    assert pair.bob.quiet and pair.bob.finished


def test_a_bye_still_unanswered_is_not_quiet(pair):
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.net.drop("BYE", times=100)  # it never arrives
    pair.alice.hangup(pair.net.now)
    pair.net.run(pair.net.now + 1.0)
    assert not pair.alice.quiet  # the BYE is still being retransmitted


def test_invite_retransmissions_follow_timer_a_until_timer_b():
    pair = make_pair()
    pair.net.drop("INVITE", times=100)
    pair.dial()
    pair.net.run(40.0)
    assert pair.net.sent_times("INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    [failed] = pair.alice_events(ev.AttemptFailed)
    assert failed.reason == "timeout"
    assert failed.destination == ("192.0.2.20", 5062)
    assert pair.alice.state is CallState.WAITING
    pair.alice.give_up(pair.net.now)
    pair.net.flush()
    assert pair.alice_events(ev.Failed)[0].status == 408
    assert pair.alice_events(ev.Ended)[0].cause == "failed"


def test_a_lost_200_is_retransmitted_at_t1_doubling_until_the_ack():
    pair = make_pair(bob_config={"reliable_provisionals": False})
    pair.net.drop("200/INVITE", times=3)
    pair.dial()
    answer_when_called(pair, ring=False)
    answered_at = pair.net.now
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    times = [round(t - answered_at, 3) for t in pair.net.sent_times("200/INVITE")]
    assert times == [0.0, 0.5, 1.5, 3.5]
    assert len(pair.alice_events(ev.Answered)) == 1
    assert len(pair.net.sent_times("ACK")) == 1


def test_a_lost_ack_gets_the_2xx_again_and_the_same_ack_in_reply():
    pair = make_pair()
    pair.net.drop("ACK", times=1)
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    acks = [d.data for d in pair.net.sent if d.is_("ACK")]
    assert len(acks) == 2 and acks[0] == acks[1]
    assert len(pair.alice_events(ev.Answered)) == 1
    assert len(pair.bob_events(ev.AckReceived)) == 1


def test_calls_complete_under_ten_percent_loss():
    completed = 0
    for seed in range(40):
        pair = make_pair(seed, loss=0.10, jitter=0.02)
        pair.dial()
        pair.net.run(lambda p=pair: bool(p.bob_events(ev.IncomingCall)), limit=60)
        if not pair.bob_events(ev.IncomingCall):
            continue
        pair.bob.ring(pair.net.now)
        pair.bob.answer(pair.net.now, sdp=ANSWER)
        pair.net.run(lambda p=pair: p.bob.state is CallState.CONFIRMED, limit=60)
        pair.alice.hangup(pair.net.now)
        pair.net.run(limit=120)
        if pair.alice_events(ev.Ended) and pair.bob_events(ev.Ended):
            assert pair.alice_events(ev.Ended)[0].cause == "local_hangup"
            assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"
            completed += 1
    assert completed == 40


def test_cancel_before_any_provisional_waits_for_one():
    pair = make_pair()
    pair.net.drop("100", times=1)
    pair.net.delay("INVITE", 0.3)
    pair.dial()
    pair.alice.cancel(pair.net.now)
    pair.net.run(0.2)
    assert not pair.net.sent_times("CANCEL")  # §9.1: not before a provisional
    pair.net.run(lambda: bool(pair.alice_events(ev.Ended)))
    assert pair.net.sent_times("CANCEL")
    assert pair.alice_events(ev.Failed)[0].status == 487
    assert pair.alice_events(ev.Ended)[0].cause == "cancelled"
    assert pair.bob_events(ev.CancelReceived)


def test_cancel_while_ringing_gets_200_and_487():
    pair = make_pair()
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    pair.bob.ring(pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ringing)))
    pair.alice.cancel(pair.net.now)
    pair.net.run()
    assert pair.net.sent_times("200/CANCEL")
    assert pair.net.sent_times("487/INVITE")
    assert pair.net.sent_times("ACK")  # the 487 is ACKed inside the transaction
    assert pair.bob_events(ev.Ended)[0].cause == "cancelled"
    assert pair.alice_events(ev.Ended)[0].cause == "cancelled"
    assert pair.alice.finished and pair.bob.finished


def test_cancel_racing_the_200_ends_with_ack_and_bye():
    pair = make_pair(bob_config={"reliable_provisionals": False})
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    pair.bob.ring(pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ringing)))
    pair.alice.cancel(pair.net.now)
    pair.bob.answer(pair.net.now, sdp=ANSWER)  # the 200 crosses the CANCEL
    pair.net.run()
    assert pair.net.sent_times("ACK")
    assert pair.net.sent_times("BYE", source=("192.0.2.10", 5060))
    assert pair.alice_events(ev.Ended)[0].cause == "cancelled"
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"


def test_remote_bye_ends_the_call_for_both():
    pair = make_pair()
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.bob.hangup(pair.net.now)
    pair.net.run()
    assert pair.alice_events(ev.Ended)[0].cause == "remote_hangup"
    assert pair.bob_events(ev.Ended)[0].cause == "local_hangup"


def test_reinvite_from_either_side_is_offered_answered_and_acked():
    pair = make_pair()
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    hold = OFFER.replace(b"t=0 0", b"t=0 0\r\na=sendonly")
    pair.alice.reinvite(hold, pair.net.now)
    pair.net.run(lambda: bool(pair.bob_events(ev.RemoteOffer)))
    assert pair.bob_events(ev.RemoteOffer)[0].sdp == hold
    pair.bob.answer_offer(ANSWER, pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.OfferAnswered)))
    assert pair.alice_events(ev.OfferAnswered)[0].sdp == ANSWER
    pair.net.run(2.0)
    # and the other way
    pair.bob.reinvite(ANSWER, pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.RemoteOffer)))
    pair.alice.answer_offer(OFFER, pair.net.now)
    pair.net.run(lambda: bool(pair.bob_events(ev.OfferAnswered)))
    assert pair.bob_events(ev.OfferAnswered)[0].sdp == OFFER
    assert pair.alice.state is CallState.CONFIRMED and pair.bob.state is CallState.CONFIRMED


def test_glare_is_answered_491_and_retried_after_the_back_off():
    pair = make_pair()
    pair.dial()
    answer_when_called(pair)
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.net.run(pair.net.now + 1)
    start = pair.net.now
    pair.alice.reinvite(OFFER, start)
    pair.bob.reinvite(ANSWER, start)
    pair.net.run(start + 0.1)
    assert len(pair.net.sent_times("491")) == 2
    answered = {"alice": 0, "bob": 0}
    for _ in range(2):  # each side's retry arrives at the other, which answers it
        pair.net.run(
            lambda: (
                len(pair.alice_events(ev.RemoteOffer)) > answered["alice"]
                or len(pair.bob_events(ev.RemoteOffer)) > answered["bob"]
            ),
            limit=10,
        )
        if len(pair.bob_events(ev.RemoteOffer)) > answered["bob"]:
            pair.bob.answer_offer(ANSWER, pair.net.now)
            answered["bob"] += 1
        if len(pair.alice_events(ev.RemoteOffer)) > answered["alice"]:
            pair.alice.answer_offer(OFFER, pair.net.now)
            answered["alice"] += 1
        pair.net.run(pair.net.now + 0.1)
    assert answered == {"alice": 1, "bob": 1}
    pair.net.run(start + 10)
    alice_sent = pair.net.sent_times("INVITE", ("192.0.2.10", 5060))
    bob_sent = pair.net.sent_times("INVITE", ("192.0.2.20", 5062))
    # the Call-ID owner (alice) waits 2.1-4 s, the other 0-2 s (RFC 3261 §14.1)
    assert [t for t in alice_sent if t >= start] == [start, alice_sent[-1]]
    assert 2.1 <= alice_sent[-1] - start <= 4.0 + 0.02
    assert 0.0 <= bob_sent[-1] - start <= 2.0 + 0.02
    assert len(pair.alice_events(ev.OfferAnswered)) == 1
    assert len(pair.bob_events(ev.OfferAnswered)) == 1


def test_a_cancel_left_without_final_response_ends_the_attempt_after_64_t1():
    pair = make_pair()
    pair.net.drop("487", times=1000)
    pair.dial()
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))
    pair.bob.ring(pair.net.now, reliable=False)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ringing)))
    start = pair.net.now
    pair.alice.cancel(start)
    pair.net.run(lambda: bool(pair.alice_events(ev.Ended)), limit=60)
    assert pair.net.sent_times("200/CANCEL")
    assert round(pair.net.now - start, 3) == 32.0  # §9.1: 64·T1 after the CANCEL
    assert pair.alice_events(ev.Failed)[0].status == 487
    assert pair.alice_events(ev.Ended)[0].cause == "cancelled"


def test_a_callee_hanging_up_before_the_ack_sends_its_bye_after_it():
    pair = make_pair()
    pair.net.delay("ACK", 1.0)
    pair.dial()
    pair.answer_when_called(ring=False)
    pair.bob.hangup(pair.net.now)  # §15: no BYE before the ACK
    pair.net.run()
    # the delayed ACK is overtaken by the one answering the 2xx sent again at T1
    _, again = pair.net.sent_times("ACK")
    [bye] = pair.net.sent_times("BYE")
    assert bye == again + pair.net.latency  # the moment an ACK arrived, not before
    kinds = [type(e) for e in pair.bob_events(ev.Event)]
    assert kinds.index(ev.AckReceived) < kinds.index(ev.Ended)
    assert pair.bob_events(ev.Ended)[0].cause == "local_hangup"
    assert pair.alice_events(ev.Ended)[0].cause == "remote_hangup"


def test_published_dialog_state_is_json_and_a_bye_built_from_it_ends_the_call():
    pair = make_pair()
    pair.net.add(PROXY, Proxy(PROXY, targets=[BOB]))
    pair.establish(to=PROXY, via=PROXY)
    assert pair.alice.dialog is not None
    state = json.loads(json.dumps(pair.alice.dialog.published_state()))
    assert tuple(state) == PUBLISHED_KEYS
    assert state["route_set"] == ["<sip:192.0.2.5:5060;lr>"]
    # the worker is gone; a supervisor sends the BYE from the published state
    bye = bye_from_state(state, Via("UDP", "192.0.2.10", 5999, branch="z9hG4bKsuper"))
    assert bye.cseq.number == state["local_seq"] + 1
    pair.net.inject(bytes(bye), ("192.0.2.10", 5999), PROXY)
    pair.net.run()
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"
    [ok] = [d for d in pair.net.sent if d.is_("200/BYE") and d.source == PROXY]
    assert ok.destination == ("192.0.2.10", 5999)


def test_each_2xx_is_reacked_with_its_own_ack_after_a_reinvite():
    pair = make_pair()
    pair.establish()
    pair.alice.reinvite(OFFER, pair.net.now)
    pair.net.run(lambda: bool(pair.bob_events(ev.RemoteOffer)))
    pair.bob.answer_offer(ANSWER, pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.OfferAnswered)))
    first_ok, second_ok = [d.data for d in pair.net.sent if d.is_("200/INVITE")]
    first_ack, second_ack = [d.data for d in pair.net.sent if d.is_("ACK")]
    for ok, ack in ((first_ok, first_ack), (second_ok, second_ack)):
        before = len(pair.net.sent)
        pair.net.inject(ok, BOB, ALICE)  # a late retransmission of that 2xx
        pair.net.run(pair.net.now + 0.1)
        [again] = [d.data for d in pair.net.sent[before:] if d.is_("ACK")]
        assert again == ack
    assert len(pair.alice_events(ev.Answered)) == 1
    assert len(pair.alice_events(ev.OfferAnswered)) == 1
