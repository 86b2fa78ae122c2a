"""What the call worker relies on from the SIP engine (gosipd/sip/ua.py), driven sans-I/O.

These pin engine behaviour the worker's failover and call flow need (the real-peer side
is tests/worker/test_failover.py). A failure here is a bug to report to the engine's
owner; call.py may carry a minimal workaround meanwhile, marked here with an xfail.
"""

from __future__ import annotations

import random

from gosipd.sip import URI, NameAddr, Request, Response, parse
from gosipd.sip import events as ev
from gosipd.sip.ua import UAConfig, UserAgent

ALICE = ("192.0.2.10", 5060)
SERVER = ("192.0.2.20", 5060)
OFFER = (
    b"v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
)


def dial(ua: UserAgent) -> Request:
    ua.invite(
        URI.parse("sip:bob@trunk.example.net"),
        destination=SERVER,
        from_=NameAddr.parse("<sip:alice@192.0.2.10>"),
        now=0.0,
        sdp=OFFER,
    )
    (data, destination), *_ = ua.datagrams_to_send()
    assert destination == SERVER
    request = parse(data)
    assert isinstance(request, Request)
    return request


def test_a_503_after_100_trying_is_an_attempt_failure_the_caller_can_fail_over_from():
    """RFC 3263 §4.3: a 503 sends the client to the next server. A 100 Trying is hop by
    hop (RFC 3261 §16.2): it says nothing about the call, so it must not stop that."""
    ua = UserAgent(UAConfig(ALICE), rng=random.Random(1))
    invite = dial(ua)
    ua.receive(bytes(Response.for_request(invite, 100)), SERVER, 0.01)
    unavailable = Response.for_request(invite, 503, to_tag="x1")
    unavailable.headers.add("Retry-After", "30")
    ua.receive(bytes(unavailable), SERVER, 0.02)

    events = ua.events()
    failed = [e for e in events if isinstance(e, ev.AttemptFailed)]
    assert failed == [ev.AttemptFailed(SERVER, "status", 503, 30)], events
    assert not [e for e in events if isinstance(e, ev.Ended)]


def test_a_503_after_180_ringing_ends_the_call():
    """Once the far end rang, the request reached a UAS: another server would ring twice."""
    ua = UserAgent(UAConfig(ALICE), rng=random.Random(1))
    invite = dial(ua)
    ua.receive(bytes(Response.for_request(invite, 180, to_tag="r1")), SERVER, 0.01)
    ua.receive(bytes(Response.for_request(invite, 503, to_tag="r1")), SERVER, 0.02)

    events = ua.events()
    assert not [e for e in events if isinstance(e, ev.AttemptFailed)]
    assert [e.status for e in events if isinstance(e, ev.Failed)] == [503]
