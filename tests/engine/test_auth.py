"""Digest authentication of the INVITE (RFC 3261 §22) against a challenging proxy that
verifies the answers with its own code: 401 and 407, MD5 and SHA-256, qop=auth and no
qop, one answer per challenge, and the credentials carried into ACK and BYE."""

from __future__ import annotations

from typing import Any

import pytest

from gosipd.sip import Request
from gosipd.sip import events as ev
from gosipd.sip.digest import Credentials
from gosipd.sip.ua import CallState

from .conftest import ALICE, BOB, PROXY, Pair, make_pair
from .proxy import Authenticator, Proxy


def challenged_pair(auth: Authenticator, credentials: Credentials | None) -> tuple[Pair, Proxy]:
    pair = make_pair(alice_config={"credentials": credentials})
    proxy = pair.net.add(PROXY, Proxy(PROXY, targets=[BOB], auth=auth))
    return pair, proxy


@pytest.mark.parametrize(
    "auth",
    [
        {"status": 407, "algorithm": "MD5", "qop": ("auth",)},
        {"status": 401, "algorithm": "SHA-256", "qop": ("auth",)},
        {"status": 407, "algorithm": "SHA-256", "qop": None},
        {"status": 401, "algorithm": "MD5", "qop": None},
    ],
    ids=["407-md5-auth", "401-sha256-auth", "407-sha256-noqop", "401-md5-noqop"],
)
def test_a_challenged_invite_is_answered_once_and_the_call_goes_through(auth: Any) -> None:
    authenticator = Authenticator(**auth)
    pair, proxy = challenged_pair(authenticator, Credentials("alice", "secret"))
    pair.dial(to=PROXY, via=PROXY)
    pair.answer_when_called()
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    [challenged] = pair.alice_events(ev.AuthChallenged)
    assert challenged.status == auth["status"] and challenged.realms == ("sim.test",)
    first, second = pair.net.messages("INVITE", ALICE)
    assert isinstance(first, Request) and isinstance(second, Request)
    assert second.cseq.number == first.cseq.number + 1  # §22.1: a new request
    assert second.via[0].branch != first.via[0].branch
    [credentials] = second.authorization if auth["status"] == 401 else second.proxy_authorization
    assert credentials.algorithm == auth["algorithm"]
    assert credentials.qop == (auth["qop"][0] if auth["qop"] else None)
    assert ("INVITE", "ok") in proxy.verdicts
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    # the ACK carries the INVITE's credentials (§13.2.2.4); the BYE answers anew (§22.3)
    assert ("ACK", "ok") in proxy.verdicts
    assert ("BYE", "ok") in proxy.verdicts
    assert pair.bob_events(ev.Ended)[0].cause == "remote_hangup"


def test_later_requests_reuse_the_nonce_with_the_next_nonce_count() -> None:
    pair, _ = challenged_pair(Authenticator(), Credentials("alice", "secret"))
    pair.dial(to=PROXY, via=PROXY)
    pair.answer_when_called()
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    [invite] = pair.net.messages("INVITE", ALICE)[1:]
    [prack] = pair.net.messages("PRACK", ALICE)
    [bye] = pair.net.messages("BYE", ALICE)
    answers = [m.proxy_authorization[0] for m in (invite, prack, bye)]
    assert [a.nc for a in answers] == ["00000001", "00000002", "00000003"]
    assert {a.nonce for a in answers} == {invite.proxy_authorization[0].nonce}
    assert {a.cnonce for a in answers} == {invite.proxy_authorization[0].cnonce}
    assert bye.proxy_authorization[0].uri == str(bye.uri)


def test_a_second_challenge_for_the_same_credentials_fails_the_call() -> None:
    pair, proxy = challenged_pair(Authenticator(), Credentials("alice", "wrong"))
    pair.dial(to=PROXY, via=PROXY)
    pair.net.run()
    assert len(pair.net.messages("INVITE", ALICE)) == 2  # one retry, no more
    assert [v for _, v in proxy.verdicts] == ["none", "wrong response"]
    [failed] = pair.alice_events(ev.Failed)
    assert failed.status == 407
    assert pair.alice_events(ev.Ended)[0].cause == "rejected"
    assert not pair.bob_events(ev.IncomingCall)
    assert pair.alice.finished


def test_without_credentials_a_challenge_fails_the_call() -> None:
    pair, _ = challenged_pair(Authenticator(status=401), None)
    pair.dial(to=PROXY, via=PROXY)
    pair.net.run()
    assert len(pair.net.messages("INVITE", ALICE)) == 1
    assert pair.alice_events(ev.Failed)[0].status == 401


def test_credentials_for_another_realm_are_not_offered() -> None:
    pair, _ = challenged_pair(Authenticator(), Credentials("alice", "secret", realm="other"))
    pair.dial(to=PROXY, via=PROXY)
    pair.net.run()
    assert len(pair.net.messages("INVITE", ALICE)) == 1
    assert pair.alice_events(ev.Failed)[0].status == 407
    [refused] = pair.alice_events(ev.AuthRefused)
    assert refused.reason == "realm_mismatch" and refused.realms == ("sim.test",)


def test_a_challenge_from_a_hop_that_is_not_the_trunk_gets_no_credentials() -> None:
    """``credential_hosts`` names where the trunk is; the proxy here is somewhere else."""
    pair = make_pair(
        alice_config={
            "credentials": Credentials("alice", "secret"),
            "credential_hosts": frozenset({"198.51.100.1"}),
        }
    )
    pair.net.add(PROXY, Proxy(PROXY, targets=[BOB], auth=Authenticator(status=401)))
    pair.dial(to=PROXY, via=PROXY)
    pair.net.run()
    [invite] = pair.net.messages("INVITE", ALICE)
    assert not invite.authorization and not invite.proxy_authorization
    [refused] = pair.alice_events(ev.AuthRefused)
    assert (refused.reason, refused.method, refused.destination) == ("not_trunk", "INVITE", PROXY)
    assert pair.alice_events(ev.Failed)[0].status == 401
    assert not pair.alice_events(ev.AuthChallenged)


def test_a_challenge_from_the_trunk_s_located_address_is_answered() -> None:
    pair = make_pair(
        alice_config={
            "credentials": Credentials("alice", "secret"),
            "credential_hosts": frozenset({PROXY[0]}),
        }
    )
    proxy = pair.net.add(PROXY, Proxy(PROXY, targets=[BOB], auth=Authenticator()))
    pair.dial(to=PROXY, via=PROXY)
    pair.answer_when_called()
    pair.net.run(lambda: pair.bob.state is CallState.CONFIRMED)
    assert ("INVITE", "ok") in proxy.verdicts
