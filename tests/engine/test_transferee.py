"""Transfer as the transferee (RFC 3515), in simulated time: bob (our transferor engine)
REFERs alice (which accepts transfers) to carol; alice reports her call to carol in
NOTIFYs, and bob's engine reads them, over a network that drops and duplicates."""

from __future__ import annotations

import pytest

from gosipd.sip import URI, Request, Response, Via
from gosipd.sip import events as ev
from gosipd.sip.transaction import ProtocolError
from gosipd.sip.ua import CallState

from .conftest import ALICE, BOB, Pair, make_pair

CAROL = URI.parse("sip:carol@192.0.2.30")


def referred(**network: object) -> tuple[Pair, ev.ReferReceived]:
    """An established call (alice called bob) that bob transfers; alice has the REFER."""
    pair = make_pair(alice_config={"accept_refer": True}, **network)  # type: ignore[arg-type]
    pair.establish()
    pair.bob.transfer(CAROL, pair.net.now)
    pair.net.run(lambda: bool(pair.alice_events(ev.ReferReceived)))
    (refer,) = pair.alice_events(ev.ReferReceived)
    return pair, refer


def notifies(pair: Pair) -> list[Request]:
    return [m for m in pair.net.messages("NOTIFY", ALICE) if isinstance(m, Request)]


def test_a_transfer_we_follow_is_reported_to_the_transferor_step_by_step():
    pair, refer = referred()
    assert refer.target == CAROL and refer.replaces is None
    assert refer.referred_by == f"<sip:bob@{BOB[0]}:{BOB[1]}>"

    pair.alice.accept_refer(pair.net.now)
    pair.net.run(pair.net.now + 1)
    pair.alice.notify_refer(180, "Ringing", pair.net.now)
    pair.net.run(pair.net.now + 1)
    pair.alice.notify_refer(200, "OK", pair.net.now)
    pair.net.run(pair.net.now + 1)

    (accepted,) = pair.bob_events(ev.TransferAccepted)
    assert accepted.status == 202
    assert [p.status for p in pair.bob_events(ev.TransferProgress)] == [100, 180]
    (succeeded,) = pair.bob_events(ev.TransferSucceeded)
    assert succeeded.status == 200
    sent = notifies(pair)
    assert [n.body for n in sent] == [
        b"SIP/2.0 100 Trying\r\n",
        b"SIP/2.0 180 Ringing\r\n",
        b"SIP/2.0 200 OK\r\n",
    ]
    assert sent[0].headers.get("Subscription-State", "").startswith("active;expires=")
    assert sent[-1].headers.get("Subscription-State") == "terminated;reason=noresource"
    (refer_request,) = pair.net.messages("REFER", BOB)
    assert {n.headers.get("Event") for n in sent} == {f"refer;id={refer_request.cseq.number}"}
    assert all(n.contact for n in sent)
    # nothing more to say: a later report sends nothing
    pair.alice.notify_refer(200, "OK", pair.net.now)
    pair.net.run(pair.net.now + 1)
    assert len(notifies(pair)) == 3


def test_notifies_are_retransmitted_through_loss_and_duplicates_are_absorbed():
    pair, _ = referred()
    pair.net.drop("NOTIFY", times=2)
    pair.net.duplicate("200/NOTIFY", times=2)

    pair.alice.accept_refer(pair.net.now)
    pair.net.run(pair.net.now + 2)
    pair.alice.notify_refer(200, "OK", pair.net.now)
    pair.net.run(pair.net.now + 5)

    assert [p.status for p in pair.bob_events(ev.TransferProgress)] == [100]
    assert len(pair.bob_events(ev.TransferSucceeded)) == 1
    assert pair.alice.state is CallState.CONFIRMED is pair.bob.state


def test_a_target_that_fails_fails_the_transfer_and_the_call_goes_on():
    pair, _ = referred()
    pair.alice.accept_refer(pair.net.now)
    pair.alice.notify_refer(486, "Busy Here", pair.net.now)
    pair.net.run(pair.net.now + 1)

    (failed,) = pair.bob_events(ev.TransferFailed)
    assert (failed.status, failed.reason) == (486, "Busy Here")
    assert pair.alice.state is CallState.CONFIRMED is pair.bob.state
    pair.bob.transfer(CAROL, pair.net.now)  # the next attempt is heard
    pair.net.run(pair.net.now + 1)
    assert len(pair.alice_events(ev.ReferReceived)) == 2


def test_a_refused_refer_fails_the_transfer():
    pair, _ = referred()

    pair.alice.refuse_refer(pair.net.now, 603, "Declined")
    pair.net.run(pair.net.now + 1)

    (failed,) = pair.bob_events(ev.TransferFailed)
    assert failed.status == 603
    assert not notifies(pair)
    with pytest.raises(ProtocolError):
        pair.alice.accept_refer(pair.net.now)


def test_a_second_refer_while_one_is_followed_is_refused():
    pair, _ = referred()
    pair.alice.accept_refer(pair.net.now)
    pair.net.run(pair.net.now + 1)

    inject_refer(pair, [("Refer-To", "<sip:dave@192.0.2.40>")], cseq=50)

    assert refusal(pair, 50) == (403, "A Transfer Is Already in Progress")
    assert len(pair.alice_events(ev.ReferReceived)) == 1


def test_refer_is_in_our_allow_only_when_we_accept_it():
    pair = make_pair()
    pair.establish()
    invite = pair.net.messages("INVITE")[0]
    assert "REFER" not in allowed(invite)

    accepting = make_pair(alice_config={"accept_refer": True})
    accepting.establish()
    invite = accepting.net.messages("INVITE")[0]
    assert "REFER" in allowed(invite)


def allowed(message: Request | Response) -> list[str]:
    return [m.strip() for f in message.headers.fields("Allow") for m in f.split(",")]


def inject_refer(pair: Pair, headers: list[tuple[str, str]], *, cseq: int) -> None:
    """A REFER from bob in the call's dialog, with ``headers`` as written."""
    dialog = pair.bob.dialog
    assert dialog is not None
    request = Request.create(
        "REFER",
        dialog.remote_target,
        from_=dialog.local_party,
        to=dialog.remote_party,
        call_id=dialog.call_id,
        cseq=cseq,
        via=Via("UDP", *BOB, branch=f"z9hG4bKrefer{cseq}"),
        contact=pair.bob._contact(),
        headers=headers,
    )
    pair.net.inject(bytes(request), BOB, ALICE)
    pair.net.run(pair.net.now + 0.5)


def refusal(pair: Pair, cseq: int) -> tuple[int, str]:
    """Alice's final answer to the REFER numbered ``cseq``."""
    (answer,) = [
        r
        for r in pair.net.messages("/REFER", ALICE)
        if isinstance(r, Response) and r.status >= 200 and r.cseq.number == cseq
    ]
    return answer.status, answer.reason


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 400),
        ([("Refer-To", "<sip:a@192.0.2.40>"), ("Refer-To", "<sip:b@192.0.2.41>")], 400),
        ([("Refer-To", "<sip:a@192.0.2.40>, <sip:b@192.0.2.41>")], 400),
        ([("Refer-To", "<tel:+15551234567>")], 416),
        ([("Refer-To", "<http://example.com/>")], 416),
        ([("Refer-To", "<<sip:a@")], 400),
    ],
)
def test_a_refer_without_one_usable_target_is_refused_with_the_reason(headers, status):
    pair = make_pair(alice_config={"accept_refer": True})
    pair.establish()

    inject_refer(pair, headers, cseq=60)

    assert refusal(pair, 60)[0] == status
    assert not pair.alice_events(ev.ReferReceived)
    assert pair.alice.state is CallState.CONFIRMED


def test_only_replaces_survives_of_the_target_uri_headers():
    pair = make_pair(alice_config={"accept_refer": True})
    pair.establish()

    inject_refer(
        pair,
        [
            (
                "Refer-To",
                "<sip:carol@192.0.2.30?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2"
                "&X-Evil=1&Route=%3Csip:198.51.100.9%3E>",
            ),
            ("Referred-By", "<sip:bob@192.0.2.20>"),
        ],
        cseq=61,
    )

    (refer,) = pair.alice_events(ev.ReferReceived)
    assert refer.target == URI.parse("sip:carol@192.0.2.30")
    assert refer.replaces == "abc@h;to-tag=1;from-tag=2"
    assert refer.referred_by == "<sip:bob@192.0.2.20>"


def test_refer_sub_false_gets_its_202_and_no_notify():
    pair = make_pair(alice_config={"accept_refer": True})
    pair.establish()
    inject_refer(pair, [("Refer-To", "<sip:carol@192.0.2.30>"), ("Refer-Sub", "false")], cseq=62)

    pair.alice.accept_refer(pair.net.now)
    pair.net.run(pair.net.now + 1)
    pair.alice.notify_refer(200, "OK", pair.net.now)
    pair.net.run(pair.net.now + 1)

    (accepted,) = [r for r in pair.net.messages("202", ALICE) if r.cseq.number == 62]
    assert accepted.headers.get("Refer-Sub") == "false"
    assert not notifies(pair)


def test_a_refer_before_the_call_is_answered_is_refused():
    pair = make_pair(alice_config={"accept_refer": True})
    pair.establish()
    pair.alice.hangup(pair.net.now)
    pair.net.run(pair.net.now + 1)

    inject_refer(pair, [("Refer-To", "<sip:carol@192.0.2.30>")], cseq=63)

    assert refusal(pair, 63)[0] in (403, 481)
    assert not pair.alice_events(ev.ReferReceived)


def test_after_the_transferor_hangs_up_no_notify_is_sent():
    pair, _ = referred()
    pair.alice.accept_refer(pair.net.now)
    pair.net.run(pair.net.now + 1)
    pair.bob.hangup(pair.net.now)
    pair.net.run(pair.net.now + 1)

    pair.alice.notify_refer(200, "OK", pair.net.now)
    pair.net.run(pair.net.now + 1)

    assert [n.body for n in notifies(pair)] == [b"SIP/2.0 100 Trying\r\n"]
