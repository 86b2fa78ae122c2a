"""The media loop against a real peer: SIPp's -rtp_echo sends our RTP straight back.

No SIP is involved: SIPp echoes whatever reaches its media port. Our 1 kHz
tone must come back as a 1 kHz tone (numpy's FFT), at its level, through
the jitter buffer, with nothing lost.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import trio

from gosipd import _dsp
from gosipd.media import MediaSession, PlaybackDrained, events

from .conftest import SippEcho, negotiated

pytestmark = pytest.mark.interop


def spectrum_peak(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_our_1khz_tone_comes_back_from_sipp_rtp_echo(sipp_echo: SippEcho, codec: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    session = MediaSession(
        sock, negotiated(sipp_echo.media_port, codec=codec), media_timeout=2.0, receive_audio=True
    )
    session.play(_dsp.ToneGenerator(1000, -10.0).frame(8000))  # one second
    session.start()
    frames: list[bytes] = []
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        session.process()
        frames += session.read_audio()
        time.sleep(0.05)
    stats = session.close()
    sock.close()
    loud = [f for f in frames if _dsp.rms_dbov(f) > -20]
    assert len(loud) >= 48  # the whole second came back (50 frames, edges may straddle)
    audio = b"".join(loud)
    assert abs(spectrum_peak(audio) - 1000) < 5
    assert _dsp.rms_dbov(audio) == pytest.approx(-10.0, abs=1.0)  # two G.711 passes
    assert stats.packets_lost == 0 and stats.packets_late == 0
    assert stats.packets_received >= stats.packets_sent - 3  # only those still in flight
    assert stats.mos > 4.3


async def test_trio_drives_a_session_until_playback_drains(sipp_echo: SippEcho) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    session = MediaSession(
        sock, negotiated(sipp_echo.media_port), media_timeout=2.0, receive_audio=True
    )
    session.play(_dsp.ToneGenerator(440, -12.0).frame(4000))
    session.start()
    with trio.fail_after(3):
        async for event in events(session):
            if isinstance(event, PlaybackDrained):
                break
    audio = b"".join(f for f in session.read_audio() if _dsp.rms_dbov(f) > -20)
    session.close()
    sock.close()
    assert abs(spectrum_peak(audio) - 440) < 5
