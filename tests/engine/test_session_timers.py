"""RFC 4028 session timers between two engines, in simulated time: the negotiation, the
refreshes at half the interval, 422, a peer without the extension, and the BYE when the
refresher goes quiet."""

from __future__ import annotations

from gosipd.sip import events as ev
from gosipd.sip.session_timer import SessionTimerConfig
from gosipd.sip.ua import CallState, UAConfig

from .conftest import ANSWER, OFFER, make_pair

NO_TIMER = {"session_timer": SessionTimerConfig(interval=0)}
NO_UPDATE = tuple(m for m in UAConfig.allow if m != "UPDATE")


def established(**kwargs):
    pair = make_pair(**kwargs)
    pair.establish()
    return pair


def test_the_caller_asks_for_1800_s_and_refreshes_by_update_every_900_s():
    pair = established()
    (invite,) = pair.net.messages("INVITE")
    assert invite.headers.get("Session-Expires") == "1800"
    assert invite.headers.get("Min-SE") == "90"
    assert "timer" in invite.supported
    (ok,) = {m.headers.get("Session-Expires") for m in pair.net.messages("200/INVITE")}
    assert ok == "1800;refresher=uac"
    assert "timer" in pair.net.messages("200/INVITE")[0].require
    answered = pair.net.now

    pair.net.run(answered + 3 * 900 + 10)

    updates = pair.net.sent_times("UPDATE", source=pair.alice.config.local_address)
    assert [round(t - answered) for t in updates] == [900, 1800, 2700]
    for update in pair.net.messages("UPDATE"):
        assert update.headers.get("Session-Expires") == "1800;refresher=uac"
        assert not update.body
    assert all(
        m.headers.get("Session-Expires") == "1800;refresher=uac"
        for m in pair.net.messages("200/UPDATE")
    )
    assert pair.alice.state is pair.bob.state is CallState.CONFIRMED
    assert not pair.alice_events(ev.Ended) and not pair.bob_events(ev.Ended)


def test_a_refresher_that_goes_quiet_gets_a_bye_32_s_before_the_session_expires():
    pair = established()
    answered = pair.net.now
    pair.alice.session_timer.stop()  # alice forgets to refresh

    pair.net.run(lambda: bool(pair.bob_events(ev.Ended)), limit=4000)

    (bye,) = pair.net.sent_times("BYE", source=pair.bob.config.local_address)
    assert round(bye - answered) == 1800 - 32
    assert pair.bob_events(ev.Ended)[0].cause == "session_expired"
    pair.net.run()
    assert pair.alice_events(ev.Ended)[0].cause == "remote_hangup"


def test_a_lost_refresh_ends_the_call_when_its_transaction_times_out():
    pair = established()
    answered = pair.net.now
    pair.net.drop("UPDATE", times=100)

    pair.net.run(lambda: bool(pair.alice_events(ev.Ended)), limit=4000)

    assert pair.alice_events(ev.Ended)[0].cause == "session_expired"
    (bye,) = pair.net.sent_times("BYE", source=pair.alice.config.local_address)
    assert round(bye - answered) == 900 + 32  # Timer F, 64·T1


def test_a_422_raises_the_interval_to_the_callees_min_se():
    pair = make_pair(
        alice_config={"session_timer": SessionTimerConfig(interval=300)},
        bob_config={"session_timer": SessionTimerConfig(interval=1800, min_se=1200)},
    )
    pair.establish()

    first, second = pair.net.messages("INVITE")
    assert first.headers.get("Session-Expires") == "300"
    (refusal,) = pair.net.messages("422")
    assert refusal.headers.get("Min-SE") == "1200"
    assert second.headers.get("Session-Expires") == "1200"
    assert second.headers.get("Min-SE") == "1200"
    assert second.cseq.number == first.cseq.number + 1
    assert pair.alice.session_timer.interval == 1200 and pair.alice.session_timer.we_refresh
    answered = pair.net.now
    pair.net.run(answered + 700)
    (update,) = pair.net.sent_times("UPDATE")
    assert round(update - answered) == 600


def test_a_caller_without_the_extension_is_refreshed_by_the_callee():
    pair = established(alice_config=NO_TIMER)
    (invite,) = pair.net.messages("INVITE")
    assert "Session-Expires" not in invite.headers and "timer" not in invite.supported
    ok = pair.net.messages("200/INVITE")[0]
    assert ok.headers.get("Session-Expires") == "1800;refresher=uas"
    assert "timer" not in ok.require  # it cannot be required of a peer that lacks it
    answered = pair.net.now

    pair.net.run(answered + 1000)

    (update,) = pair.net.sent_times("UPDATE", source=pair.bob.config.local_address)
    assert round(update - answered) == 900
    assert pair.net.messages("200/UPDATE")
    assert pair.alice.state is CallState.CONFIRMED


def test_a_peer_without_update_is_refreshed_by_reinvite_with_the_sdp_it_holds():
    pair = established(alice_config={**NO_TIMER, "allow": NO_UPDATE})
    answered = pair.net.now

    for refresh in (1, 2):  # alice's 200s carry no Session-Expires: bob goes on anyway
        pair.net.run(lambda n=refresh: len(pair.alice_events(ev.RemoteOffer)) == n, limit=1000)
        offer = pair.alice_events(ev.RemoteOffer)[-1]
        assert offer.sdp == ANSWER  # what bob answered before, unchanged
        pair.alice.answer_offer(OFFER, pair.net.now)
        pair.net.run(pair.net.now + 10)

    reinvites = pair.net.sent_times("INVITE", source=pair.bob.config.local_address)
    assert [round(t - answered) for t in reinvites] == [900, 1800]
    assert pair.net.messages("ACK", source=pair.bob.config.local_address)
    # a refresh is not an offer the call asked for: nothing to report to bob's call
    assert not pair.bob_events(ev.OfferAnswered) and not pair.bob_events(ev.OfferRejected)
    assert pair.bob.session_timer.interval == 1800 and pair.bob.session_timer.we_refresh
    assert not pair.net.sent_times("UPDATE")


def test_a_refresh_asking_for_less_than_our_min_se_gets_422():
    pair = established(bob_config={"session_timer": SessionTimerConfig(min_se=600)})
    pair.alice.session_timer.interval = 120  # a peer that shortens the session mid-call
    pair.alice.session_timer._min_se = 90
    pair.net.run(lambda: bool(pair.net.messages("422")), limit=1000)

    (refusal,) = pair.net.messages("422")
    assert refusal.cseq.method == "UPDATE" and refusal.headers.get("Min-SE") == "600"
    assert pair.bob.state is CallState.CONFIRMED


def test_with_timers_off_nothing_is_claimed_or_refreshed():
    pair = established(alice_config=NO_TIMER, bob_config=NO_TIMER)
    invite, ok = pair.net.messages("INVITE")[0], pair.net.messages("200/INVITE")[0]
    for message in (invite, ok):
        assert "Session-Expires" not in message.headers and "timer" not in message.supported
    pair.net.run(pair.net.now + 4000)
    assert not pair.net.sent_times("UPDATE") and pair.alice.state is CallState.CONFIRMED
