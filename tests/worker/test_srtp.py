"""SRTP calls against baresip's srtp module, checked on the wire.

gosipd dials baresip and baresip dials gosipd, with SRTP required (RTP/SAVP,
baresip ``mediaenc=srtp-mand``) and offered (RTP/AVP with a=crypto, baresip
``mediaenc=srtp``). The audio must arrive intact at both ends, and a capture
of the loopback must show RTP whose payload is not the µ-law that was sent,
which the keys in the capture's own SDP decrypt back to it (with pylibsrtp's
``Session``, not gosipd's code).
"""

from __future__ import annotations

import audioop
import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pylibsrtp
import pytest
import trio

from gosipd.call import Call
from tests.peers import CapturedDatagram, LoopbackCapture, clearest, read_wav_mono, tone_ratio
from tests.worker.conftest import config_with, ended_event, events_named, place_call
from tests.worker.test_inbound import answering

__all__ = ["place_call"]

pytestmark = pytest.mark.interop

OUR_HZ = 1000
THEIR_HZ = 440
PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


@dataclass
class Side:
    """One end of the call as the capture's SDP describes it."""

    rtp_port: int
    proto: str
    crypto: dict[int, tuple[str, bytes]]  # tag -> (suite, key and salt)


def _sdp_side(payload: bytes) -> Side:
    text = payload.decode("utf-8", "replace")
    m = re.search(r"^m=audio (\d+) (\S+)", text, re.M)
    assert m is not None, text
    crypto = {
        int(tag): (suite, base64.b64decode(key))
        for tag, suite, key in re.findall(
            r"^a=crypto:(\d+) (\S+) inline:([A-Za-z0-9+/=]+)", text, re.M
        )
    }
    return Side(int(m.group(1)), m.group(2), crypto)


def _offer_and_answer(datagrams: list[CapturedDatagram]) -> tuple[Side, Side]:
    invite = next(
        d for d in datagrams if d.payload.startswith(b"INVITE ") and b"m=audio" in d.payload
    )
    ok = next(
        d for d in datagrams if d.payload.startswith(b"SIP/2.0 200") and b"m=audio" in d.payload
    )
    return _sdp_side(invite.payload), _sdp_side(ok.payload)


def _rtp_between(datagrams: list[CapturedDatagram], source: int, destination: int) -> list[bytes]:
    return [
        d.payload
        for d in datagrams
        if d.source[1] == source
        and d.destination[1] == destination
        and len(d.payload) >= 12
        and not 192 <= d.payload[1] <= 223  # RTCP
    ]


def _audio(payloads: list[bytes]) -> np.ndarray:
    """The µ-law payloads (12-octet headers, PT 0) as one signal."""
    ulaw = b"".join(p[12:] for p in payloads if p[1] & 0x7F == 0)
    return np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype="<i2").astype(np.float64)


def _decrypt(packets: list[bytes], suite: str, key: bytes) -> list[bytes]:
    session = pylibsrtp.Session(
        pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILES[suite]
        )
    )
    return [session.unprotect(p) for p in packets]


def check_the_wire(datagrams: list[CapturedDatagram], *, offerer_hz: int, answerer_hz: int) -> str:
    """Both directions are SRTP with the SDP's keys, and decrypt to the tones sent."""
    offer, answer = _offer_and_answer(datagrams)
    (tag,) = answer.crypto  # RFC 4568: the answer has one line, with a tag of the offer's
    suite, answer_key = answer.crypto[tag]
    assert offer.crypto[tag][0] == suite
    offer_key = offer.crypto[tag][1]
    for source, destination, key, hz in (
        (offer.rtp_port, answer.rtp_port, offer_key, offerer_hz),
        (answer.rtp_port, offer.rtp_port, answer_key, answerer_hz),
    ):
        packets = _rtp_between(datagrams, source, destination)
        assert len(packets) > 50, f"RTP {source} -> {destination}: {len(packets)} packets"
        # on the wire: not µ-law of the tone (and not µ-law of anything tonal)
        assert tone_ratio(_audio(packets), 8000, hz) < 0.05
        plain = _decrypt(packets[5:], suite, key)
        assert all(len(p) < len(c) for p, c in zip(plain, packets[5:], strict=True))
        assert tone_ratio(_audio(plain), 8000, hz) > 0.8
    return suite


async def test_a_call_to_baresip_with_srtp_required_is_encrypted_and_heard_both_ways(
    baresip_uas: Any, place_call: Any, tmp_path: Path
) -> None:
    bob = baresip_uas("uas", tone_hz=THEIR_HZ, record=True, mediaenc="srtp-mand")
    recording = place_call.files / "bob.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await call.play_tones(f"{OUR_HZ}:2000")

    capture = LoopbackCapture(tmp_path / "capture")
    try:
        runtime = await place_call(bob.uri, app, config=config_with(rtp_srtp="required"))
        await bob.wait_event("CALL_CLOSED", timeout=5)
    finally:
        capture.stop()

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert end["media"]["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    assert end["media"]["packets_lost"] == 0
    samples, rate = read_wav_mono(recording)
    assert clearest(samples, rate, THEIR_HZ) > 0.8
    heard, their_rate = read_wav_mono(bob.recording_path)
    assert clearest(heard, their_rate, OUR_HZ) > 0.8
    datagrams = capture.datagrams()
    offer, _ = _offer_and_answer(datagrams)
    assert offer.proto == "RTP/SAVP" and len(offer.crypto) == 3
    assert check_the_wire(datagrams, offerer_hz=OUR_HZ, answerer_hz=THEIR_HZ) == (
        "AES_CM_128_HMAC_SHA1_80"
    )
    assert "SRTP is Enabled" in bob.log()


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"])
async def test_each_other_suite_works_with_baresip(
    baresip_uas: Any, place_call: Any, suite: str
) -> None:
    bob = baresip_uas("uas", tone_hz=THEIR_HZ, mediaenc="srtp-mand")
    recording = place_call.files / "bob.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await trio.sleep(1.5)

    config = config_with(rtp_srtp="required", rtp_srtp_suites=(suite,))
    runtime = await place_call(bob.uri, app, config=config)

    end = ended_event(runtime)
    assert end["media"]["srtp"] == suite
    samples, rate = read_wav_mono(recording)
    assert clearest(samples, rate, THEIR_HZ) > 0.8


async def test_best_effort_srtp_is_taken_by_a_peer_that_has_it_and_skipped_by_one_that_does_not(
    baresip_uas: Any, place_call: Any
) -> None:
    config = config_with(rtp_srtp="offer")
    for mediaenc, expected in (("srtp", "AES_CM_128_HMAC_SHA1_80"), (None, None)):
        bob = baresip_uas("uas", tone_hz=THEIR_HZ, mediaenc=mediaenc)
        recording = place_call.files / f"bob-{mediaenc}.wav"

        async def app(call: Call, recording: Path = recording) -> None:
            async with call.record(recording.name):
                await trio.sleep(1.5)

        runtime = await place_call(bob.uri, app, config=config)

        end = ended_event(runtime)
        assert end["cause"] == "local_hangup"
        assert end["media"]["srtp"] == expected
        samples, rate = read_wav_mono(recording)
        assert clearest(samples, rate, THEIR_HZ) > 0.8, mediaenc


async def test_a_peer_without_srtp_cannot_take_a_call_that_requires_it(
    baresip_uas: Any, place_call: Any
) -> None:
    bob = baresip_uas("uas", tone_hz=THEIR_HZ)

    async def app(call: Call) -> None:
        await trio.sleep(1.0)

    runtime = await place_call(bob.uri, app, config=config_with(rtp_srtp="required"))

    end = ended_event(runtime)
    assert end["cause"] == "rejected" and end["sip_status"] == 488  # baresip refuses RTP/SAVP
    assert end["media"]["packets_sent"] == 0


async def test_an_answer_in_plain_rtp_to_a_required_srtp_offer_ends_the_call_unheard(
    sipp_uas: Any, place_call: Any
) -> None:
    echo = sipp_uas("echo")  # answers any offer with a fixed RTP/AVP PCMU SDP, no a=crypto

    async def app(call: Call) -> None:
        await trio.sleep(1.0)

    runtime = await place_call(echo.uri(), app, config=config_with(rtp_srtp="required"))

    end = ended_event(runtime)
    assert end["cause"] == "srtp_failed"
    assert "SRTP was required and the answer has no a=crypto" in end["reason"]
    assert end["media"]["packets_sent"] == 0  # not one plain RTP packet
    assert echo.received("ACK") == 1 and echo.received("BYE") == 1


async def test_a_baresip_caller_with_srtp_required_is_answered_in_srtp(
    baresip_uas: Any, tmp_path: Path
) -> None:
    alice = baresip_uas("uas", tone_hz=THEIR_HZ, record=True, mediaenc="srtp-mand")
    heard = tmp_path / "alice.wav"

    async def app(call: Call) -> None:
        async with call.record(heard.name):
            await call.play_tones(f"{OUR_HZ}:2000")
        await call.hangup()

    capture = LoopbackCapture(tmp_path / "capture")
    try:
        async with answering(tmp_path, app, config_with(rtp_srtp="required")) as front:
            await alice.ctrl("dial", front.uri("ivr"))
            with trio.fail_after(10):
                await front.ended.wait()
            await alice.wait_event("CALL_CLOSED", timeout=5)
    finally:
        capture.stop()

    end = ended_event(front.only_call())
    assert end["cause"] == "local_hangup"
    assert end["media"]["srtp"] is not None
    ours, rate = read_wav_mono(heard)
    assert clearest(ours, rate, THEIR_HZ) > 0.8
    theirs, their_rate = read_wav_mono(alice.recording_path)
    assert clearest(theirs, their_rate, OUR_HZ) > 0.8
    check_the_wire(capture.datagrams(), offerer_hz=THEIR_HZ, answerer_hz=OUR_HZ)


async def test_a_plain_caller_is_refused_with_488_when_srtp_is_required(
    baresip_uas: Any, tmp_path: Path
) -> None:
    alice = baresip_uas("uas", tone_hz=THEIR_HZ)

    async def app(call: Call) -> None:
        await call.wait_ended()

    async with answering(tmp_path, app, config_with(rtp_srtp="required")) as front:
        await alice.ctrl("dial", front.uri("ivr"))
        with trio.fail_after(10):
            await front.ended.wait()
        await alice.wait_event("CALL_CLOSED", timeout=5)

    end = ended_event(front.only_call())
    assert end["cause"] == "rejected" and end["sip_status"] == 488
    assert not events_named(front.only_call(), "call.answered")
    assert "488 Not Acceptable Here (SRTP)" in alice.log()
