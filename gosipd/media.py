"""The media session of one call: what ``call.py`` and apps use.

``MediaSession`` joins the native media loop (``gosipd._media.MediaLoop``,
a paced RTP thread that never takes the GIL) with the sans-I/O parts that
run a few times a second in Python: RFC 4733 sending and receiving
(``rtp.dtmf``), RTCP reports and round-trip time (``rtp.rtcp``), and the
MOS estimate (``rtp.quality``). It is driven like the SIP engine: wait until
``fileno()`` is readable or ``next_timer()`` is due, then call
``process()`` and handle the events it returns. ``events()`` is that loop
for trio; ``call.py`` may use it or write its own.

Typical use by the call worker::

    rtp, rtcp = bind_rtp_pair("192.0.2.10")
    offer = sdp.make_offer("192.0.2.10", rtp.getsockname()[1])
    ...  # INVITE, 200 OK with the answer
    session = MediaSession(rtp, sdp.negotiate(offer, answer), rtcp_sock=rtcp)
    session.start()
    session.play(pcm)                       # int16 8 kHz, queued
    session.send_dtmf("123#")
    async for event in events(session):     # DtmfReceived, PlaybackDrained, MediaTimeout...
        ...
    session.update(sdp.negotiate(reoffer, reanswer))   # re-INVITE: moves with no gap
    stats = session.close()                 # RTCP BYE; final MediaStatistics
"""

from __future__ import annotations

import math
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace

from gosipd import _dsp, _media
from gosipd.rtp import quality
from gosipd.rtp.dtmf import (
    AudioTick,
    DtmfReceived,
    DtmfReceiver,
    DtmfSender,
    EventTick,
)
from gosipd.rtp.rtcp import RtcpSession, SenderSnapshot
from gosipd.rtp.statistics import ReceptionSnapshot
from gosipd.sdes import SrtpKeys
from gosipd.sdp import NegotiatedMedia
from gosipd.srtp import RtpContext, SrtpContext, SrtpError, rtp_context

__all__ = [
    "DEFAULT_MEDIA_TIMEOUT",
    "AudioAvailable",
    "DtmfReceived",
    "DtmfSent",
    "MediaError",
    "MediaEvent",
    "MediaResumed",
    "MediaSession",
    "MediaStatistics",
    "MediaTimeout",
    "PlaybackDrained",
    "RemoteLatched",
    "bind_rtp_pair",
    "events",
]

#: Seconds without a packet before ``MediaTimeout`` (0 disables).
DEFAULT_MEDIA_TIMEOUT = 30.0
#: The default range RTP ports are taken from (RTP even, RTCP the next odd one).
DEFAULT_PORTS = range(20000, 30000, 2)
#: The most samples ``play`` accepts in one call queue (10 minutes of audio).
MAX_PLAYBACK_SAMPLES = 8000 * 600
SAMPLE_RATE = 8000
_TONE_LEVEL_DBOV = -10.0


class MediaError(RuntimeError):
    """A media session was used wrongly (not started, closed, bad input)."""


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaybackDrained:
    """Everything passed to ``play`` has been sent."""


@dataclass(frozen=True, slots=True)
class DtmfSent:
    """The digits of one ``send_dtmf`` call have all been sent."""

    digits: str


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """Nothing was received for ``silent_for`` seconds (raised once, until media resumes)."""

    silent_for: float


@dataclass(frozen=True, slots=True)
class MediaResumed:
    """Packets arrive again after a ``MediaTimeout``."""


@dataclass(frozen=True, slots=True)
class AudioAvailable:
    """Received audio is waiting in ``read_audio()`` (only after ``want_audio()``)."""


@dataclass(frozen=True, slots=True)
class RemoteLatched:
    """Symmetric RTP: we now send to ``address``, where the far end's packets come from."""

    address: tuple[str, int]


MediaEvent = (
    DtmfReceived
    | DtmfSent
    | PlaybackDrained
    | MediaTimeout
    | MediaResumed
    | AudioAvailable
    | RemoteLatched
)


@dataclass(frozen=True, slots=True)
class MediaStatistics:
    """The media figures a ``call.ended`` event carries, and more."""

    packets_sent: int
    octets_sent: int
    packets_received: int
    octets_received: int
    packets_expected: int
    packets_lost: int
    packets_late: int
    jitter_ms: float
    rtt_ms: float | None
    mos: float
    jitter_buffer_ms: float
    frames_concealed: int
    malformed: int
    strangers: int
    #: The SRTP crypto-suite (None: plain RTP), and how many packets failed its
    #: authentication or replay check (RTP and RTCP; dropped, never played).
    srtp: str | None
    srtp_rejected: int
    audio_frames_dropped: int
    remote_fraction_lost: float | None
    send_lateness_p50_ms: float
    send_lateness_p99_ms: float
    send_lateness_max_ms: float
    thread_cpu_s: float
    #: Whether the media thread ran under SCHED_FIFO (see ``realtime_priority``).
    realtime: bool

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


# ---------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------


def _rotated_even_ports(ports: Iterable[int]) -> Iterator[int]:
    """The even ports of ``ports`` from a random one onwards, wrapping around.

    A range (the configured port span) is walked by arithmetic: building the list
    of its 5,000 candidates cost a millisecond on every call's critical path.
    """
    if isinstance(ports, range) and ports.step > 0:
        if ports.step % 2 == 0:  # all even, or all odd
            even = ports if ports.start % 2 == 0 else range(0)
        else:  # parity alternates: every other element is even
            first = ports.start if ports.start % 2 == 0 else ports.start + ports.step
            even = range(first, ports.stop, 2 * ports.step)
        even = range(even.start, min(even.stop, 65535), even.step)
        if even and even[0] <= 0:  # port 0 (and below) is no port
            even = even[-even[0] // even.step + 1 :]
        start = secrets.randbelow(len(even)) if even else 0
        for i in range(len(even)):
            yield even[(start + i) % len(even)]
        return
    candidates = [p for p in ports if p % 2 == 0 and 0 < p < 65535]
    start = secrets.randbelow(len(candidates)) if candidates else 0
    yield from candidates[start:] + candidates[:start]


def bind_rtp_pair(
    host: str, ports: Iterable[int] = DEFAULT_PORTS, *, rtcp: bool = True
) -> tuple[socket.socket, socket.socket | None]:
    """Bind an RTP socket on an even port of ``ports`` (and RTCP on the next port).

    Ports are tried in a random order so that concurrent workers rarely
    collide. Raises ``OSError`` when none is free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in _rotated_even_ports(ports):
        rtp_sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp_sock.bind((host, port))
        except OSError:
            rtp_sock.close()
            continue
        if not rtcp:
            return rtp_sock, None
        rtcp_sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtcp_sock.bind((host, port + 1))
        except OSError:
            rtcp_sock.close()
            rtp_sock.close()
            continue
        return rtp_sock, rtcp_sock
    raise OSError(f"no free RTP port pair on {host} in {ports!r}")


# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------


@dataclass
class _DtmfRequest:
    digits: str
    ticks: deque[EventTick | AudioTick] | None  # RFC 4733
    tones: deque[bytes] | None  # in-band, one chunk (tone + gap) per digit


class MediaSession:
    """One call's media: RTP both ways, DTMF both ways, RTCP, statistics.

    ``sock`` is the bound RTP socket; ``rtcp_sock`` the RTCP one (omit it
    when RTCP is multiplexed, or to send no RTCP on a separate port). The
    session owns both from ``start()`` until ``close()``. ``realtime_priority``
    (1-99) asks for SCHED_FIFO for the media thread (see ``MediaLoop``).
    ``receive_audio`` keeps received frames for ``read_audio`` from the start.

    ``confirmed=False`` (an inbound call before its ACK): the SDP's address is
    not trusted to want our media, since anyone can forge an INVITE naming a
    third party's; RTP and RTCP then go only where RTP (or RTCP) has come from,
    until ``confirm()``. See "Unconfirmed remotes" in ``gosipd._media``.
    """

    def __init__(
        self,
        sock: socket.socket,
        media: NegotiatedMedia,
        *,
        rtcp_sock: socket.socket | None = None,
        media_timeout: float = DEFAULT_MEDIA_TIMEOUT,
        cname: str | None = None,
        symmetric: bool = True,
        comfort_noise_dbov: float = -60.0,
        initial_delay_ms: int = 40,
        realtime_priority: int | None = None,
        receive_audio: bool = False,
        confirmed: bool = True,
    ) -> None:
        self._sock = sock
        self._rtcp_sock = None if media.rtcp_mux else rtcp_sock
        self._loop = _media.MediaLoop(
            sock,
            rtcp_sock=self._rtcp_sock,
            ptime_ms=media.ptime,
            comfort_noise_dbov=comfort_noise_dbov,
            initial_delay_ms=initial_delay_ms,
            realtime_priority=realtime_priority,
        )
        self._media = media
        self._media_timeout = media_timeout
        self._symmetric = symmetric
        self._confirmed = confirmed
        self._held = False
        self._started = False
        self._closed = False
        self._latched: tuple[str, int] | None = None
        self._rtcp_source: tuple[str, int] | None = None
        host = sock.getsockname()[0]
        self.rtcp = RtcpSession(
            ssrc=self._loop.ssrc, cname=cname or f"gosipd-{secrets.token_hex(4)}@{host}"
        )
        self._receiver = DtmfReceiver()
        self._playback: deque[memoryview] = deque()
        self._playback_pending = 0
        self._playback_underruns = 0
        self._dtmf: deque[_DtmfRequest] = deque()
        self._dtmf_in_flight: deque[_DtmfRequest] = deque()
        self._rtcp_rejected = 0
        self._rtcp_send_errors = 0
        self._srtp_keys: SrtpKeys | None = None
        self._srtp: tuple[RtpContext | None, RtpContext | None] | None = None
        self._srtcp: tuple[SrtpContext | None, SrtpContext | None] = (None, None)
        self._srtcp_rejected = 0
        self._loop.deliver_audio(receive_audio)
        self._apply()

    # --- lifecycle ---------------------------------------------------------------

    @property
    def media(self) -> NegotiatedMedia:
        return self._media

    @property
    def ssrc(self) -> int:
        return int(self._loop.ssrc)

    @property
    def remote(self) -> tuple[str, int]:
        """Where RTP goes now: the latched source, else the SDP address."""
        return self._latched or self._media.remote

    def fileno(self) -> int:
        """Readable when ``process()`` has something to do."""
        return int(self._loop.fileno())

    def start(self, now: float | None = None) -> None:
        if self._closed:
            raise MediaError("the media session is closed")
        if self._started:
            return
        self._loop.start()
        self._started = True
        self.rtcp.start(time.monotonic() if now is None else now)

    def close(self, reason: str = "hangup", *, wait: bool = True) -> MediaStatistics:
        """Stop the media (an RTCP BYE goes out) and return the final statistics.

        The media thread notices within one packet time; ``wait=False`` returns at once
        instead of waiting up to 20 ms for it (an event loop should not block that long),
        and a later ``close()`` joins the thread."""
        if self._closed:
            if wait:
                self._loop.stop()
            return self.statistics()
        if self._started:
            self._send_rtcp(time.monotonic(), time.time(), bye=reason)
        self._loop.stop(wait)
        self._closed = True
        return self.statistics()

    # --- re-INVITE, hold ---------------------------------------------------------

    def update(self, media: NegotiatedMedia) -> None:
        """Apply a new offer/answer outcome: a moved address (no audible gap), another
        codec, ptime or direction. Takes effect at the loop's next tick."""
        if media.remote != self._media.remote:
            self._latched = None
            self._rtcp_source = None
        self._media = media
        self._apply()

    def update_remote(self, address: str, port: int, *, rtcp_port: int | None = None) -> None:
        """Send to a new address (a re-INVITE moved the media); the old one is still heard
        for ``_media.MOVE_GRACE`` seconds."""
        m = self._media
        self.update(
            replace(
                m,
                remote_address=address,
                remote_port=port,
                remote_rtcp_address=address,
                remote_rtcp_port=rtcp_port if rtcp_port else (port if m.rtcp_mux else port + 1),
            )
        )

    @property
    def confirmed(self) -> bool:
        return self._confirmed

    def confirm(self) -> None:
        """The signalling confirmed the remote (the ACK came): send to the SDP's address
        too, not only to where RTP came from."""
        if not self._confirmed:
            self._confirmed = True
            self._apply()

    def hold(self) -> None:
        """Send nothing (our side of a hold); receiving is unchanged."""
        self._held = True
        self._apply()

    def resume(self) -> None:
        self._held = False
        self._apply()

    def _rekey(self, keys: SrtpKeys | None) -> None:
        """New SRTP contexts for whichever direction's key changed (a re-INVITE that
        keeps a key keeps its context: its rollover counter and replay window)."""
        old = self._srtp_keys
        if keys == old:
            return
        self._srtp_keys = keys
        if keys is None:
            self._srtp, self._srtcp = None, (None, None)
            return
        out_rtp, in_rtp = self._srtp or (None, None)
        out_rtcp, in_rtcp = self._srtcp
        try:
            if old is None or (old.suite, old.local) != (keys.suite, keys.local):
                out_rtp = rtp_context(keys.suite, keys.local, outbound=True)
                out_rtcp = SrtpContext(keys.suite, keys.local, outbound=True)
            if old is None or (old.suite, old.remote) != (keys.suite, keys.remote):
                in_rtp = rtp_context(keys.suite, keys.remote, outbound=False)
                in_rtcp = SrtpContext(keys.suite, keys.remote, outbound=False)
        except SrtpError as exc:
            raise MediaError(f"cannot use the negotiated SRTP keys: {exc}") from None
        self._srtp, self._srtcp = (out_rtp, in_rtp), (out_rtcp, in_rtcp)

    def _apply(self) -> None:
        m = self._media
        reachable = m.remote_address not in ("0.0.0.0", "::") and m.remote_port != 0
        self._rekey(m.srtp)
        try:
            remote: tuple[str, int] | None = m.remote if reachable else None
            self._loop.configure(
                remote=remote,
                send=m.sending and reachable and not self._held,
                receive=m.receiving,
                payload_type=m.payload_type,
                telephone_event_pt=m.telephone_event_pt,
                receive_telephone_event_pt=m.receive_telephone_event_pt,
                accept_payload_types=tuple(pt for pt, _ in m.receive_payload_types)
                or (m.payload_type,),
                comfort_noise_pt=m.comfort_noise_pt,
                ptime_ms=m.ptime,
                media_timeout=self._media_timeout if m.receiving else 0.0,
                symmetric=self._symmetric,
                confirmed=self._confirmed,
                srtp=self._srtp,
            )
        except ValueError as exc:
            raise MediaError(f"cannot use the negotiated media {m.remote}: {exc}") from None

    # --- audio out (to the far end) ------------------------------------------------

    def play(self, pcm: bytes | bytearray | memoryview) -> None:
        """Queue 8 kHz int16 PCM to send after what is already queued."""
        view = memoryview(pcm).cast("B")
        if len(view) % 2:
            raise MediaError(f"pcm has {len(view)} bytes: 16-bit PCM needs an even count")
        if self._playback_pending + len(view) // 2 > MAX_PLAYBACK_SAMPLES:
            raise MediaError(f"more than {MAX_PLAYBACK_SAMPLES} samples queued for playback")
        if not view:
            return
        self._playback.append(view)
        self._playback_pending += len(view) // 2
        self._pump_playback()

    def stop_playback(self) -> None:
        """Drop everything queued for playback."""
        self._playback.clear()
        self._playback_pending = 0
        self._loop.flush(playback=True)

    @property
    def playback_queued(self) -> int:
        """Samples not yet sent (in Python and in the loop)."""
        return self._playback_pending + int(self._loop.playback_queued)

    def _pump_playback(self) -> None:
        while self._playback:
            chunk = self._playback[0]
            taken = int(self._loop.write_playback(chunk))
            self._playback_pending -= taken
            if taken * 2 < len(chunk):
                self._playback[0] = chunk[taken * 2 :]
                break
            self._playback.popleft()
        self._loop.want_playback_low(bool(self._playback))

    # --- DTMF out --------------------------------------------------------------------

    def send_dtmf(self, digits: str, duration_ms: int = 100, gap_ms: int = 50) -> None:
        """Send digits after any still being sent: RFC 4733 events when the far end
        negotiated telephone-event, else in-band tones. ``DtmfSent`` follows."""
        m = self._media
        if m.telephone_event_pt is not None:
            ticks = DtmfSender(m.ptime).ticks(digits, duration_ms, gap_ms)
            request = _DtmfRequest(digits, deque(ticks), None)
        else:
            DtmfSender(m.ptime).ticks(digits, duration_ms, gap_ms)  # validates the arguments
            silence = bytes(SAMPLE_RATE * gap_ms // 1000 * 2)
            chunks = deque(
                _dsp.ToneGenerator.dtmf(d, _TONE_LEVEL_DBOV).frame(
                    SAMPLE_RATE * duration_ms // 1000
                )
                + silence
                for d in digits
            )
            request = _DtmfRequest(digits, None, chunks)
        self._dtmf.append(request)
        self._pump_dtmf()

    def _pump_dtmf(self) -> None:
        while self._dtmf:
            request = self._dtmf[0]
            if request.ticks is not None:
                # queue whole digits only, so a refill never splits a tone
                batch: list[tuple[bytes | None, bool, bool]] = []
                while request.ticks:
                    digit = _take_digit(request.ticks)
                    space = _media.SCRIPT_CAPACITY - int(self._loop.script_queued) - len(batch)
                    if len(digit) > space:
                        request.ticks.extendleft(reversed(digit))
                        break
                    batch += [
                        (t.payload, t.marker, t.start)
                        if isinstance(t, EventTick)
                        else (None, False, False)
                        for t in digit
                    ]
                if batch:
                    self._loop.queue_script(batch)
                if request.ticks:
                    return  # the rest goes when the loop drains what it has
            else:
                assert request.tones is not None
                while request.tones:
                    chunk = request.tones[0]
                    if (_media.TONES_CAPACITY - int(self._loop.tones_queued)) * 2 < len(chunk):
                        return
                    self._loop.write_tones(chunk)
                    request.tones.popleft()
            self._dtmf.popleft()
            self._dtmf_in_flight.append(request)

    # --- audio in (from the far end) ---------------------------------------------------

    def receive_audio(self, flag: bool = True) -> None:
        """Keep received audio for ``read_audio`` from now on (off by default, so that a
        call whose app never listens does not copy every frame for nobody)."""
        self._loop.deliver_audio(flag)

    def want_audio(self, flag: bool = True) -> None:
        """Ask for one ``AudioAvailable`` event when the next received frame is ready
        (turns ``receive_audio`` on)."""
        self._loop.want_audio(flag)

    def read_audio(self) -> list[bytes]:
        """The received 8 kHz int16 frames not yet read, oldest first (one per ptime).

        The first call turns ``receive_audio`` on if it was off (and returns
        nothing yet). At most one second is kept; if the app reads less
        often, the oldest frames are dropped and counted
        (``audio_frames_dropped``).
        """
        self._loop.deliver_audio(True)
        return [pcm for _kind, pcm in self._loop.read_frames()]

    # --- driving -----------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """The ``time.monotonic()`` at which ``process`` must run even if nothing arrives."""
        timers = [t for t in (self.rtcp.next_timer(), self._receiver.next_timer()) if t is not None]
        return min(timers) if timers else None

    def process(self, now: float | None = None, wallclock: float | None = None) -> list[MediaEvent]:
        """Handle what the loop reported and what is due; return the app's events."""
        now = time.monotonic() if now is None else now
        wallclock = time.time() if wallclock is None else wallclock
        out: list[MediaEvent] = []
        for kind, a, b, c, at_ns in self._loop.read_events():
            out += self._on_loop_event(kind, a, b, c, at_ns / 1e9)
        out += self._receiver.handle_timer(now)
        if self._started and not self._closed:
            self._send_rtcp(now, wallclock)
        return out

    def _on_loop_event(self, kind: int, a: int, b: int, c: int, at: float) -> list[MediaEvent]:
        if kind == _media.EVENT_TELEPHONE_EVENT:
            payload = (c & 0xFFFFFFFF).to_bytes(4, "big")
            return list(self._receiver.receive(payload, b & 0xFFFFFFFF, at, ssrc=c >> 32))
        if kind == _media.EVENT_INBAND_DIGIT:
            return [DtmfReceived(_dsp.DTMF_EVENT_DIGITS[a], int(b), "inband")]
        if kind == _media.EVENT_MEDIA_TIMEOUT:
            return [MediaTimeout(b / 1e9)]
        if kind == _media.EVENT_MEDIA_RESUMED:
            return [MediaResumed()]
        if kind == _media.EVENT_PLAYBACK_LOW:
            self._pump_playback()
            return []
        if kind == _media.EVENT_PLAYBACK_DRAINED:
            if self._playback:
                self._playback_underruns += 1  # the app's audio arrived too slowly
                self._pump_playback()
                return []
            return [PlaybackDrained()]
        if kind in (_media.EVENT_TONES_DRAINED, _media.EVENT_SCRIPT_DRAINED):
            done: list[MediaEvent] = []
            if self._loop.script_queued == 0 and self._loop.tones_queued == 0:
                # everything handed to the loop has gone out
                done = [DtmfSent(r.digits) for r in self._dtmf_in_flight]
                self._dtmf_in_flight.clear()
            self._pump_dtmf()
            return done
        if kind == _media.EVENT_AUDIO:
            return [AudioAvailable()]
        if kind == _media.EVENT_PACKET:
            return self._on_packets()
        return []

    def _on_packets(self) -> list[MediaEvent]:
        out: list[MediaEvent] = []
        for kind, data, source, arrival_ns in self._loop.read_packets():
            if kind == _media.PACKET_LATCHED:
                self._latched = source
                out.append(RemoteLatched(source))
            elif kind == _media.PACKET_RTCP:
                expected_hosts = {self._media.remote_address, self._media.remote_rtcp_address}
                if self._latched is not None:
                    expected_hosts.add(self._latched[0])
                if source[0] not in expected_hosts:
                    self._rtcp_rejected += 1
                    continue
                if self._srtp is not None:
                    inbound = self._srtcp[1]
                    try:
                        if inbound is None:
                            raise SrtpError("no key")
                        data = inbound.unprotect_rtcp(data)
                    except SrtpError:
                        self._srtcp_rejected += 1
                        continue
                if self.rtcp.receive(data, arrival_ns / 1e9):
                    self._rtcp_source = source
        return out

    def _send_rtcp(self, now: float, wallclock: float, bye: str | None = None) -> None:
        if bye is None:
            due = self.rtcp.next_timer()
            if due is None or now < due:
                return
        sent = self._sender_snapshot(now)
        received = self._reception_snapshot()
        if bye is None:
            report = self.rtcp.handle_timer(now, wallclock, sent, received)
        else:
            report = self.rtcp.report(wallclock, sent, received, bye=bye)
        if report is None:
            return
        m = self._media
        if not self._confirmed:
            # before the ACK the SDP's address is only a claim: send RTCP only where the
            # far end has shown itself (its RTP source, or where its RTCP came from)
            heard_from = self._latched if m.rtcp_mux else (self._rtcp_source or self._latched)
            if heard_from is None:
                return
        if m.rtcp_mux:
            sock, dest = self._sock, self.remote
        elif self._rtcp_sock is not None:
            sock = self._rtcp_sock
            dest = self._rtcp_source or (
                (self._latched[0], m.remote_rtcp_port) if self._latched else m.remote_rtcp
            )
        else:
            return
        if dest[0] in ("0.0.0.0", "::") or dest[1] == 0:
            return
        if self._srtp is not None:
            outbound = self._srtcp[0]
            if outbound is None:
                return
            try:
                report = outbound.protect_rtcp(report)
            except SrtpError:
                self._rtcp_send_errors += 1
                return
        try:
            sock.sendto(report, dest)
        except OSError:
            # RTCP is best effort; an unreachable far end shows in the RTP statistics.
            self._rtcp_send_errors += 1

    def _sender_snapshot(self, now: float) -> SenderSnapshot:
        packets, octets, ts, tick_ns = self._loop.sender_state()
        elapsed = max(0.0, now - tick_ns / 1e9)
        return SenderSnapshot(packets, octets, (ts + int(elapsed * SAMPLE_RATE)) & 0xFFFFFFFF)

    def _reception_snapshot(self) -> ReceptionSnapshot:
        ssrc, received, expected, extended, jitter, duplicates = self._loop.reception_state()
        return ReceptionSnapshot(ssrc, received, expected, extended, jitter, duplicates)

    # --- statistics ---------------------------------------------------------------------

    def statistics(self) -> MediaStatistics:
        c = self._loop.counters()
        r = self._reception_snapshot()
        jb = self._loop.jitter_buffer
        lost = max(0, r.lost)
        rtt_ms = self.rtcp.rtt * 1000 if self.rtcp.rtt is not None else None
        mos = quality.estimate_mos(
            packets_expected=r.expected,
            packets_lost=min(r.expected, lost + jb.late),
            rtt_ms=rtt_ms,
            jitter_buffer_ms=jb.target_ms,
        )
        p50, p99 = _percentiles(self._loop.lateness_histogram(), (0.5, 0.99))
        remote = self.rtcp.remote_report
        return MediaStatistics(
            packets_sent=c["packets_sent"],
            octets_sent=c["octets_sent"],
            packets_received=c["packets_received"],
            octets_received=c["octets_received"],
            packets_expected=r.expected,
            packets_lost=lost,
            packets_late=jb.late,
            jitter_ms=round(r.jitter / (SAMPLE_RATE / 1000), 3),
            rtt_ms=None if rtt_ms is None else round(rtt_ms, 3),
            mos=mos,
            jitter_buffer_ms=jb.target_ms,
            frames_concealed=jb.frames_concealed + jb.frames_comfort_noise,
            malformed=c["malformed"],
            strangers=c["strangers"] + c["probation_dropped"],
            srtp=self._srtp_keys.suite if self._srtp_keys is not None else None,
            srtp_rejected=c["srtp_auth_failures"] + c["srtp_replays"] + self._srtcp_rejected,
            audio_frames_dropped=c["frames_dropped"],
            remote_fraction_lost=None if remote is None else remote.fraction_lost / 256,
            send_lateness_p50_ms=p50,
            send_lateness_p99_ms=p99,
            send_lateness_max_ms=c["lateness_max_ns"] / 1e6,
            thread_cpu_s=c["thread_cpu_ns"] / 1e9,
            realtime=bool(c["realtime"]),
        )


def _take_digit(ticks: deque[EventTick | AudioTick]) -> list[EventTick | AudioTick]:
    """Pop one digit's ticks (its events and the audio gap after them)."""
    taken = [ticks.popleft()]
    while ticks and not (isinstance(ticks[0], EventTick) and ticks[0].start):
        taken.append(ticks.popleft())
    return taken


def _percentiles(histogram: tuple[list[int], list[int]], quantiles: Iterable[float]) -> list[float]:
    edges, counts = histogram
    total = sum(counts)
    out = []
    for q in quantiles:
        if total == 0:
            out.append(0.0)
            continue
        target = q * total
        running = 0
        for edge, count in zip(edges, counts, strict=True):
            running += count
            if running >= target:
                out.append(edge / 1000 if edge >= 0 else math.inf)
                break
    return out


async def events(session: MediaSession) -> AsyncIterator[MediaEvent]:
    """The trio loop that drives a session: yields its events until cancelled."""
    import trio  # the call worker's event loop; below call.py nothing else imports it

    while True:
        deadline = session.next_timer()
        if deadline is None:
            await trio.lowlevel.wait_readable(session.fileno())
        else:
            with trio.move_on_after(max(0.0, deadline - time.monotonic())):
                await trio.lowlevel.wait_readable(session.fileno())
        for event in session.process():
            yield event
