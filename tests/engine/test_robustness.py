"""Nothing a peer sends crashes the engine: datagrams of a real call, bent in every way a
hypothesis can think of, are fed to both user agents mid-call and after it; each either
gets the answer the RFC owes it or is dropped, and the call still ends cleanly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gosipd.sip import events as ev
from gosipd.sip.ua import CallState

from .conftest import ALICE, BOB, make_pair


def _reference_datagrams() -> list[bytes]:
    pair = make_pair()
    pair.establish()
    pair.alice.reinvite(b"v=0\r\n", pair.net.now)
    pair.net.run(lambda: bool(pair.bob_events(ev.RemoteOffer)))
    pair.bob.answer_offer(b"v=0\r\n", pair.net.now)
    pair.net.run(pair.net.now + 1)
    pair.alice.hangup(pair.net.now)
    pair.net.run()
    return [d.data for d in pair.net.sent]


REFERENCE = _reference_datagrams()


@st.composite
def bent(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(REFERENCE))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        match draw(st.sampled_from(["drop", "dup", "value", "tag", "number"])):
            case "drop" if i > 0:
                del lines[i]
            case "dup":
                lines.insert(i, lines[i])
            case "value" if b":" in lines[i]:
                name = lines[i].split(b":", 1)[0]
                value = draw(
                    st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b)
                )
                lines[i] = name + b": " + value
            case "tag":
                lines[i] = lines[i].replace(b"tag=", b"tag=x")
            case "number":
                lines[i] = lines[i].replace(
                    b"1", draw(st.sampled_from([b"0", b"4294967296", b"9"]))
                )
            case _:
                pass
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bent(), min_size=1, max_size=4), st.booleans())
def test_bent_datagrams_never_crash_a_call_in_progress(
    datagrams: list[bytes], to_alice: bool
) -> None:
    pair = make_pair()
    pair.establish()
    for data in datagrams:
        pair.net.inject(data, BOB if to_alice else ALICE, ALICE if to_alice else BOB)
    pair.net.run(pair.net.now + 1)
    if pair.alice.state is CallState.CONFIRMED:
        pair.alice.hangup(pair.net.now)
    pair.net.run()
    assert pair.alice.state is CallState.TERMINATED
    for data in datagrams:  # and after the call, too
        pair.net.inject(data, BOB, ALICE)
        pair.net.inject(data, ALICE, BOB)
    pair.net.run()
