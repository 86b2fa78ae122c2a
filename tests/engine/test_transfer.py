"""Blind transfer as the transferor (RFC 3515), in simulated time: alice REFERs bob to
carol; the test plays bob's side of the REFER (202, then NOTIFYs with sipfrag bodies),
as bob's engine does not accept transfers."""

from __future__ import annotations

import pytest

from gosipd.sip import URI, Request, Response, Via
from gosipd.sip import events as ev
from gosipd.sip.transaction import ProtocolError
from gosipd.sip.transfer import TRANSFER_TIMEOUT
from gosipd.sip.ua import CallState

from .conftest import ALICE, BOB, make_pair

CAROL = URI.parse("sip:carol@192.0.2.30")


def transferring(*, answer: int = 202):
    """An established call whose REFER to bob is answered ``answer`` by the test."""
    pair = make_pair()
    pair.establish()
    pair.net.drop("REFER", times=100)  # bob's engine never sees it: the test answers
    pair.alice.transfer(CAROL, pair.net.now)
    pair.net.flush()
    refer = pair.net.messages("REFER")[-1]
    assert isinstance(refer, Request)
    reply = Response.for_request(refer, answer)
    pair.net.inject(bytes(reply), BOB, ALICE)
    pair.net.run(pair.net.now + 0.1)
    return pair, refer


def notify(
    pair,
    refer: Request,
    frag: bytes,
    *,
    state: str = "active",
    cseq: int = 100,
    event: str = "refer",
):
    request = Request.create(
        "NOTIFY",
        refer.contact[0].uri,
        from_=refer.to,
        to=refer.from_,
        call_id=refer.call_id,
        cseq=cseq,
        via=Via("UDP", *BOB, branch=f"z9hG4bKnotify{cseq}"),
        contact=pair.bob._contact(),
        headers=[("Event", event), ("Subscription-State", state)],
        body=frag,
        content_type="message/sipfrag;version=2.0",
    )
    pair.net.inject(bytes(request), BOB, ALICE)
    pair.net.run(pair.net.now + 0.1)
    (answer,) = [
        r
        for r in pair.net.messages("200/NOTIFY")
        + pair.net.messages("481")
        + pair.net.messages("489")
        if r.cseq.number == cseq
    ]
    return answer


def test_a_transfer_answered_by_the_target_is_reported_step_by_step():
    pair, refer = transferring()

    assert str(refer.headers.get("Refer-To")) == f"<{CAROL}>"
    assert refer.headers.get("Referred-By") == f"<sip:alice@{ALICE[0]}>"
    assert refer.contact and refer.cseq.method == "REFER"
    (accepted,) = pair.alice_events(ev.TransferAccepted)
    assert accepted.status == 202

    assert notify(pair, refer, b"SIP/2.0 100 Trying\r\n", cseq=100).status == 200
    assert notify(pair, refer, b"SIP/2.0 180 Ringing\r\n", cseq=101).status == 200
    final = notify(
        pair, refer, b"SIP/2.0 200 OK\r\n", state="terminated;reason=noresource", cseq=102
    )
    assert final.status == 200

    assert [p.status for p in pair.alice_events(ev.TransferProgress)] == [100, 180]
    (succeeded,) = pair.alice_events(ev.TransferSucceeded)
    assert succeeded.status == 200
    assert not pair.alice_events(ev.TransferFailed)
    assert pair.alice.state is CallState.CONFIRMED  # hanging up is the call's to decide


def test_a_target_that_is_busy_fails_the_transfer_and_the_call_goes_on():
    pair, refer = transferring()

    notify(pair, refer, b"SIP/2.0 486 Busy Here\r\n", state="terminated", cseq=100)

    (failed,) = pair.alice_events(ev.TransferFailed)
    assert (failed.status, failed.reason) == (486, "Busy Here")
    assert pair.alice.state is CallState.CONFIRMED
    pair.alice.transfer(CAROL, pair.net.now)  # another attempt may follow


def test_a_refused_refer_fails_the_transfer():
    pair, _ = transferring(answer=603)

    (failed,) = pair.alice_events(ev.TransferFailed)
    assert failed.status == 603
    assert not pair.alice_events(ev.TransferAccepted)


def test_a_transfer_whose_outcome_never_comes_fails_after_the_timeout():
    pair, refer = transferring()
    notify(pair, refer, b"SIP/2.0 100 Trying\r\n")
    start = pair.net.now

    pair.net.run(start + TRANSFER_TIMEOUT + 1)

    (failed,) = pair.alice_events(ev.TransferFailed)
    assert failed.status is None and "no outcome" in failed.reason


def test_a_subscription_ended_without_an_outcome_is_a_failure():
    pair, refer = transferring()

    notify(pair, refer, b"", state="terminated;reason=timeout")

    (failed,) = pair.alice_events(ev.TransferFailed)
    assert failed.status is None and failed.reason == "timeout"


def test_notifies_for_other_events_or_no_subscription_are_refused():
    pair, refer = transferring()
    notify(pair, refer, b"SIP/2.0 200 OK\r\n", state="terminated", cseq=100)

    late = notify(pair, refer, b"SIP/2.0 200 OK\r\n", state="terminated", cseq=101)
    assert late.status == 481
    presence = notify(pair, refer, b"", event="presence", cseq=102)
    assert presence.status == 489
    assert [r.status for r in pair.net.messages("489")] == [489]


def test_a_transfer_needs_an_answered_call_and_only_one_at_a_time():
    pair, _ = transferring()
    with pytest.raises(ProtocolError, match="already in progress"):
        pair.alice.transfer(CAROL, pair.net.now)


def test_a_refer_to_us_is_refused_we_do_not_accept_transfers():
    pair = make_pair()
    pair.establish()

    pair.bob.transfer(URI.parse("sip:mallory@198.51.100.1"), pair.net.now)
    pair.net.run(pair.net.now + 1)

    (refused,) = pair.net.messages("405")
    assert refused.cseq.method == "REFER"
    (failed,) = pair.bob_events(ev.TransferFailed)
    assert failed.status == 405
    assert pair.alice.state is CallState.CONFIRMED
