"""SRTP in the media loop: what goes out is SRTP, what comes in must be, keys change cleanly.

The far end is a UDP socket in the test that protects and unprotects with
pylibsrtp's own ``Session`` (not gosipd's wrapper), so the test checks the
wire format against the library's reference use, not against itself.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pylibsrtp
import pytest

from gosipd import _dsp
from gosipd.media import MediaError, MediaSession
from gosipd.rtp.packet import RtpPacket
from gosipd.rtp.rtcp import parse_compound
from gosipd.sdes import SUITES, SrtpKeys
from gosipd.srtp import SrtpContext, SrtpError

from .conftest import negotiated, rtcp_exchanged, wait_for

UDP = Callable[[], socket.socket]
PROFILE = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}
TAG = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4, "AEAD_AES_128_GCM": 16}


def key_for(suite: str) -> bytes:
    return os.urandom(sum(SUITES[suite]))


def reference(suite: str, key: bytes, *, outbound: bool) -> pylibsrtp.Session:
    ssrc = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc, srtp_profile=PROFILE[suite]))


def rtp(seq: int, payload: bytes, *, ssrc: int = 0x1234ABCD, pt: int = 0) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence=seq, timestamp=160 * seq, ssrc=ssrc, payload=payload
    ).build()


class SecureSession:
    """A MediaSession on loopback with SRTP, and the far end's socket and keys."""

    def __init__(self, udp: UDP, suite: str = "AES_CM_128_HMAC_SHA1_80", **kwargs: object):
        self.suite = suite
        self.peer = udp()
        self.ours, self.theirs = key_for(suite), key_for(suite)
        media = replace(
            negotiated(self.peer.getsockname()[1]),
            srtp=SrtpKeys(suite, self.ours, self.theirs),
        )
        self.session = MediaSession(udp(), media, media_timeout=0, **kwargs)  # type: ignore[arg-type]
        self.address = self.session._sock.getsockname()

    def received(self, count: int, timeout: float = 3.0) -> list[bytes]:
        got = []
        self.peer.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self.peer.recv(2048))
            except TimeoutError:
                break
        return got


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_what_we_send_is_srtp_that_the_reference_decrypts_to_our_audio(
    udp: UDP, suite: str
) -> None:
    s = SecureSession(udp, suite)
    tone = _dsp.ToneGenerator(1000, -10).frame(8000)
    s.session.play(tone)
    s.session.start()
    packets = s.received(30)
    s.session.close()

    assert len(packets) == 30
    decrypt = reference(suite, s.ours, outbound=False)
    plain = [RtpPacket.parse(decrypt.unprotect(p)) for p in packets]
    assert all(len(p) == 12 + 160 + TAG[suite] for p in packets)  # the tag is on every packet
    assert [p.sequence for p in plain] == [(plain[0].sequence + i) & 0xFFFF for i in range(30)]
    encoded = _dsp.ulaw_encode(tone)
    # the payload on the wire is not the µ-law; decrypted, it is exactly what we sent
    assert all(p[12 : 12 + 160] != encoded[i * 160 : (i + 1) * 160] for i, p in enumerate(packets))
    assert b"".join(p.payload for p in plain[1:29]) == encoded[160 : 29 * 160]


def test_srtp_from_the_far_end_is_played_and_anything_else_is_dropped(udp: UDP) -> None:
    s = SecureSession(udp, receive_audio=True)
    s.session.start()
    protect = reference(s.suite, s.theirs, outbound=True)
    tone = _dsp.ulaw_encode(_dsp.ToneGenerator(697, -12).frame(160 * 40))
    start = time.monotonic()
    for k in range(40):
        good = protect.protect(rtp(100 + k, tone[160 * k : 160 * (k + 1)]))
        s.peer.sendto(good, s.address)
        if k % 10 == 3:
            s.peer.sendto(good, s.address)  # a replay
        if k % 10 == 5:
            forged = bytearray(good)
            forged[20] ^= 0x01  # one bit of payload: the tag no longer matches
            s.peer.sendto(bytes(forged), s.address)
        if k % 10 == 7:
            s.peer.sendto(rtp(5000 + k, tone[:160]), s.address)  # plain RTP, no tag
        time.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))
    time.sleep(0.1)
    frames = s.session.read_audio()
    stats = s.session.statistics()
    s.session.close()

    assert stats.packets_received == 40 and stats.packets_lost == 0
    assert stats.srtp == "AES_CM_128_HMAC_SHA1_80"
    assert stats.srtp_rejected == 4 + 4 + 4  # replays, forgeries and plain packets
    loud = [f for f in frames if _dsp.rms_dbov(f) > -20]
    x = np.frombuffer(b"".join(loud), dtype=np.int16).astype(float)
    assert len(loud) >= 36
    assert abs(np.fft.rfftfreq(len(x), 1 / 8000)[np.argmax(np.abs(np.fft.rfft(x)))] - 697) < 5


def test_a_stranger_without_the_key_cannot_take_the_stream(udp: UDP) -> None:
    """Symmetric RTP latches only to packets that authenticate."""
    s = SecureSession(udp)
    stranger = udp()
    s.session.start()
    wrong = reference(s.suite, key_for(s.suite), outbound=True)
    for k in range(10):
        stranger.sendto(wrong.protect(rtp(k, b"\xff" * 160, ssrc=99)), s.address)
        time.sleep(0.005)
    time.sleep(0.1)
    s.session.process()
    assert s.session.remote == s.peer.getsockname()  # still the SDP's address
    stats = s.session.statistics()
    s.session.close()
    assert stats.srtp_rejected == 10 and stats.packets_received == 0 and stats.strangers == 0
    stranger.settimeout(0.05)
    with pytest.raises(TimeoutError):
        stranger.recv(2048)


def test_a_new_key_from_the_far_end_applies_without_restarting_ours(udp: UDP) -> None:
    s = SecureSession(udp, receive_audio=True)
    s.session.start()
    first = s.received(5)
    new_theirs = key_for(s.suite)
    s.session.update(replace(s.session.media, srtp=SrtpKeys(s.suite, s.ours, new_theirs)))
    time.sleep(0.05)
    protect = reference(s.suite, new_theirs, outbound=True)
    for k in range(10):
        s.peer.sendto(protect.protect(rtp(k, b"\x55" * 160)), s.address)
        time.sleep(0.02)
    later = s.received(5)
    wait_for(lambda: s.session.statistics().packets_received == 10)
    s.session.close()

    # our outbound context went on: one reference session decrypts before and after
    decrypt = reference(s.suite, s.ours, outbound=False)
    for p in first + later:
        decrypt.unprotect(p)


def test_plain_media_again_after_srtp_sends_plain_rtp(udp: UDP) -> None:
    """A re-INVITE that drops SRTP (only taken when [rtp] srtp allows it) goes plain."""
    s = SecureSession(udp)
    s.session.start()
    s.received(3)
    s.session.update(replace(s.session.media, srtp=None))
    time.sleep(0.1)
    packets = s.received(5)
    s.session.close()
    assert packets and all(len(p) == 12 + 160 for p in packets[-3:])


def test_srtcp_goes_both_ways_between_two_secure_sessions() -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    ka, kb = key_for(suite), key_for(suite)
    with rtcp_exchanged((SrtpKeys(suite, ka, kb), SrtpKeys(suite, kb, ka))) as (a, b):
        stats = a.statistics()
        b_stats = b.statistics()
    assert stats.rtt_ms is not None and b.rtcp.rtt is not None
    assert stats.srtp_rejected == 0 and b_stats.srtp_rejected == 0
    # both round trips can be measured after 0.4 s (20 packets): what counts is none lost
    assert stats.packets_lost == 0 and stats.packets_received >= 10


def test_our_rtcp_is_srtcp(udp: UDP) -> None:
    peer_rtp, peer_rtcp = udp(), udp()
    suite = "AES_CM_128_HMAC_SHA1_80"
    ours = key_for(suite)
    media = replace(
        negotiated(peer_rtp.getsockname()[1], rtcp_port=peer_rtcp.getsockname()[1]),
        srtp=SrtpKeys(suite, ours, key_for(suite)),
    )
    session = MediaSession(udp(), media, rtcp_sock=udp(), media_timeout=0)
    session.rtcp.min_interval = 0.4
    session.start()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        session.process()
        time.sleep(0.01)
    peer_rtcp.settimeout(1.0)
    wire = peer_rtcp.recv(2048)
    session.close()
    plain = reference(suite, ours, outbound=False).unprotect_rtcp(wire)
    assert len(wire) == len(plain) + 4 + 10  # the SRTCP index and the tag
    assert parse_compound(plain)[0].ssrc == session.ssrc


def test_keys_never_show_in_a_repr() -> None:
    key = bytes(range(30))
    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", key, key)
    context = SrtpContext("AES_CM_128_HMAC_SHA1_80", key, outbound=True)
    media = replace(negotiated(4000), srtp=keys)
    for text in (repr(keys), repr(context), repr(media), str(media)):
        assert key.hex() not in text and repr(key) not in text and "inline" not in text


def test_a_key_of_the_wrong_size_is_refused_with_a_reason(udp: UDP) -> None:
    with pytest.raises(SrtpError, match="30-octet"):
        SrtpContext("AES_CM_128_HMAC_SHA1_80", b"short", outbound=True)
    media = replace(negotiated(4000), srtp=SrtpKeys("AES_CM_128_HMAC_SHA1_80", b"x", b"y"))
    with pytest.raises(MediaError, match="SRTP"):
        MediaSession(udp(), media)
