"""RFC 3550 A.1/A.3/A.8 reception statistics: loss, duplicates, wrap, restarts, jitter."""

from __future__ import annotations

from gosipd.rtp.statistics import ReceptionStatistics

MS = 1_000_000  # ns


def feed(
    stats: ReceptionStatistics,
    seqs: list[int],
    *,
    ssrc: int = 7,
    jitter_ms: list[float] | None = None,
) -> None:
    for i, seq in enumerate(seqs):
        arrival = i * 20 * MS + int((jitter_ms[i] if jitter_ms else 0) * MS)
        stats.update(ssrc, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, arrival)


def test_clean_stream_has_no_loss_and_no_jitter() -> None:
    s = ReceptionStatistics()
    feed(s, list(range(100, 200)))
    snap = s.snapshot()
    assert snap.lost == 0
    assert snap.received == snap.expected == 99  # the first packet is the probation packet
    assert snap.jitter == 0.0


def test_loss_is_counted_from_sequence_gaps() -> None:
    s = ReceptionStatistics()
    seqs = [n for n in range(0, 100) if n % 10 != 5]
    feed(s, seqs)
    assert s.snapshot().lost == 10


def test_duplicates_are_not_counted_as_received() -> None:
    s = ReceptionStatistics()
    feed(s, [1, 2, 3, 4, 4, 5, 3, 6])
    snap = s.snapshot()
    assert snap.lost == 0 and snap.duplicates == 2
    assert snap.received == 5


def test_reordered_packets_are_not_lost() -> None:
    s = ReceptionStatistics()
    feed(s, [1, 2, 4, 3, 6, 5, 7])
    assert s.snapshot().lost == 0


def test_sequence_wrap_extends_the_highest_sequence() -> None:
    s = ReceptionStatistics()
    feed(s, list(range(65530, 65546)))
    snap = s.snapshot()
    assert snap.extended_max == 65536 + 9
    assert snap.lost == 0


def test_a_restart_is_accepted_after_two_sequential_packets() -> None:
    s = ReceptionStatistics()
    feed(s, [10, 11, 12, 13, 30000, 30001, 30002])
    snap = s.snapshot()
    assert snap.extended_max == 30002
    assert snap.lost == 0 and snap.received == 2  # counted afresh from the restart


def test_a_single_wild_sequence_number_is_ignored() -> None:
    s = ReceptionStatistics()
    feed(s, [10, 11, 12, 40000, 13, 14])
    assert s.snapshot().extended_max == 14


def test_new_ssrc_restarts_the_statistics() -> None:
    s = ReceptionStatistics()
    feed(s, [1, 2, 3, 4])
    feed(s, [500, 501, 502], ssrc=99)
    snap = s.snapshot()
    assert snap.ssrc == 99 and snap.received == 2


def test_jitter_follows_rfc3550_a8() -> None:
    s = ReceptionStatistics()
    # alternate 0 and 5 ms late: |D| = 40 timestamp units every packet after the first pair
    feed(s, list(range(200)), jitter_ms=[0, 5] * 100)
    assert abs(s.snapshot().jitter - 40.0) < 0.5


def test_rfc4733_events_count_for_loss_but_not_for_jitter() -> None:
    """A keypress: event packets share the sequence space, but their timestamp stays
    at the event's start, so their transit would read as jitter."""

    def keypress(timing: bool) -> ReceptionStatistics:
        s = ReceptionStatistics()
        for i in range(1, 120):
            if 100 <= i < 110:  # 200 ms of one event, timestamp frozen at its start
                s.update(7, i, 100 * 160, i * 20 * MS, timing=timing)
            else:
                s.update(7, i, i * 160, i * 20 * MS)
        return s

    snap = keypress(timing=False).snapshot()
    assert snap.lost == 0 and snap.received == 118
    assert snap.jitter == 0.0
    assert keypress(timing=True).snapshot().jitter > 80  # >10 ms: what counting them shows


def test_fraction_lost_is_per_interval() -> None:
    s = ReceptionStatistics()
    feed(s, list(range(0, 51)))
    first = s.snapshot()
    feed(s, [n for n in range(51, 101) if n % 2])
    second = s.snapshot()
    assert first.fraction_lost_since(None) == 0.0
    assert abs(second.fraction_lost_since(first) - 0.5) < 0.03
