"""The failover policy, in memory with simulated time: what each kind of dead target costs.

Each test reads as a story: targets that stay silent, refuse with ICMP, answer 503 with
Retry-After, or answer; a simulated clock; and the events an operator would see.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gosipd.locate import (
    MAX_RETRY_AFTER,
    Exhausted,
    FailedOver,
    Failover,
    FailoverError,
    FailoverPolicy,
    Reason,
    RetryAfterRegistry,
    Target,
    TargetChosen,
    TargetSkipped,
    Verdict,
)

A = Target("192.0.2.1", 5060, name="a.example")
B = Target("192.0.2.2", 5060, name="b.example")
C = Target("2001:db8::3", 5060, name="c.example")
D = Target("192.0.2.4", 5080, name="d.example")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0  # any monotonic epoch

    def __call__(self) -> float:
        return self.now


@dataclass
class Silent:
    """Never answers, never refuses: a black hole."""


@dataclass
class Refuses:
    """The host answers ICMP port unreachable after ``after`` seconds."""

    after: float = 0.001


@dataclass
class Responds:
    """Sends these statuses, ``every`` seconds apart (Retry-After on the last)."""

    statuses: tuple[int, ...]
    retry_after: float | None = None
    every: float = 0.01


def drive(failover: Failover, clock: Clock, behaviour: dict[Target, object]) -> Target | None:
    """Play the call worker: try targets until one settles or none is left."""
    target = failover.next_target(clock.now)
    while target is not None:
        match behaviour[target]:
            case Silent():
                timer = failover.next_timer()
                assert timer is not None
                clock.now = timer
                verdict = failover.handle_timer(clock.now)
            case Refuses(after):
                clock.now += after
                verdict = failover.on_transport_error(
                    target.endpoint, Reason.PORT_UNREACHABLE, clock.now
                )
            case Responds(statuses, retry_after, every):
                for i, status in enumerate(statuses):
                    clock.now += every
                    last = i == len(statuses) - 1
                    verdict = failover.on_response(
                        status, clock.now, retry_after=retry_after if last else None
                    )
                    if verdict is not Verdict.WAIT:
                        break
                else:
                    raise AssertionError("the script left the target waiting")
        if verdict is Verdict.SETTLED:
            return failover.current
        assert verdict is Verdict.FAILOVER
        target = failover.next_target(clock.now)
    return None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> RetryAfterRegistry:
    return RetryAfterRegistry(clock=clock)


def make(targets, clock, registry, **policy) -> Failover:
    return Failover(targets, clock.now, policy=FailoverPolicy(**policy), retry_after=registry)


def test_black_hole_then_icmp_then_503_then_an_answer_explains_every_skip(clock, registry):
    failover = make([A, B, C, D], clock, registry)
    start = clock.now
    settled = drive(
        failover,
        clock,
        {A: Silent(), B: Refuses(), C: Responds((100, 503), retry_after=30), D: Responds((180,))},
    )
    assert settled == D
    # 2 s for the black hole (the default target timeout), milliseconds for the rest
    assert clock.now - start == pytest.approx(2.0 + 0.001 + 0.02 + 0.01)
    assert failover.pop_events() == [
        TargetChosen(A, 1),
        FailedOver(A, Reason.TIMEOUT),
        TargetChosen(B, 2),
        FailedOver(B, Reason.PORT_UNREACHABLE),
        TargetChosen(C, 3),
        FailedOver(C, Reason.RESPONSE, status=503, retry_after=30),
        TargetChosen(D, 4),
    ]
    assert failover.next_timer() is None  # a provisional ends the search: no timer runs


def test_a_silent_target_is_left_after_the_target_timeout_not_timer_b(clock, registry):
    failover = make([A, B], clock, registry, target_timeout=0.5)
    assert failover.next_target(clock.now) == A
    assert failover.next_timer() == clock.now + 0.5
    assert failover.handle_timer(clock.now + 0.499) is Verdict.WAIT
    assert failover.handle_timer(clock.now + 0.5) is Verdict.FAILOVER
    assert failover.next_target(clock.now + 0.5) == B


def test_retry_after_keeps_a_target_out_of_later_calls_in_this_process(clock, registry):
    first_call = make([A, B], clock, registry)
    assert drive(first_call, clock, {A: Responds((503,), retry_after=30), B: Responds((200,))}) == B

    clock.now += 10  # the next call, ten seconds later: A is still resting for ~20 s
    second_call = make([A, B], clock, registry)
    assert second_call.next_target(clock.now) == B
    skipped, chosen = second_call.pop_events()
    assert isinstance(skipped, TargetSkipped) and skipped.target == A
    assert skipped.remaining == pytest.approx(20, abs=0.1)
    assert chosen == TargetChosen(B, 1)

    clock.now += 21  # past the Retry-After: A is tried again, first
    third_call = make([A, B], clock, registry)
    assert third_call.next_target(clock.now) == A


def test_a_503_without_retry_after_fails_over_but_does_not_block_the_target(clock, registry):
    first_call = make([A, B], clock, registry)
    assert drive(first_call, clock, {A: Responds((503,)), B: Responds((180,))}) == B
    assert make([A, B], clock, registry).next_target(clock.now) == A


def test_retry_after_is_capped(clock, registry):
    failover = make([A, B], clock, registry)
    drive(failover, clock, {A: Responds((503,), retry_after=10**9), B: Responds((200,))})
    assert registry.remaining(A) == pytest.approx(MAX_RETRY_AFTER, abs=1)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 580])
def test_408_and_5xx_fail_over(clock, registry, status):
    failover = make([A, B], clock, registry)
    assert drive(failover, clock, {A: Responds((status,)), B: Responds((200,))}) == B


@pytest.mark.parametrize("status", [200, 302, 401, 404, 486, 603])
def test_other_final_responses_settle_on_the_target_that_sent_them(clock, registry, status):
    failover = make([A, B], clock, registry)
    assert drive(failover, clock, {A: Responds((status,)), B: Responds((200,))}) == A
    assert [type(e) for e in failover.pop_events()] == [TargetChosen]


def test_100_trying_stops_the_target_timer_but_a_later_503_still_fails_over(clock, registry):
    failover = make([A, B], clock, registry, target_timeout=2)
    failover.next_target(clock.now)
    assert failover.on_response(100, clock.now + 0.1) is Verdict.WAIT
    assert failover.next_timer() is None  # the server lives: no 2 s timeout any more
    clock.now += 10
    assert failover.on_response(503, clock.now) is Verdict.FAILOVER
    assert failover.next_target(clock.now) == B


def test_a_ringing_target_ends_the_search_even_if_a_503_follows(clock, registry):
    failover = make([A, B], clock, registry)
    failover.next_target(clock.now)
    assert failover.on_response(180, clock.now) is Verdict.SETTLED
    assert failover.on_response(503, clock.now + 5, retry_after=60) is Verdict.SETTLED
    assert failover.current == A
    assert registry.remaining(A) == 0


def test_the_attempt_cap_ends_the_search(clock, registry):
    failover = make([A, B, C, D], clock, registry, max_attempts=2)
    assert drive(failover, clock, dict.fromkeys([A, B, C, D], Refuses())) is None
    assert failover.exhausted == Exhausted("attempt cap reached (2 targets tried)", 2)
    assert failover.attempts == 2


def test_the_time_cap_cuts_the_last_attempt_short(clock, registry):
    failover = make([A, B, C, D], clock, registry, target_timeout=2, total_timeout=5)
    start = clock.now
    assert drive(failover, clock, dict.fromkeys([A, B, C, D], Silent())) is None
    assert clock.now - start == pytest.approx(5)  # A 2 s, B 2 s, C the 1 s that was left
    assert failover.exhausted is not None
    assert failover.exhausted.reason == "time cap reached (5 s)"
    assert failover.attempts == 3


def test_no_target_left_is_reported(clock, registry):
    failover = make([A], clock, registry)
    assert drive(failover, clock, {A: Refuses()}) is None
    assert failover.exhausted == Exhausted("no target left", 1)
    assert failover.next_target(clock.now) is None  # and it stays over


def test_when_every_target_is_resting_the_search_ends_at_once(clock, registry):
    registry.block(A, 30)
    registry.block(B, 60)
    failover = make([A, B], clock, registry)
    assert failover.next_target(clock.now) is None
    events = failover.pop_events()
    assert [type(e) for e in events] == [TargetSkipped, TargetSkipped, Exhausted]
    assert events[-1] == Exhausted("no target to try", 0)


def test_an_icmp_error_about_an_earlier_target_is_ignored(clock, registry):
    failover = make([A, B], clock, registry)
    failover.next_target(clock.now)
    failover.on_transport_error(A.endpoint, Reason.PORT_UNREACHABLE, clock.now)
    assert failover.next_target(clock.now) == B
    late = failover.on_transport_error(A.endpoint, Reason.PORT_UNREACHABLE, clock.now + 0.1)
    assert late is Verdict.IGNORED
    assert failover.current == B


def test_icmp_from_a_v4_mapped_address_matches_the_target(clock, registry):
    failover = make([A], clock, registry)
    failover.next_target(clock.now)
    verdict = failover.on_transport_error(
        ("::ffff:192.0.2.1", 5060), Reason.HOST_UNREACHABLE, clock.now
    )
    assert verdict is Verdict.FAILOVER


def test_a_late_response_from_an_earlier_target_is_ignored(clock, registry):
    failover = make([A, B], clock, registry)
    failover.next_target(clock.now)
    failover.handle_timer(clock.now + 2)
    failover.next_target(clock.now + 2)
    assert failover.on_response(503, clock.now + 2.1, target=A) is Verdict.IGNORED
    assert failover.on_response(180, clock.now + 2.2, target=B) is Verdict.SETTLED


def test_a_response_with_no_target_in_flight_is_a_bug_made_visible(clock, registry):
    failover = make([A], clock, registry)
    with pytest.raises(FailoverError, match="not expected in state idle"):
        failover.on_response(200, clock.now)
    failover.next_target(clock.now)
    with pytest.raises(FailoverError, match="99 is not a SIP status code"):
        failover.on_response(99, clock.now)


def test_events_are_ready_for_structured_logging(clock, registry):
    failover = make([C], clock, registry)
    failover.next_target(clock.now)
    failover.on_response(503, clock.now, retry_after=5)
    chosen, failed = failover.pop_events()
    assert (chosen.event, chosen.fields()) == (
        "locate.target",
        {"target": "udp:[2001:db8::3]:5060", "attempt": 1},
    )
    assert (failed.event, failed.fields()) == (
        "locate.failover",
        {
            "target": "udp:[2001:db8::3]:5060",
            "reason": "response",
            "status": 503,
            "retry_after": 5,
        },
    )
    assert failover.pop_events() == []
    assert failover.history == [chosen, failed]


def test_a_policy_with_no_patience_is_refused():
    with pytest.raises(ValueError, match="positive"):
        FailoverPolicy(target_timeout=0)
