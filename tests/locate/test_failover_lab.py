"""Locate + Failover + UdpEndpoint over real DNS, real dead targets and real SIPp UASes.

This plays the part of the call worker with a hand-written INVITE (the SIP engine is
not needed to ask "who answers?"): dnsmasq gives NAPTR -> SRV with four priorities; the
first target is a black hole (timeout), the second refuses (ICMP), the third is a SIPp
UAS answering 503 + Retry-After, the fourth a SIPp echo UAS that rings. The search must
settle on the fourth within 3 s with the default 2 s target timeout, and the events
must say why each earlier target was left.
"""

from __future__ import annotations

import re
import secrets

import pytest
import trio

from gosipd.locate import (
    DEFAULT_TARGET_TIMEOUT,
    Datagram,
    FailedOver,
    Failover,
    Locator,
    Reason,
    ResolverConfig,
    RetryAfterRegistry,
    Target,
    TargetChosen,
    TargetSkipped,
    UdpEndpoint,
    Verdict,
)
from tests.peers import failover_zone

pytestmark = [pytest.mark.interop, pytest.mark.root]


def invite(target: Target, local_port: int, call_id: str) -> bytes:
    ruri = f"sip:echo@{target.address}:{target.port}"
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1:{local_port}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:probe@127.0.0.1:{local_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> tuple[int, float | None]:
    text = data.decode(errors="replace")
    status = int(text.split(" ", 2)[1])
    retry_after = re.search(r"^Retry-After:\s*(\d+)", text, re.M | re.I)
    return status, float(retry_after.group(1)) if retry_after else None


async def first_answer(failover: Failover, endpoint: UdpEndpoint, targets) -> Target | None:
    """What the call worker does while its INVITE is unanswered."""
    by_endpoint = {t.endpoint: t for t in targets}
    target = failover.next_target(trio.current_time())
    while target is not None:
        await endpoint.send(
            invite(target, endpoint.local_address[1], secrets.token_hex(6)), target.endpoint
        )
        verdict = Verdict.WAIT
        while verdict in (Verdict.WAIT, Verdict.IGNORED):
            timer = failover.next_timer()
            outcome = None
            with trio.move_on_at(timer if timer is not None else float("inf")):
                outcome = await endpoint.receive()
            now = trio.current_time()
            match outcome:
                case None:
                    verdict = failover.handle_timer(now)
                case Datagram(data, source):
                    status, retry_after = status_of(data)
                    verdict = failover.on_response(
                        status, now, retry_after=retry_after, target=by_endpoint.get(source)
                    )
                case _:
                    verdict = failover.on_transport_error(outcome.destination, outcome.reason, now)
        if verdict is Verdict.SETTLED:
            return failover.current
        target = failover.next_target(trio.current_time())
    return None


async def test_a_call_fails_over_past_a_black_hole_an_icmp_refusal_and_a_503(
    blackhole, sipp_uas, dnsmasq
):
    hole = blackhole()
    busy = sipp_uas("503", retry_after=30)
    echo = sipp_uas("echo")
    server = dnsmasq(failover_zone(hole, busy, echo))
    host, port = server.nameserver
    locator = Locator(ResolverConfig(nameservers=(host,), port=port, families=("ipv4",)))
    registry = RetryAfterRegistry()

    start = trio.current_time()
    location = await locator.locate("trunk.lab.test")
    silent, refusing, busy_target, echo_target = location.targets
    with UdpEndpoint("0.0.0.0") as endpoint:
        failover = Failover(location.targets, trio.current_time(), retry_after=registry)
        answered = await first_answer(failover, endpoint, location.targets)
    time_to_answer = trio.current_time() - start

    assert answered == echo_target
    assert failover.pop_events() == [
        TargetChosen(silent, 1),
        FailedOver(silent, Reason.TIMEOUT),
        TargetChosen(refusing, 2),
        FailedOver(refusing, Reason.PORT_UNREACHABLE),
        TargetChosen(busy_target, 3),
        FailedOver(busy_target, Reason.RESPONSE, status=503, retry_after=30),
        TargetChosen(echo_target, 4),
    ]
    print(f"time to the first ringing response with a dead primary: {time_to_answer:.3f} s")
    assert DEFAULT_TARGET_TIMEOUT <= time_to_answer < 3.0
    assert busy.received("INVITE") == 1
    assert echo.received("INVITE") == 1

    # the next call in this process leaves the 503 target alone while its Retry-After runs
    with UdpEndpoint("0.0.0.0") as endpoint:
        failover = Failover(location.targets[2:], trio.current_time(), retry_after=registry)
        assert await first_answer(failover, endpoint, location.targets) == echo_target
    skipped, chosen = failover.pop_events()
    assert isinstance(skipped, TargetSkipped) and skipped.target == busy_target
    assert chosen == TargetChosen(echo_target, 1)
    assert busy.received("INVITE") == 1
