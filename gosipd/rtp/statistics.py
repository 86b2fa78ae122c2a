"""Reception statistics of one RTP source (RFC 3550 A.1, A.3 and A.8).

``ReceptionStatistics`` validates sequence numbers the way RFC 3550 A.1 does
(a source is valid after ``MIN_SEQUENTIAL`` in-order packets; a jump of more
than ``MAX_DROPOUT`` or back by more than ``MAX_MISORDER`` is a restart once
confirmed by a second packet), counts what was expected and received, and
estimates interarrival jitter (A.8). The media loop runs a C transcription of
the same algorithm; the tests feed both the same streams.

``snapshot()`` gives the cumulative counters; ``ReportCounters.report_block``
turns two successive snapshots into an RTCP report block (A.3).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "ReceptionSnapshot",
    "ReceptionStatistics",
]

MIN_SEQUENTIAL = 2
MAX_DROPOUT = 3000
MAX_MISORDER = 100
RTP_SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True)
class ReceptionSnapshot:
    """Cumulative reception counters of one source at one moment."""

    ssrc: int
    received: int
    expected: int
    extended_max: int
    #: Interarrival jitter in timestamp units (RFC 3550 A.8).
    jitter: float
    duplicates: int = 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (RFC 3550 A.3; duplicates can make it negative)."""
        return self.expected - self.received

    def fraction_lost_since(self, prior: ReceptionSnapshot | None) -> float:
        """Fraction lost in the interval since ``prior`` (0 when nothing was lost or expected)."""
        expected_prior = prior.expected if prior is not None else 0
        received_prior = prior.received if prior is not None else 0
        expected = self.expected - expected_prior
        lost = expected - (self.received - received_prior)
        if expected <= 0 or lost <= 0:
            return 0.0
        return lost / expected


class ReceptionStatistics:
    """Sequence validation, loss and jitter for packets from one SSRC."""

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._reset(0)

    def _reset(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self.duplicates = 0
        self.transit = 0
        self.has_transit = False
        self.jitter = 0.0
        self.started = False
        #: Bit (seq & 127) is set when that sequence number was received (duplicate window).
        self.seen = 0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.seen = 1 << (seq & 127)

    def _mark(self, seq: int, advanced_by: int) -> None:
        """Record ``seq`` in the 128-packet duplicate window; clear what the advance passed."""
        if advanced_by >= 128:
            self.seen = 0
        else:
            for k in range(advanced_by):
                self.seen &= ~(1 << ((seq - k) & 127))
        self.seen |= 1 << (seq & 127)

    def update(
        self, ssrc: int, seq: int, timestamp: int, arrival_ns: int, *, timing: bool = True
    ) -> bool:
        """Account one packet that arrived at ``arrival_ns`` (any monotonic clock, in ns).

        Returns whether the packet counts (False during probation, for
        duplicates and for an unconfirmed jump). A new SSRC restarts everything.
        ``timing=False`` (RFC 4733 events, whose timestamp stays at the event's
        start) counts the packet for loss but keeps it out of the jitter.
        """
        if not self.started or ssrc != self.ssrc:
            self._reset(ssrc)
            self.started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
        if not self._update_seq(seq):
            return False
        if not timing:
            return True
        # A.8: jitter from the difference of relative transit times.
        arrival_units = arrival_ns * self.clock_rate // 1_000_000_000
        transit = (arrival_units - timestamp) & 0xFFFFFFFF
        if self.received > 1 and self.has_transit:
            d = transit - self.transit
            if d >= 1 << 31:
                d -= 1 << 32
            elif d < -(1 << 31):
                d += 1 << 32
            self.jitter += (abs(d) - self.jitter) / 16.0
        self.transit = transit
        self.has_transit = True
        return True

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta == 0 or (udelta > RTP_SEQ_MOD - MAX_MISORDER and self.seen >> (seq & 127) & 1):
            # Not in RFC 3550 A.1, which counts duplicates as received: we drop them,
            # so that "lost" stays the number of packets that never came.
            self.duplicates += 1
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
            self._mark(seq, udelta)
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # Two sequential packets after a big jump: the source restarted.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        else:
            # A reordered packet, at most MAX_MISORDER behind the highest.
            self._mark(seq, 0)
        self.received += 1
        return True

    def snapshot(self) -> ReceptionSnapshot:
        extended_max = self.cycles + self.max_seq
        expected = extended_max - self.base_seq + 1 if self.received else 0
        return ReceptionSnapshot(
            ssrc=self.ssrc,
            received=self.received,
            expected=expected,
            extended_max=extended_max,
            jitter=self.jitter,
            duplicates=self.duplicates,
        )
