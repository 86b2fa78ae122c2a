"""The media loop on loopback: pacing, RFC 4733 on the wire, strict symmetric RTP, hold,
re-INVITE moves, timeouts, playback, received audio, RTCP and statistics.

The far end is a real UDP socket in the test (it sees exactly what a peer
would see) or our own media session in another process.
"""

from __future__ import annotations

import itertools
import socket
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd import _dsp, _media
from gosipd.media import (
    DtmfReceived,
    DtmfSent,
    MediaError,
    MediaEvent,
    MediaResumed,
    MediaSession,
    MediaTimeout,
    PlaybackDrained,
    RemoteLatched,
    _rotated_even_ports,
    bind_rtp_pair,
)
from gosipd.rtp.dtmf import TelephoneEvent
from gosipd.rtp.packet import RtpPacket
from gosipd.rtp.rtcp import ReceiverReport, SenderReport, parse_compound

from .conftest import FarEnd, negotiated, rtcp_exchanged, wait_for

UDP = Callable[[], socket.socket]


def receive(
    sock: socket.socket, count: int, timeout: float = 3.0
) -> list[tuple[float, RtpPacket, tuple[str, int]]]:
    """The next ``count`` RTP packets arriving on ``sock``, with arrival times."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            break
        got.append((time.monotonic(), RtpPacket.parse(data), source))
    return got


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass
    sock.setblocking(True)


def pump(session: MediaSession, seconds: float, until: type | None = None) -> list[MediaEvent]:
    events: list[MediaEvent] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events += session.process()
        if until is not None and any(isinstance(e, until) for e in events):
            break
        time.sleep(0.005)
    return events


class Pumping:
    """Drive ``session.process()`` from a helper thread while the test reads its socket."""

    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.events: list[MediaEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.events += self.session.process()
            time.sleep(0.005)

    def __enter__(self) -> Pumping:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Sender:
    """A far end that sends a paced PCMU stream from one socket."""

    def __init__(self, sock: socket.socket, to: tuple[str, int], ssrc: int = 0x5EED) -> None:
        self.sock, self.to, self.ssrc = sock, to, ssrc
        self.seq, self.ts = 1000, 50000

    def send(
        self,
        payload: bytes = b"\xff" * 160,
        *,
        pt: int = 0,
        marker: bool = False,
        advance: bool = True,
    ) -> None:
        self.sock.sendto(
            RtpPacket(pt, self.seq, self.ts, self.ssrc, payload, marker).build(), self.to
        )
        self.seq = (self.seq + 1) & 0xFFFF
        if advance:
            self.ts += 160

    def stream(self, seconds: float, payload: bytes = b"\xff" * 160) -> None:
        start = time.monotonic()
        for k in range(int(seconds * 50)):
            self.send(payload)
            time.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))


@pytest.fixture
def session_to(udp: UDP) -> Callable[..., MediaSession]:
    made: list[MediaSession] = []

    def make(peer: socket.socket, **kw: object) -> MediaSession:
        options = {
            k: kw.pop(k)
            for k in list(kw)
            if k in ("media_timeout", "symmetric", "rtcp_sock", "receive_audio", "confirmed")
        }
        s = MediaSession(udp(), negotiated(peer.getsockname()[1], **kw), **options)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in made:
        s.close()


# --- sending ------------------------------------------------------------------------


def test_packets_leave_every_20ms_with_rfc3550_headers(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    got = receive(peer, 60)
    assert len(got) == 60
    packets = [p for _, p, _ in got]
    assert {p.payload_type for p in packets} == {0} and {len(p.payload) for p in packets} == {160}
    assert {p.ssrc for p in packets} == {session.ssrc}
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))
    assert all(
        (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(packets)
    )
    gaps = [b - a for (a, _, _), (b, _, _) in itertools.pairwise(got[10:])]
    assert abs(statistics.median(gaps) - 0.020) < 0.002
    assert abs((got[-1][0] - got[10][0]) / (len(got) - 11) - 0.020) < 0.001  # no drift


def test_playback_is_sent_in_order_then_drained_then_comfort_noise(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    # 3 s (more than the loop's 2 s ring) of a ramp that says which sample is which
    ramp = (np.arange(24000) % 2000 * 8).astype(np.int16)
    session.play(ramp.tobytes())
    session.start()
    with Pumping(session) as pumping:
        got = receive(peer, 150 + 10, timeout=6.0)
        wait_for(lambda: any(isinstance(e, PlaybackDrained) for e in pumping.events))
    decoded = np.frombuffer(
        b"".join(_dsp.ulaw_decode(p.payload) for _, p, _ in got[:150]), dtype=np.int16
    )
    expected = np.frombuffer(_dsp.ulaw_decode(_dsp.ulaw_encode(ramp.tobytes())), dtype=np.int16)
    assert np.array_equal(decoded, expected)
    tail = b"".join(_dsp.ulaw_decode(p.payload) for _, p, _ in got[151:])
    assert _dsp.rms_dbov(tail) < -50  # comfort noise, not silence and not audio
    assert _dsp.rms_dbov(tail) > -75


def test_received_audio_is_kept_only_once_asked_for(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    Sender(peer, session._sock.getsockname()).stream(0.2)
    assert session.read_audio() == []  # nobody asked: nothing was copied
    time.sleep(0.2)
    assert 8 <= len(session.read_audio()) <= 12  # from the first read on


def test_pcma_is_sent_with_payload_type_8(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, codec="PCMA")
    session.play(_dsp.ToneGenerator(1000, -10).frame(1600))
    session.start()
    got = receive(peer, 5)
    assert {p.payload_type for _, p, _ in got} == {8}
    assert _dsp.rms_dbov(_dsp.alaw_decode(got[2][1].payload)) == pytest.approx(-10, abs=0.5)


def test_rfc4733_digit_on_the_wire(udp: UDP, session_to: Callable[..., MediaSession]) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    before = [p for _, p, _ in receive(peer, 5)]
    session.send_dtmf("5")
    got = before + [p for _, p, _ in receive(peer, 30)]
    first_event = next(i for i, p in enumerate(got) if p.payload_type == 101)
    events = got[first_event : first_event + 7]
    assert [p.payload_type for p in events] == [101] * 7
    parsed = [TelephoneEvent.parse(p.payload) for p in events]
    assert [e.duration for e in parsed] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in parsed] == [False] * 4 + [True] * 3
    assert [p.marker for p in events] == [True] + [False] * 6
    start_ts = events[0].timestamp
    assert {p.timestamp for p in events} == {start_ts}
    assert start_ts == (got[first_event - 1].timestamp + 160) & 0xFFFFFFFF
    after = got[first_event + 7]
    assert after.payload_type == 0
    assert (after.timestamp - start_ts) & 0xFFFFFFFF == 7 * 160  # audio time kept running
    assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(got))
    assert any(isinstance(e, DtmfSent) for e in pump(session, 0.5, until=DtmfSent))


def test_hold_sends_nothing_and_resume_continues_the_timeline(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    before = receive(peer, 10)
    session.hold()
    time.sleep(0.05)
    drain(peer)
    assert receive(peer, 1, timeout=0.3) == []
    session.resume()
    after = receive(peer, 3)
    last, first = before[-1], after[0]
    assert (first[1].sequence - last[1].sequence) & 0xFFFF <= 4  # only the in-flight ones
    elapsed_ticks = round((first[0] - last[0]) / 0.02)
    assert abs(((first[1].timestamp - last[1].timestamp) & 0xFFFFFFFF) / 160 - elapsed_ticks) <= 2


def test_sendonly_direction_from_sdp_receives_nothing_into_the_app(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, direction="sendonly", receive_audio=True)
    session.start()
    Sender(peer, session._sock.getsockname()).stream(0.3)
    assert receive(peer, 3)  # we still send
    assert session.read_audio() == []


# --- receiving ------------------------------------------------------------------------


def test_received_audio_is_decoded_and_played_out(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, receive_audio=True)
    session.start()
    tone = _dsp.ToneGenerator(697, -12)
    sender = Sender(peer, session._sock.getsockname())
    start = time.monotonic()
    for k in range(40):
        sender.send(_dsp.ulaw_encode(tone.frame(160)))
        time.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))
    time.sleep(0.1)
    frames = session.read_audio()
    audio = [f for f in frames if _dsp.rms_dbov(f) > -20]
    assert len(audio) >= 36
    x = np.frombuffer(b"".join(audio), dtype=np.int16).astype(float)
    peak = np.fft.rfftfreq(len(x), 1 / 8000)[np.argmax(np.abs(np.fft.rfft(x)))]
    assert abs(peak - 697) < 5
    stats = session.statistics()
    assert stats.packets_received == 40 and stats.packets_lost == 0


def test_unread_audio_keeps_the_newest_second_and_counts_the_rest(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, receive_audio=True)
    session.start()
    time.sleep(1.6)
    frames = session.read_audio()
    assert len(frames) <= _media.RECEIVED_FRAMES
    assert session.statistics().audio_frames_dropped >= 20
    time.sleep(0.1)
    assert 3 <= len(session.read_audio()) <= 7  # reading again gives only the new frames


def test_malformed_and_unnegotiated_packets_are_counted_and_dropped(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    ours = session._sock.getsockname()
    for junk in (b"\x00" * 20, b"\x80", b"\x90\x00\x00\x01" + bytes(8) + b"\x00\x01\x00\x09"):
        peer.sendto(junk, ours)
    Sender(peer, ours).send(b"\x00" * 160, pt=18)  # G.729 was not negotiated
    wait_for(
        lambda: (
            session._loop.counters()["malformed"] >= 3
            and session._loop.counters()["unknown_payload"] >= 1
        )
    )
    assert session._loop.counters()["malformed"] == 3, session._loop.counters()
    assert session._loop.counters()["unknown_payload"] == 1
    assert session.statistics().packets_received == 0


def test_received_rfc4733_with_lost_and_repeated_packets_gives_each_digit_once(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    sender = Sender(peer, session._sock.getsockname())
    for _ in range(5):
        sender.send()
    for digit, lose in (("1", {0}), ("1", {4, 5, 6}), ("#", set())):
        start_ts = sender.ts
        packets = [
            TelephoneEvent(int(digit) if digit.isdigit() else 11, k >= 4, 10, min(k + 1, 5) * 160)
            for k in range(7)
        ]
        for k, event in enumerate(packets):
            if k not in lose:
                sender.sock.sendto(
                    RtpPacket(
                        101, sender.seq, start_ts, sender.ssrc, event.build(), k == 0
                    ).build(),
                    sender.to,
                )
                if k == 6:  # a late duplicate of the end
                    sender.sock.sendto(
                        RtpPacket(101, sender.seq, start_ts, sender.ssrc, event.build()).build(),
                        sender.to,
                    )
            sender.seq += 1
            sender.ts += 160
            time.sleep(0.02)
        sender.send()
    events = pump(session, 0.6)
    digits = [(e.digit, e.duration_ms) for e in events if isinstance(e, DtmfReceived)]
    assert digits == [("1", 100), ("1", 80), ("#", 100)]


def test_media_timeout_then_resumed(udp: UDP, session_to: Callable[..., MediaSession]) -> None:
    peer = udp()
    session = session_to(peer, media_timeout=0.3)
    session.start()
    events = pump(session, 1.0, until=MediaTimeout)
    timeouts = [e for e in events if isinstance(e, MediaTimeout)]
    assert len(timeouts) == 1 and timeouts[0].silent_for >= 0.3
    Sender(peer, session._sock.getsockname()).stream(0.1)
    assert any(isinstance(e, MediaResumed) for e in pump(session, 0.5, until=MediaResumed))


# --- symmetric RTP ----------------------------------------------------------------------


def test_a_natted_far_end_is_latched_after_probation(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    sdp_address = udp()  # what the far end's SDP says; nothing ever comes from it
    natted = udp()  # where its packets really come from
    session = session_to(sdp_address)
    session.start()
    assert receive(sdp_address, 2)
    sender = Sender(natted, session._sock.getsockname())
    for _ in range(2):
        sender.send()
    time.sleep(0.1)
    assert receive(natted, 1, timeout=0.2) == []  # two packets are not enough
    sender.send()
    latched = [e for e in pump(session, 0.5, until=RemoteLatched) if isinstance(e, RemoteLatched)]
    assert latched == [RemoteLatched(natted.getsockname())]
    assert receive(natted, 3)
    assert session.remote == natted.getsockname()
    assert session._loop.counters()["probation_dropped"] == 2


def test_strangers_are_not_heard_once_latched(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    stranger = udp()
    session = session_to(peer)
    session.start()
    Sender(peer, session._sock.getsockname()).send()  # from the SDP address: latched at once
    wait_for(lambda: session._loop.counters()["latches"] == 1)
    intruder = Sender(stranger, session._sock.getsockname(), ssrc=0xBAD)
    for _ in range(10):
        intruder.send(b"\x00" * 160)
    wait_for(lambda: session._loop.counters()["strangers"] == 10)
    assert receive(stranger, 1, timeout=0.2) == []
    assert session.statistics().packets_received == 1


def test_a_reinvite_moves_the_media_with_no_gap(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    old, new = udp(), udp()
    session = session_to(old)
    session.start()
    old_sender = Sender(old, session._sock.getsockname())
    old_sender.send()
    before = receive(old, 5)
    session.update_remote("127.0.0.1", new.getsockname()[1])
    after = receive(new, 5)
    in_flight = receive(old, 5, timeout=0.1)
    last_old = (in_flight or before)[-1]
    assert (after[0][1].sequence - last_old[1].sequence) & 0xFFFF == 1  # the next packet, no gap
    assert after[0][0] - last_old[0] < 0.04
    # the old source is still heard during the move, and the new one once it speaks
    received = session.statistics().packets_received
    old_sender.send()
    wait_for(lambda: session.statistics().packets_received == received + 1)
    Sender(new, session._sock.getsockname(), ssrc=0x5EED).send()
    wait_for(lambda: session.statistics().packets_received == received + 2)


# --- DTMF and audio through our own loop in another process ---------------------------


@pytest.mark.parametrize("mode", ["rfc4733", "inband"])
def test_dtmf_from_our_loop_in_another_process_is_received_once_per_digit(
    udp: UDP, far_end: Callable[..., FarEnd], mode: str
) -> None:
    ours = udp()
    sender = far_end(
        "dtmf-send",
        ours.getsockname()[1],
        "1234567890*#ABCD",
        *(["inband"] if mode == "inband" else []),
    )
    te = None if mode == "inband" else 101
    session = MediaSession(ours, negotiated(sender.port, telephone_event_pt=te), media_timeout=0)
    session.start()
    digits: list[DtmfReceived] = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and len(digits) < 16:
        digits += [e for e in session.process() if isinstance(e, DtmfReceived)]
        time.sleep(0.005)
    digits += [e for e in pump(session, 0.3) if isinstance(e, DtmfReceived)]  # nothing more
    session.close()
    assert "".join(d.digit for d in digits) == "1234567890*#ABCD"
    assert {d.source for d in digits} == {mode}
    assert all(80 <= d.duration_ms <= 110 for d in digits)
    assert sender.lines() == ["sent"]


def test_our_dtmf_is_decoded_by_our_loop_in_another_process(
    udp: UDP, far_end: Callable[..., FarEnd]
) -> None:
    ours = udp()
    listener = far_end("dtmf-listen", ours.getsockname()[1], "2.5")
    session = MediaSession(ours, negotiated(listener.port), media_timeout=0)
    session.start()
    time.sleep(0.2)
    session.send_dtmf("911#", duration_ms=120, gap_ms=60)
    assert any(isinstance(e, DtmfSent) for e in pump(session, 2.0, until=DtmfSent))
    lines = listener.lines()
    session.close()
    assert lines == [
        "digit 9 120 rfc4733",
        "digit 1 120 rfc4733",
        "digit 1 120 rfc4733",
        "digit # 120 rfc4733",
    ]


# --- RTCP and statistics ----------------------------------------------------------------


def test_two_sessions_exchange_rtcp_and_measure_round_trip(udp: UDP) -> None:
    with rtcp_exchanged() as (a, b):
        stats = a.statistics()
    assert stats.rtt_ms is not None and 0 <= stats.rtt_ms < 20  # loopback
    assert b.rtcp.rtt is not None
    assert a.rtcp.remote_report is not None and a.rtcp.remote_report.cumulative_lost == 0
    assert stats.packets_lost == 0 and stats.mos > 4.3
    assert stats.packets_received > 0 and stats.jitter_ms < 5


def test_rtcp_bye_on_close_and_reports_are_valid_compound_packets(udp: UDP) -> None:
    peer_rtp, peer_rtcp = udp(), udp()
    session = MediaSession(
        udp(),
        negotiated(peer_rtp.getsockname()[1], rtcp_port=peer_rtcp.getsockname()[1]),
        rtcp_sock=udp(),
        media_timeout=0,
    )
    session.rtcp.min_interval = 0.4
    session.start()
    pump(session, 0.6)
    peer_rtcp.settimeout(1.0)
    first = parse_compound(peer_rtcp.recv(2048))
    assert isinstance(first[0], SenderReport | ReceiverReport)
    session.close("bye now")
    packets = []
    peer_rtcp.settimeout(0.5)
    try:
        while True:
            packets = parse_compound(peer_rtcp.recv(2048))
    except TimeoutError:
        pass
    assert type(packets[-1]).__name__ == "Bye" and packets[-1].reason == "bye now"  # type: ignore[union-attr]


def test_loss_shows_in_the_statistics_and_lowers_the_mos(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer)
    session.start()
    sender = Sender(peer, session._sock.getsockname())
    start = time.monotonic()
    for k in range(100):
        if k % 10 == 5:
            sender.seq += 1  # lost
            sender.ts += 160
        else:
            sender.send()
        time.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))
    time.sleep(0.1)
    stats = session.statistics()
    assert stats.packets_lost == 10 and stats.packets_expected == 99
    assert stats.frames_concealed >= 10
    assert 3.0 < stats.mos < 3.7  # G.107 with G.711 PLC: about 3.3 at 10 % random loss


def test_bad_use_is_refused_with_clear_errors(udp: UDP) -> None:
    with pytest.raises(MediaError, match="not an IPv4 or IPv6"):
        MediaSession(udp(), negotiated(5000, remote_address="pbx.example.com"))
    session = MediaSession(udp(), negotiated(5000))
    with pytest.raises(MediaError, match="even count"):
        session.play(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="not a DTMF digit"):
        session.send_dtmf("12x")
    session.close()
    with pytest.raises(MediaError, match="closed"):
        session.start()


def test_rtcp_multiplexed_on_the_rtp_port_measures_round_trip(udp: UDP) -> None:
    a_sock, b_sock = udp(), udp()
    a = MediaSession(a_sock, negotiated(b_sock.getsockname()[1], rtcp_mux=True), media_timeout=0)
    b = MediaSession(b_sock, negotiated(a_sock.getsockname()[1], rtcp_mux=True), media_timeout=0)
    for s in (a, b):
        s.rtcp.min_interval = 0.5
        s.start()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and a.rtcp.rtt is None:
        a.process()
        b.process()
        time.sleep(0.01)
    a_stats, b_stats = a.close(), b.close()
    assert a_stats.rtt_ms is not None and a_stats.rtt_ms < 20
    assert a_stats.malformed == 0 and b_stats.malformed == 0  # RTCP was not taken for RTP
    assert a.rtcp.reports_received >= 1


def test_a_learned_source_gives_way_to_the_sdp_address_within_the_learning_window(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    sdp_address, first = udp(), udp()
    session = session_to(sdp_address)
    session.start()
    talker = Sender(first, session._sock.getsockname())
    for _ in range(3):  # a source the SDP does not name passes probation
        talker.send()
    wait_for(lambda: session._loop.counters()["latches"] == 1)
    Sender(sdp_address, session._sock.getsockname(), ssrc=0xA).send()  # what signalling named
    wait_for(lambda: session._loop.counters()["latches"] == 2)
    for _ in range(3):  # the learned source is now a stranger like any other
        talker.send()
    wait_for(lambda: session._loop.counters()["strangers"] == 3)
    assert session._loop.counters()["latches"] == 2
    drain(first)
    assert receive(first, 1, timeout=0.2) == []
    latched = [e for e in session.process() if isinstance(e, RemoteLatched)]
    assert latched[-1].address == sdp_address.getsockname() == session.remote


def test_after_the_learning_window_the_sdp_address_cannot_take_the_latch_either(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    sdp_address, natted = udp(), udp()
    session = session_to(sdp_address)
    session.start()
    talker = Sender(natted, session._sock.getsockname())
    for _ in range(3):
        talker.send()
    wait_for(lambda: session._loop.counters()["latches"] == 1)
    time.sleep(_media.LEARNING_WINDOW + 0.1)
    Sender(sdp_address, session._sock.getsockname(), ssrc=0xA).send()
    wait_for(lambda: session._loop.counters()["strangers"] == 1)
    assert session._loop.counters()["latches"] == 1
    drain(natted)
    assert receive(natted, 2)


def test_new_sdp_lets_the_stream_learn_its_source_again(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    old, new, natted = udp(), udp(), udp()
    session = session_to(old)
    session.start()
    Sender(old, session._sock.getsockname()).send()
    wait_for(lambda: session._loop.counters()["latches"] == 1)
    session.update_remote("127.0.0.1", new.getsockname()[1])  # a re-INVITE moved the media
    talker = Sender(natted, session._sock.getsockname(), ssrc=0xB)
    wait_for(lambda: bool(receive(new, 1, timeout=0.1)))  # the move has taken effect
    for _ in range(3):  # the far end's new NAT binding, not the new SDP address
        talker.send()
    wait_for(lambda: session._loop.counters()["latches"] == 2)
    drain(natted)
    assert receive(natted, 2)


def test_an_unconfirmed_remote_gets_no_rtp_or_rtcp_until_rtp_comes_from_it(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, confirmed=False, rtcp_mux=True)
    session.rtcp.min_interval = 0.2
    session.start()
    pump(session, 0.6)  # RTCP would be due twice over
    assert receive(peer, 1, timeout=0.1) == []
    assert session.statistics().packets_sent == 0
    Sender(peer, session._sock.getsockname()).send()  # symmetric RTP: the far end is there
    assert len(receive(peer, 3)) == 3
    assert session.remote == peer.getsockname()


def test_an_unconfirmed_remote_gets_rtp_once_confirmed(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, confirmed=False)
    session.start()
    assert receive(peer, 1, timeout=0.3) == []
    session.confirm()  # the ACK came
    assert len(receive(peer, 3)) == 3


def test_ipv6_media_both_ways() -> None:
    try:
        a_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        a_sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    b_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    b_sock.bind(("::1", 0))
    a = MediaSession(
        a_sock, negotiated(b_sock.getsockname()[1], remote_address="::1"), media_timeout=0
    )
    b = MediaSession(
        b_sock, negotiated(a_sock.getsockname()[1], remote_address="::1"), media_timeout=0
    )
    a.start()
    b.start()
    time.sleep(0.5)
    latched = [e for e in a.process() if isinstance(e, RemoteLatched)]
    b_address = b_sock.getsockname()[:2]
    stats = a.close()
    b.close()
    a_sock.close()
    b_sock.close()
    assert stats.packets_received >= 20 and stats.packets_lost == 0
    assert latched == [RemoteLatched(b_address)]
    assert stats.as_dict()["packets_received"] == stats.packets_received


def test_rtp_ports_are_bound_even_and_rtcp_next_to_them_skipping_taken_ones() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    base = port - port % 2
    # a span of one pair whose RTP or RTCP port is taken, then a free one
    span = range(base, base + 4)
    rtp, rtcp = bind_rtp_pair("127.0.0.1", span)
    assert rtcp is not None
    assert rtp.getsockname()[1] == base + 2 and rtcp.getsockname()[1] == base + 3
    with pytest.raises(OSError, match="no free RTP port pair"):
        bind_rtp_pair("127.0.0.1", span)
    for sock in (taken, rtp, rtcp):
        sock.close()


@given(st.integers(-10, 70_000), st.integers(-10, 70_000), st.integers(1, 9))
def test_the_port_walk_covers_every_even_port_of_any_span_once(start, stop, step) -> None:
    span = range(start, stop, step)
    walked = list(_rotated_even_ports(span))
    assert sorted(walked) == [p for p in span if p % 2 == 0 and 0 < p < 65535]


def test_a_close_without_waiting_stops_the_sending_and_a_later_close_joins(
    udp: UDP, session_to: Callable[..., MediaSession]
) -> None:
    peer = udp()
    session = session_to(peer, media_timeout=0)
    session.start()
    assert len(receive(peer, 5)) == 5
    stats = session.close(wait=False)  # an event loop's call: returns before the thread ends
    assert stats.packets_sent >= 5
    time.sleep(0.1)  # the thread notices within one packet time
    peer.setblocking(False)
    while True:  # what was on its way
        try:
            peer.recv(2048)
        except BlockingIOError:
            break
    time.sleep(0.1)
    with pytest.raises(BlockingIOError):
        peer.recv(2048)  # nothing more: the media stopped
    final = session.close()  # joins the thread; still idempotent
    assert final.packets_sent <= stats.packets_sent + 1  # at most the tick in progress
