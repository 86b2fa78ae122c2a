"""RFC 3262 reliable provisionals both ways: RSeq/RAck, PRACK, lost PRACKs and lost
provisionals, retransmissions absorbed, the 2xx held for the PRACK of an offer, and the
PRACK timeout."""

from __future__ import annotations

from gosipd import sip
from gosipd.sip import RAck, Request, Response
from gosipd.sip import events as ev
from gosipd.sip.ua import CallState

from .conftest import ALICE, ANSWER, BOB, Pair, make_pair


def called(pair: Pair, **dial: object) -> None:
    pair.dial(**dial)
    pair.net.run(lambda: bool(pair.bob_events(ev.IncomingCall)))


def test_a_reliable_180_is_pracked_with_its_rseq_and_cseq() -> None:
    pair = make_pair()
    called(pair)
    pair.bob.ring(pair.net.now)
    pair.net.run(pair.net.now + 1)
    [ringing] = pair.net.messages("180", BOB)
    assert isinstance(ringing, Response)
    assert "100rel" in ringing.require and ringing.rseq is not None
    [prack] = pair.net.messages("PRACK", ALICE)
    assert isinstance(prack, Request)
    assert prack.rack == RAck(ringing.rseq, ringing.cseq.number, "INVITE")
    assert prack.to.tag == ringing.to.tag and prack.call_id == ringing.call_id
    assert pair.net.messages("200/PRACK", BOB)
    [event] = pair.alice_events(ev.Ringing)
    assert event.reliable and event.status == 180
    # PRACKed: no retransmission of the 180
    assert len(pair.net.sent_times("180")) == 1


def test_a_lost_prack_is_retransmitted_by_its_transaction_and_the_180_absorbed() -> None:
    pair = make_pair()
    pair.net.drop("PRACK", times=1)
    called(pair)
    start = pair.net.now
    pair.bob.ring(start)
    pair.net.run(start + 2)
    # the UAS resends the 180 at T1; the UAC does not PRACK the copy (same RSeq)...
    assert [round(t - start, 3) for t in pair.net.sent_times("180")] == [0.0, 0.5]
    pracks = [d for d in pair.net.sent if d.is_("PRACK")]
    # ...because its PRACK transaction retransmits by itself at T1 (Timer E)
    assert [round(d.sent_at - start, 3) for d in pracks] == [0.01, 0.51]
    assert pracks[0].data == pracks[1].data
    assert len(pair.alice_events(ev.Ringing)) == 1
    assert len(pair.net.sent_times("200/PRACK")) == 1


def test_a_lost_reliable_provisional_is_resent_until_pracked() -> None:
    pair = make_pair()
    pair.net.drop("183", times=2)
    called(pair)
    start = pair.net.now
    pair.bob.ring(start, status=183, sdp=ANSWER)
    pair.net.run(start + 5)
    assert [round(t - start, 3) for t in pair.net.sent_times("183")] == [0.0, 0.5, 1.5]
    assert [round(t - start, 3) for t in pair.net.sent_times("PRACK")] == [1.51]
    [early] = pair.alice_events(ev.EarlyMedia)
    assert early.sdp == ANSWER and early.reliable


def test_without_a_prack_the_provisional_is_resent_doubling_then_the_invite_fails_504() -> None:
    pair = make_pair()
    pair.net.drop("PRACK", times=1000)
    called(pair)
    start = pair.net.now
    pair.bob.ring(start)
    pair.net.run(start + 40)
    times = [round(t - start, 3) for t in pair.net.sent_times("180")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # T1 doubling, no T2 cap
    assert [round(t - start, 3) for t in pair.net.sent_times("504")] == [32.0]
    assert pair.bob_events(ev.Ended)[0].cause == "prack_timeout"
    [failed] = pair.alice_events(ev.Failed)
    assert failed.status == 504
    assert pair.alice.state is CallState.TERMINATED


def test_the_2xx_waits_for_the_prack_of_the_offer_carrying_183() -> None:
    pair = make_pair()
    pair.net.drop("PRACK", times=3)
    called(pair)
    pair.bob.ring(pair.net.now, status=183, sdp=ANSWER)
    pair.bob.answer(pair.net.now, sdp=ANSWER)  # the app answers at once
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pracks = pair.net.sent_times("PRACK")
    assert len(pracks) == 4  # three lost, the fourth arrives
    [ok] = pair.net.sent_times("200/INVITE")
    assert ok == pracks[-1] + pair.net.latency  # the moment the PRACK arrived
    assert pair.alice_events(ev.Answered)[0].sdp == ANSWER


def test_a_second_reliable_provisional_waits_for_the_first_prack_and_counts_up() -> None:
    pair = make_pair()
    called(pair)
    pair.bob.ring(pair.net.now, status=180)
    pair.bob.ring(pair.net.now, status=183, sdp=ANSWER)
    pair.net.run(pair.net.now + 1)
    ringing, progress = (
        pair.net.messages("180", BOB)[0],
        pair.net.messages("183", BOB)[0],
    )
    assert progress.rseq == ringing.rseq + 1
    [sent_180] = pair.net.sent_times("180")
    [sent_183] = pair.net.sent_times("183")
    [first_prack_done] = pair.net.sent_times("200/PRACK")[:1]
    assert sent_180 < first_prack_done <= sent_183
    racks = [m.rack.rseq for m in pair.net.messages("PRACK", ALICE)]
    assert racks == [ringing.rseq, progress.rseq]


def test_an_out_of_order_rseq_is_neither_pracked_nor_reported() -> None:
    pair = make_pair()
    called(pair)
    pair.bob.ring(pair.net.now)
    pair.net.run(pair.net.now + 1)
    [ringing] = pair.net.messages("180", BOB)
    skipped = ringing.copy()
    skipped.status, skipped.reason = 183, "Session Progress"
    skipped.rseq = ringing.rseq + 2
    pair.net.inject(bytes(skipped), BOB, ALICE)
    pair.net.run(pair.net.now + 1)
    assert len(pair.net.messages("PRACK", ALICE)) == 1
    assert not pair.alice_events(ev.EarlyMedia) and len(pair.alice_events(ev.Ringing)) == 1
    in_order = skipped.copy()
    in_order.rseq = ringing.rseq + 1
    pair.net.inject(bytes(in_order), BOB, ALICE)
    pair.net.run(pair.net.now + 1)
    assert [m.rack.rseq for m in pair.net.messages("PRACK", ALICE)] == [
        ringing.rseq,
        ringing.rseq + 1,
    ]


def test_a_prack_for_no_pending_provisional_gets_481() -> None:
    pair = make_pair()
    called(pair)
    pair.bob.ring(pair.net.now)
    pair.net.run(pair.net.now + 1)
    [prack] = pair.net.messages("PRACK", ALICE)
    assert isinstance(prack, Request)
    stale = prack.copy()
    stale.cseq = sip.CSeq(prack.cseq.number + 1, "PRACK")
    stale.via = [prack.via[0].with_params(branch="z9hG4bKstale")]
    pair.net.inject(bytes(stale), ALICE, BOB)
    pair.net.run(pair.net.now + 1)
    assert pair.net.messages("481/PRACK", BOB)


def test_no_reliable_provisional_for_a_caller_without_100rel() -> None:
    pair = make_pair(alice_config={"supported": ()})
    called(pair)
    pair.bob.ring(pair.net.now)
    pair.net.run(pair.net.now + 1)
    [ringing] = pair.net.messages("180", BOB)
    assert "100rel" not in ringing.require and ringing.rseq is None
    assert not pair.net.sent_times("PRACK")
    assert pair.alice_events(ev.Ringing)[0].reliable is False


def test_a_caller_that_requires_100rel_gets_it_even_when_not_preferred() -> None:
    pair = make_pair(bob_config={"reliable_provisionals": False})
    called(pair, headers=[("Require", "100rel")])
    pair.bob.ring(pair.net.now)
    pair.net.run(pair.net.now + 1)
    [ringing] = pair.net.messages("180", BOB)
    assert "100rel" in ringing.require
    assert pair.net.sent_times("PRACK")
