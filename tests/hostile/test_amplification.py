"""A forged INVITE must not turn gosipd into an RTP cannon (the hardening issue, item 3).

The attacker sends one INVITE whose SDP (and Via) name a third party, and never ACKs.
Before the fix gosipd answered and streamed to the victim until the 2xx gave up: 2,101
RTP packets (361 KB) from one 415-byte datagram. Now no RTP or RTCP goes to an address
before the ACK confirms the dialog or RTP arrives from it, and the unconfirmed dialog is
ended with a BYE at 64*T1 (RFC 3261 §13.3.1.4), with the cause ``ack_timeout``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from gosipd.call import Call
from gosipd.config import InboundConfig
from tests.hostile.raw_caller import RawCaller, answering_front, offer
from tests.worker.conftest import config_with, ended_event
from tests.worker.rtp_sink import RtpSink

T1 = 0.05  # 64*T1 = 3.2 s
RING_MS = 300


@pytest.mark.parametrize("early_media", [False, True], ids=["answered", "early_media_183"])
async def test_an_unacked_invite_naming_a_third_party_sends_it_no_media_and_ends_at_64_t1(
    tmp_path: Path, early_media: bool
) -> None:
    ring = InboundConfig(ring_ms=RING_MS, early_media=True) if early_media else InboundConfig()
    config = config_with(t1=T1, inbound=ring)
    app_started = False

    async def app(call: Call) -> None:
        nonlocal app_started
        app_started = True
        await call.wait_ended()

    victim_rtp, victim_rtcp = await RtpSink.bind(), await RtpSink.bind()
    attacker = await RawCaller.bind("forged1")  # its Via and Contact: the victim's too
    async with answering_front(tmp_path, app, config) as front, trio.open_nursery() as nursery:
        for sink in (victim_rtp, victim_rtcp):
            nursery.start_soon(sink.collect)
        nursery.start_soon(attacker.collect)
        sent_at = time.time()
        await attacker.invite(
            front.address, offer("127.0.0.1", victim_rtp.port, rtcp_port=victim_rtcp.port)
        )
        with trio.fail_after(64 * T1 + RING_MS / 1000 + 5):
            await front.ended.wait()  # call.ended, then the worker's linger
        await trio.sleep(0.3)  # anything still on its way
        nursery.cancel_scope.cancel()
    for closable in (victim_rtp, victim_rtcp, attacker):
        closable.close()

    assert victim_rtp.packets == [] and victim_rtcp.packets == []
    lines = attacker.first_lines()
    assert lines.count("SIP/2.0 200 OK") >= 5  # the 2xx was retransmitted until 64*T1...
    assert ("SIP/2.0 183 Session Progress" in lines) is early_media
    assert any(line.startswith("BYE ") for line in lines)  # ...then the BYE of §13.3.1.4
    end = ended_event(front.only_call())
    assert end["cause"] == "ack_timeout" and not end["answered"]
    assert end["media"]["packets_sent"] == 0
    answered_after = RING_MS / 1000 if early_media else 0.0
    assert 64 * T1 - 0.2 <= end["ts"] - sent_at - answered_after <= 64 * T1 + 1.0
    assert not app_started  # the app starts at the ACK


async def test_early_media_still_reaches_a_caller_that_sends_rtp(tmp_path: Path) -> None:
    """The far end proves it is there by sending RTP: early media flows back to exactly that
    source before any ACK (and only there)."""
    config = config_with(t1=T1, inbound=InboundConfig(ring_ms=1500, early_media=True))

    async def app(call: Call) -> None:
        await call.wait_ended()

    caller_rtp, named = await RtpSink.bind(), await RtpSink.bind()
    caller = await RawCaller.bind("early1")
    async with answering_front(tmp_path, app, config) as front, trio.open_nursery() as nursery:
        for sink in (caller_rtp, named):
            nursery.start_soon(sink.collect)
        nursery.start_soon(caller.collect)
        # the SDP names `named`; the caller's RTP really comes from `caller_rtp` (a NAT)
        await caller.invite(front.address, offer("127.0.0.1", named.port))
        progress, _ = await caller.wait_for(b"SIP/2.0 183")
        our_port = int(progress.split(b"m=audio ", 1)[1].split(b" ", 1)[0])
        for seq in range(10):  # the caller's own early RTP, from behind its NAT
            header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
            await caller_rtp.sock.sendto(header + b"\x01\x02\x03\x04" + b"\xff" * 160,
                                         ("127.0.0.1", our_port))  # fmt: skip
            await trio.sleep(0.02)
        await trio.sleep(0.3)
        heard_before_answer = len(caller_rtp.packets)
        front.only_call().hangup("local_hangup")  # still ringing: a 480 ends it
        with trio.fail_after(5):
            await front.ended.wait()
        nursery.cancel_scope.cancel()
    for closable in (caller_rtp, named, caller):
        closable.close()

    assert heard_before_answer >= 10  # our early media went where the RTP came from
    assert named.packets == []  # and never to the address only the SDP claimed
    assert ended_event(front.only_call())["cause"] == "local_hangup"
