"""RFC 4733 telephone events for DTMF: the payload, a sender and a receiver.

The **sender** turns digits into what the media loop sends, one entry per
packet time ("tick"), so the events are paced on the media clock by the
loop itself:

- the first packet of each digit has the marker bit; every packet of one
  digit carries the digit's start timestamp, and the duration grows by one
  packet time per packet;
- the last duration is sent three times with the E bit (RFC 4733 §2.5.1.4);
- the gap between digits is sent as ordinary audio ticks, and the audio
  timestamp keeps advancing with real time throughout (the loop's timestamp
  advances every tick, whatever it sends).

The **receiver** reports each digit exactly once with its duration. An event
is identified by its RTP timestamp, not by its digit or the marker bit, so:
a lost start packet still starts the digit; a lost end (all three copies) is
finished by the next event or by a timeout; retransmitted end packets and
late updates of a finished event are ignored; "11" is two digits. The
transitions are one table, ``DtmfReceiver.TRANSITIONS``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Literal

__all__ = [
    "DIGIT_OF_EVENT",
    "END_PACKETS",
    "END_TIMEOUT",
    "EVENT_OF_DIGIT",
    "MAX_EVENT_DURATION_MS",
    "AudioTick",
    "DtmfProtocolError",
    "DtmfReceived",
    "DtmfReceiver",
    "DtmfSender",
    "EventTick",
    "TelephoneEvent",
]

EVENT_OF_DIGIT = {d: i for i, d in enumerate("0123456789*#ABCD")}
DIGIT_OF_EVENT = {i: d for d, i in EVENT_OF_DIGIT.items()}
#: How many times the final (E bit) packet of an event is sent.
END_PACKETS = 3
#: A digit whose end never arrives is finished this many seconds after its last packet.
END_TIMEOUT = 0.25
#: The longest tone we send; longer ones would need RFC 4733 §2.5.2.3 segments.
MAX_EVENT_DURATION_MS = 8000
#: The most digits one send request may hold.
MAX_DIGITS = 256
#: Default RFC 4733 volume: -10 dBm0.
DEFAULT_VOLUME = 10
_PAYLOAD = struct.Struct("!BBH")


class DtmfProtocolError(ValueError):
    """A malformed telephone-event payload, or a transition the receiver table forbids."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-octet RFC 4733 payload: event, E bit, volume (-dBm0) and duration (timestamp units)."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise DtmfProtocolError(f"telephone-event payload of {len(payload)} bytes, need 4")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def build(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise ValueError(f"event {self.event} / volume {self.volume} out of range")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration {self.duration} does not fit 16 bits")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class EventTick:
    """Send this telephone-event payload in this tick instead of audio.

    ``start`` marks the first packet of an event: the loop records the tick's
    RTP timestamp then and stamps every packet of the event with it.
    """

    payload: bytes
    marker: bool
    start: bool


@dataclass(frozen=True, slots=True)
class AudioTick:
    """Send audio in this tick (the gap between digits)."""


Tick = EventTick | AudioTick


def _check_digits(digits: str) -> list[int]:
    if not digits:
        raise ValueError("no digits to send")
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"{len(digits)} digits exceed the limit of {MAX_DIGITS}")
    events = []
    for ch in digits:
        code = EVENT_OF_DIGIT.get(ch.upper())
        if code is None:
            raise ValueError(f"{ch!r} is not a DTMF digit (0-9, *, #, A-D)")
        events.append(code)
    return events


class DtmfSender:
    """Digits -> one ``EventTick`` or ``AudioTick`` per packet time."""

    def __init__(self, ptime_ms: int = 20, clock_rate: int = 8000) -> None:
        if ptime_ms <= 0:
            raise ValueError(f"ptime must be positive, got {ptime_ms}")
        self.ptime_ms = ptime_ms
        self.samples_per_tick = clock_rate * ptime_ms // 1000

    def ticks(
        self,
        digits: str,
        duration_ms: int = 100,
        gap_ms: int = 50,
        volume: int = DEFAULT_VOLUME,
    ) -> list[Tick]:
        """The tick script for ``digits``.

        Durations round up to whole packet times; the gap is at least the
        two packet times that the end retransmissions occupy.
        """
        events = _check_digits(digits)
        if not 0 < duration_ms <= MAX_EVENT_DURATION_MS:
            raise ValueError(f"duration must be 1..{MAX_EVENT_DURATION_MS} ms, got {duration_ms}")
        if not 0 <= gap_ms <= MAX_EVENT_DURATION_MS:
            raise ValueError(f"gap must be 0..{MAX_EVENT_DURATION_MS} ms, got {gap_ms}")
        if not 0 <= volume <= 63:
            raise ValueError(f"volume must be 0..63 (-dBm0), got {volume}")
        tone_ticks = -(-duration_ms // self.ptime_ms)
        gap_ticks = max(-(-gap_ms // self.ptime_ms), END_PACKETS - 1)
        script: list[Tick] = []
        for event in events:
            for k in range(tone_ticks):
                duration = (k + 1) * self.samples_per_tick
                last = k == tone_ticks - 1
                payload = TelephoneEvent(event, last, volume, duration).build()
                script.append(EventTick(payload, marker=k == 0, start=k == 0))
            final = TelephoneEvent(event, True, volume, tone_ticks * self.samples_per_tick).build()
            script += [EventTick(final, marker=False, start=False)] * (END_PACKETS - 1)
            script += [AudioTick()] * (gap_ticks - (END_PACKETS - 1))
        return script


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One digit from the far end, reported once, when it ended."""

    digit: str
    duration_ms: int
    source: Literal["rfc4733", "inband"] = "rfc4733"


class _State(Enum):
    IDLE = "idle"
    ACTIVE = "active"


class _Input(Enum):
    NEW = "packet of a new event"
    NEW_END = "end packet of a new event"
    UPDATE = "packet of the current event"
    END = "end packet of the current event"
    STALE = "packet of a finished or older event"
    TIMEOUT = "end timeout"


def _ts_newer(a: int, b: int) -> bool:
    """Whether RTP timestamp ``a`` is after ``b``, modulo 2**32."""
    return a != b and ((a - b) & 0xFFFFFFFF) < (1 << 31)


class DtmfReceiver:
    """Telephone-event packets in, each digit out once (see the module docstring).

    Feed every telephone-event packet of the stream to ``receive`` with the
    current time; call ``handle_timer`` at ``next_timer()``. Both return the
    digits that finished.
    """

    # (state, input) -> (action, next state). Anything else is a bug (DtmfProtocolError).
    TRANSITIONS: ClassVar[dict[tuple[_State, _Input], tuple[str, _State]]] = {
        (_State.IDLE, _Input.NEW): ("begin", _State.ACTIVE),
        (_State.IDLE, _Input.NEW_END): ("begin_and_finish", _State.IDLE),
        (_State.IDLE, _Input.STALE): ("ignore", _State.IDLE),
        (_State.ACTIVE, _Input.UPDATE): ("extend", _State.ACTIVE),
        (_State.ACTIVE, _Input.END): ("finish", _State.IDLE),
        (_State.ACTIVE, _Input.NEW): ("finish_and_begin", _State.ACTIVE),
        (_State.ACTIVE, _Input.NEW_END): ("finish_begin_and_finish", _State.IDLE),
        (_State.ACTIVE, _Input.STALE): ("ignore", _State.ACTIVE),
        (_State.ACTIVE, _Input.TIMEOUT): ("finish", _State.IDLE),
    }

    def __init__(self, clock_rate: int = 8000, end_timeout: float = END_TIMEOUT) -> None:
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self.state = _State.IDLE
        self._ssrc: int | None = None
        self._timestamp = 0  # start timestamp of the current (or last) event
        self._event = 0
        self._duration = 0
        self._last_packet_at = 0.0
        self._finished = False  # whether the event at _timestamp was reported
        self._have_any = False
        self.ignored = 0  # stale, duplicate and non-DTMF packets, for statistics
        self._actions: dict[
            str, Callable[[TelephoneEvent | None, int, float], list[DtmfReceived]]
        ] = {
            "begin": self._begin,
            "begin_and_finish": self._begin_and_finish,
            "ignore": self._ignore,
            "extend": self._extend,
            "finish": self._finish,
            "finish_and_begin": self._finish_and_begin,
            "finish_begin_and_finish": self._finish_begin_and_finish,
        }

    def next_timer(self) -> float | None:
        if self.state is _State.ACTIVE:
            return self._last_packet_at + self.end_timeout
        return None

    def handle_timer(self, now: float) -> list[DtmfReceived]:
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return []
        return self._step(_Input.TIMEOUT, None, self._timestamp, now)

    def receive(
        self, payload: bytes, timestamp: int, now: float, *, ssrc: int = 0
    ) -> list[DtmfReceived]:
        """One telephone-event RTP packet's payload, RTP timestamp and arrival time."""
        out = self.handle_timer(now)  # an overdue end timeout comes first
        try:
            event = TelephoneEvent.parse(payload)
        except DtmfProtocolError:
            self.ignored += 1
            return out
        if event.event not in DIGIT_OF_EVENT:
            self.ignored += 1
            return out
        if self._ssrc is not None and ssrc != self._ssrc:
            # A new source: whatever was in progress from the old one is over.
            if self.state is _State.ACTIVE:
                out += self._step(_Input.TIMEOUT, None, self._timestamp, now)
            self._have_any = False
        self._ssrc = ssrc
        out += self._step(self._classify(event, timestamp), event, timestamp, now)
        return out

    def _classify(self, event: TelephoneEvent, timestamp: int) -> _Input:
        if not self._have_any or _ts_newer(timestamp, self._timestamp):
            return _Input.NEW_END if event.end else _Input.NEW
        if timestamp != self._timestamp:
            return _Input.STALE
        if self._finished:
            # A retransmitted end or a late (even marked) packet of a finished event. A peer
            # that reused a timestamp for a new digit would be lost here; RFC 4733 forbids it,
            # and telling it apart from a late start packet is what duplicate digits come from.
            return _Input.STALE
        return _Input.END if event.end else _Input.UPDATE

    def _step(
        self, what: _Input, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        try:
            action, next_state = self.TRANSITIONS[(self.state, what)]
        except KeyError:
            raise DtmfProtocolError(
                f"no transition from {self.state.value} on {what.value}"
            ) from None
        result = self._actions[action](event, timestamp, now)
        self.state = next_state
        return result

    # --- actions ---------------------------------------------------------------

    def _begin(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        assert event is not None  # the table only begins on a packet
        self._have_any = True
        self._timestamp = timestamp
        self._event = event.event
        self._duration = event.duration
        self._finished = False
        self._last_packet_at = now
        return []

    def _extend(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        assert event is not None  # the table only extends on a packet
        self._duration = max(self._duration, event.duration)
        self._last_packet_at = now
        return []

    def _finish(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        if event is not None:
            self._duration = max(self._duration, event.duration)
        self._finished = True
        ms = self._duration * 1000 // self.clock_rate
        return [DtmfReceived(DIGIT_OF_EVENT[self._event], ms)]

    def _ignore(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        self.ignored += 1
        return []

    def _begin_and_finish(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        self._begin(event, timestamp, now)
        return self._finish(event, timestamp, now)

    def _finish_and_begin(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        done = self._finish(None, self._timestamp, now)
        self._begin(event, timestamp, now)
        return done

    def _finish_begin_and_finish(
        self, event: TelephoneEvent | None, timestamp: int, now: float
    ) -> list[DtmfReceived]:
        done = self._finish(None, self._timestamp, now)
        return done + self._begin_and_finish(event, timestamp, now)
