"""A stranger cannot take over a latched RTP stream (the hardening issue, item 4).

Before the fix, once the latched source had been silent for a second, three packets in
a row from anyone re-latched the stream: the stranger's audio reached the app and our
RTP went to the stranger. Now the source is strict after the latch; strangers are
dropped and counted (``strangers`` in the media statistics and in ``call.ended``).
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import trio

from gosipd.call import Call
from gosipd.media import MediaSession
from tests.hostile.raw_caller import RawCaller, answering_front, offer
from tests.media.conftest import negotiated, wait_for
from tests.worker.conftest import config_with, ended_event
from tests.worker.rtp_sink import RtpSink

SILENCE_S = 1.3  # longer than the old re-latch delay (1 s) and the learning window (2 s)


def rtp(seq: int, ssrc: int) -> bytes:
    """A valid-looking PCMU packet: consecutive sequence numbers and timestamps."""
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc) + b"\xff" * 160


def received_count(sock: socket.socket) -> int:
    sock.setblocking(False)
    count = 0
    try:
        while True:
            sock.recv(2048)
            count += 1
    except BlockingIOError:
        return count


def test_a_stranger_cannot_take_a_latched_stream_whose_source_fell_silent() -> None:
    ours, peer, stranger = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for sock in (ours, peer, stranger):
        sock.bind(("127.0.0.1", 0))
    session = MediaSession(ours, negotiated(peer.getsockname()[1]), media_timeout=0)
    session.start()
    try:
        for seq in range(5):  # the far end talks from the SDP address: latched
            peer.sendto(rtp(seq, 0x5EED), ours.getsockname())
            time.sleep(0.02)
        wait_for(lambda: session._loop.counters()["latches"] == 1)
        time.sleep(max(SILENCE_S, 2.1))  # the far end goes quiet (a mute, a hold, a NAT)
        for seq in range(50):  # a second of a well-formed stream from a stranger
            stranger.sendto(rtp(7000 + seq, 0xBAD), ours.getsockname())
            time.sleep(0.02)
        wait_for(lambda: session._loop.counters()["strangers"] == 50)
        time.sleep(0.1)
        assert received_count(stranger) == 0  # not one of our packets went there
        assert received_count(peer) > 100  # the far end kept getting our stream all along
        counters = session._loop.counters()
        assert counters["latches"] == 1
        assert session.remote == peer.getsockname()
    finally:
        stats = session.close()
        for sock in (ours, peer, stranger):
            sock.close()
    assert stats.strangers == 50
    assert stats.packets_received == 5  # the stranger's audio never reached the app


async def test_a_stranger_cannot_take_an_answered_calls_media(tmp_path: Path) -> None:
    """End to end: an inbound call, ACKed, its caller talks then falls silent; a stranger
    sprays RTP at our port. Nothing goes to the stranger; call.ended counts it."""

    async def app(call: Call) -> None:
        await call.wait_ended()

    caller_rtp, stranger = await RtpSink.bind(), await RtpSink.bind()
    caller = await RawCaller.bind("hijack1")
    caller_address = list(caller_rtp.sock.getsockname())
    async with answering_front(tmp_path, app, config_with()) as front, trio.open_nursery() as n:
        for sink in (caller_rtp, stranger):
            n.start_soon(sink.collect)
        n.start_soon(lambda: caller.collect(answer_bye=True))
        await caller.invite(front.address, offer("127.0.0.1", caller_rtp.port))
        ok, _ = await caller.wait_for(b"SIP/2.0 200")
        ours = ("127.0.0.1", int(ok.split(b"m=audio ", 1)[1].split(b" ", 1)[0]))
        await caller.ack()
        for seq in range(10):
            await caller_rtp.sock.sendto(rtp(seq, 0x5EED), ours)
            await trio.sleep(0.02)
        await trio.sleep(SILENCE_S)
        for seq in range(50):
            await stranger.sock.sendto(rtp(9000 + seq, 0xBAD), ours)
            await trio.sleep(0.02)
        await trio.sleep(0.2)
        runtime = front.only_call()
        status = runtime.status()
        heard_by_caller = len(caller_rtp.packets)
        runtime.hangup("local_hangup")
        with trio.fail_after(5):
            await front.ended.wait()
        n.cancel_scope.cancel()
    for closable in (caller_rtp, stranger, caller):
        closable.close()

    assert stranger.packets == []
    assert heard_by_caller > 80  # 10 talking + 1.3 s silent + 1 s of the stranger: ~120
    assert status["media"]["remote"] == caller_address
    assert status["media"]["strangers"] == 50
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert end["media"]["strangers"] == 50
    assert end["media"]["packets_received"] == 10
