"""RFC 4733 DTMF: the sender's tick script and a receiver that reports each digit once."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gosipd.rtp.dtmf import (
    AudioTick,
    DtmfReceived,
    DtmfReceiver,
    DtmfSender,
    EventTick,
    TelephoneEvent,
)

TICK = 0.02


def wire(digits: str, **kw: int) -> list[tuple[float, int, bool, bytes]]:
    """What a media loop sends: (time, RTP timestamp, marker, payload) of each event packet."""
    ts = 1000  # the loop's running timestamp; advances 160 per tick whatever is sent
    event_ts = 0
    sent = []
    for k, tick in enumerate(DtmfSender().ticks(digits, **kw)):
        if isinstance(tick, EventTick):
            if tick.start:
                event_ts = ts
            sent.append((k * TICK, event_ts, tick.marker, tick.payload))
        ts += 160
    return sent


def receive_all(
    packets: list[tuple[float, int, bool, bytes]], end: float = 10.0
) -> list[DtmfReceived]:
    rx = DtmfReceiver()
    got: list[DtmfReceived] = []
    for at, ts, _marker, payload in packets:
        got += rx.receive(payload, ts, at)
    got += rx.handle_timer(end)
    return got


def test_a_100ms_digit_is_five_growing_packets_then_three_ends() -> None:
    script = DtmfSender().ticks("5")
    events = [TelephoneEvent.parse(t.payload) for t in script if isinstance(t, EventTick)]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5} and {e.volume for e in events} == {10}
    markers = [t.marker for t in script if isinstance(t, EventTick)]
    assert markers == [True] + [False] * 6
    # 50 ms gap -> 3 ticks after the tone, two of them taken by the end retransmissions
    assert len(script) == 5 + 3 and isinstance(script[-1], AudioTick)


def test_every_packet_of_a_digit_carries_its_start_timestamp_and_audio_time_advances() -> None:
    sent = wire("12")
    first = [ts for _, ts, _, p in sent if TelephoneEvent.parse(p).event == 1]
    second = [ts for _, ts, _, p in sent if TelephoneEvent.parse(p).event == 2]
    assert len(set(first)) == 1 and len(set(second)) == 1
    assert second[0] - first[0] == 8 * 160  # 5 tone ticks + 3 gap ticks later


def test_durations_round_up_to_whole_packet_times() -> None:
    script = DtmfSender(ptime_ms=20).ticks("#", duration_ms=90, gap_ms=0)
    events = [TelephoneEvent.parse(t.payload) for t in script if isinstance(t, EventTick)]
    assert events[-1].duration == 800 and events[-1].end
    assert all(isinstance(t, EventTick) for t in script)  # zero gap: the end packets are the gap


@pytest.mark.parametrize(("bad", "message"), [("1x", "'x' is not a DTMF digit"), ("", "no digits")])
def test_bad_digits_are_refused(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DtmfSender().ticks(bad)


def test_clean_stream_gives_each_digit_once_with_its_duration() -> None:
    got = receive_all(wire("0123456789*#ABCD"))
    assert "".join(d.digit for d in got) == "0123456789*#ABCD"
    assert {d.duration_ms for d in got} == {100}


def test_repeated_digits_are_separate_digits() -> None:
    assert [d.digit for d in receive_all(wire("1111"))] == ["1", "1", "1", "1"]


def test_lost_start_packet_still_starts_the_digit() -> None:
    sent = wire("7")
    got = receive_all(sent[1:])  # the marker packet is lost
    assert got == [DtmfReceived("7", 100)]


def test_all_end_packets_lost_finishes_the_digit_on_the_next_one() -> None:
    sent = [p for p in wire("89") if not TelephoneEvent.parse(p[3]).end]
    rx = DtmfReceiver()
    got = []
    for at, ts, _marker, payload in sent:
        got += rx.receive(payload, ts, at)
    assert [d.digit for d in got] == ["8"]  # 9 is still in progress
    assert got[0].duration_ms == 80  # the longest duration seen before the loss
    assert rx.next_timer() is not None
    assert rx.handle_timer(rx.next_timer() - 0.001) == []  # type: ignore[operator]
    assert [d.digit for d in rx.handle_timer(rx.next_timer())] == ["9"]  # type: ignore[arg-type]


def test_retransmitted_and_late_end_packets_do_not_repeat_the_digit() -> None:
    sent = wire("3")
    ends = [p for p in sent if TelephoneEvent.parse(p[3]).end]
    late = [(at + 1.0, ts, m, pl) for at, ts, m, pl in ends + sent[:2]]
    assert [d.digit for d in receive_all(sent + late)] == ["3"]


def test_only_end_packets_received_still_report_the_digit() -> None:
    ends = [p for p in wire("*") if TelephoneEvent.parse(p[3]).end]
    assert receive_all(ends) == [DtmfReceived("*", 100)]


def test_reordered_packet_of_an_older_digit_is_ignored() -> None:
    sent = wire("45")
    older = sent[3]
    later = [p for p in sent if TelephoneEvent.parse(p[3]).event == 5]
    earlier = [p for p in sent if TelephoneEvent.parse(p[3]).event == 4]
    stream = earlier + later[:2] + [older] + later[2:]
    assert [d.digit for d in receive_all(stream)] == ["4", "5"]


def test_timestamp_wrap_between_digits() -> None:
    rx = DtmfReceiver()
    got = []
    for start in (0xFFFFFF00, 0x00000200):
        for k in range(3):
            payload = TelephoneEvent(1, k == 2, 10, 160 * (k + 1)).build()
            got += rx.receive(payload, start, 0.0)
    assert [d.digit for d in got] == ["1", "1"]


def test_non_dtmf_events_and_short_payloads_are_counted_not_reported() -> None:
    rx = DtmfReceiver()
    assert rx.receive(TelephoneEvent(16, True, 10, 800).build(), 5, 0.0) == []  # flash
    assert rx.receive(b"\x01", 6, 0.0) == []
    assert rx.ignored == 2


def test_ssrc_change_finishes_the_digit_in_progress() -> None:
    rx = DtmfReceiver()
    rx.receive(TelephoneEvent(2, False, 10, 160).build(), 100, 0.0, ssrc=1)
    got = rx.receive(TelephoneEvent(3, False, 10, 160).build(), 100, 0.02, ssrc=2)
    assert [d.digit for d in got] == ["2"]


@settings(max_examples=200, deadline=None)
@given(
    digits=st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
    loss=st.floats(0.0, 0.3),
    duplicate=st.floats(0.0, 0.3),
)
def test_under_loss_and_duplication_no_digit_is_repeated_and_none_is_invented(
    digits: str, seed: int, loss: float, duplicate: float
) -> None:
    rng = random.Random(seed)
    sent = wire(digits)
    stream = []
    for p in sent:
        if rng.random() < loss:
            continue
        stream.append(p)
        if rng.random() < duplicate:
            stream.append((p[0] + 0.001, *p[1:]))
    got = "".join(d.digit for d in receive_all(stream))
    # Every digit with at least one surviving packet is reported exactly once, in order.
    survived = []
    for at_ts in sorted({ts for _, ts, _, _ in stream}):
        event = next(TelephoneEvent.parse(p).event for _, ts, _, p in stream if ts == at_ts)
        survived.append("0123456789*#ABCD"[event])
    assert got == "".join(survived)
