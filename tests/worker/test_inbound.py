"""Inbound calls: a real SIPp or baresip dials us, the worker answers and runs the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trio

from gosipd.call import Call
from gosipd.config import Config, InboundConfig
from gosipd.sip import Request, Response, parse
from tests.peers import MEDIA_DIR, read_wav_mono, tone_ratio
from tests.worker.conftest import TEST_CONFIG, config_with, ended_event, events_named
from tests.worker.inbound_front import App, InboundFront

pytestmark = pytest.mark.interop

PROMPT_HZ = 600


@asynccontextmanager
async def answering(
    tmp_path: Path, app: App | None, config: Config = TEST_CONFIG
) -> AsyncIterator[InboundFront]:
    if config.files_directory is None:  # the calls record into the test's directory
        config = replace(config, files_directory=tmp_path)
    front = InboundFront(config, tmp_path / "run", app)
    await front.bind()
    async with trio.open_nursery() as nursery:
        await nursery.start(front.serve)
        yield front
        nursery.cancel_scope.cancel()


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def test_a_sipp_caller_is_answered_and_the_app_hears_its_pcmu(sipp_uac, tmp_path):
    recording = tmp_path / "caller.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await call.wait_ended()

    async with answering(tmp_path, app) as front:
        host, port = front.address
        result = await sipp_uac(
            "uac_pcmu", f"{host}:{port}", call_ms=2000, pcap=MEDIA_DIR / "pcmu_tone1k_5s.pcap"
        ).wait()
        with trio.fail_after(5):
            await front.ended.wait()

    assert result.ok, result.errors
    assert result.received("200") >= 2  # our answer to the INVITE (T1 = 100 ms here: it may
    # be retransmitted once on a busy machine), then to its BYE
    runtime = front.only_call()
    (incoming,) = events_named(runtime, "call.incoming")
    assert incoming["caller"].startswith("sip:sipp@")
    end = ended_event(runtime)
    assert end["cause"] == "remote_hangup" and end["answered"]
    assert end["sip_status"] == 200
    assert end["setup_ms"] < 500
    samples, rate = read_wav_mono(recording)
    assert len(samples) >= 1.8 * rate
    assert abs(dominant_hz(samples[rate // 2 : 3 * rate // 2]) - 1000) < 5


async def test_a_call_to_a_user_without_a_route_is_refused_with_the_configured_status(
    sipp_uac, tmp_path
):
    config = config_with(inbound=InboundConfig(unrouted_status=480))
    async with answering(tmp_path, None, config) as front:
        host, port = front.address
        result = await sipp_uac("uac_pcmu", f"{host}:{port}", timeout=4).wait()
        with trio.fail_after(5):
            await front.ended.wait()

    assert not result.ok
    assert "SIP/2.0 480" in result.messages
    end = ended_event(front.only_call())
    assert end["cause"] == "rejected" and end["sip_status"] == 480


async def test_a_baresip_caller_hears_our_prompt_and_its_digits_are_collected_once_each(
    baresip_uas, tmp_path
):
    alice = baresip_uas("uas", tone_hz=440, record=True)
    digits: list[str] = []
    heard = tmp_path / "alice.wav"

    async def app(call: Call) -> None:
        async with call.record(heard.name):
            await call.play_tones(f"{PROMPT_HZ}:1500")
        digits.append(await call.collect_dtmf(max_digits=4, timeout=8, terminator="#"))
        await call.hangup()

    async with answering(tmp_path, app) as front:
        await alice.ctrl("dial", front.uri("ivr"))
        await alice.wait_event("CALL_ESTABLISHED")
        await trio.sleep(1.7)  # the prompt
        for digit in "4711#":
            await alice.ctrl("sndcode", digit)
            await trio.sleep(0.3)
        with trio.fail_after(10):
            await front.ended.wait()
        await alice.wait_event("CALL_CLOSED", timeout=5)

    assert digits == ["4711"]
    runtime = front.only_call()
    assert [e["digit"] for e in events_named(runtime, "call.dtmf")] == list("4711")
    assert ended_event(runtime)["cause"] == "local_hangup"
    # what alice sent us (her 440 Hz) and what she heard from us (the prompt)
    ours, rate = read_wav_mono(heard)
    assert tone_ratio(ours, rate, 440) > 0.8
    theirs, their_rate = read_wav_mono(alice.recording_path)
    loud = np.flatnonzero(np.abs(theirs) > 1000)
    assert len(loud) > 1.0 * their_rate, "baresip heard at least a second of our prompt"
    prompt = theirs[loud[0] : loud[0] + their_rate]
    assert abs(dominant_hz(prompt, their_rate) - PROMPT_HZ) < 10


async def test_ringing_with_early_media_sends_183_with_sdp_then_200(sipp_uac, tmp_path):
    config = config_with(inbound=InboundConfig(ring_ms=400, early_media=True))

    async def app(call: Call) -> None:
        await call.wait_ended()

    async with answering(tmp_path, app, config) as front:
        host, port = front.address
        result = await sipp_uac("uac_pcmu", f"{host}:{port}", call_ms=500).wait()
        with trio.fail_after(5):
            await front.ended.wait()

    assert result.ok, result.errors
    assert result.received("183") == 1
    assert "SIP/2.0 183" in result.messages and "m=audio" in result.messages
    runtime = front.only_call()
    (ringing,) = events_named(runtime, "call.ringing")
    assert ringing["sip_status"] == 183 and ringing["early_media"] is True
    answered = events_named(runtime, "call.answered")[0]
    assert answered["ts"] - ringing["ts"] >= 0.39


async def test_a_caller_that_cancels_while_we_ring_gets_487_and_the_call_ends_cancelled(
    sipp_uac, tmp_path
):
    config = config_with(inbound=InboundConfig(ring_ms=5000))
    app_ran = False

    async def app(call: Call) -> None:
        nonlocal app_ran
        app_ran = True

    async with answering(tmp_path, app, config) as front:
        host, port = front.address
        result = await sipp_uac("uac_cancel", f"{host}:{port}", call_ms=500).wait()
        with trio.fail_after(5):
            await front.ended.wait()

    assert result.ok, result.errors  # SIPp got its 200 to CANCEL and the 487
    assert result.received("487") == 1
    end = ended_event(front.only_call())
    assert end["cause"] == "cancelled" and end["sip_status"] == 487
    assert not end["answered"] and not app_ran


async def test_keypresses_do_not_count_as_network_jitter(baresip_uas, tmp_path):
    alice = baresip_uas("uas")

    async def app(call: Call) -> None:
        await call.collect_dtmf(max_digits=4, timeout=8)
        await call.hangup()

    async with answering(tmp_path, app) as front:
        await alice.ctrl("dial", front.uri("ivr"))
        await alice.wait_event("CALL_ESTABLISHED")
        for digit in "1234":
            await alice.ctrl("sndcode", digit)
            await trio.sleep(0.3)
        with trio.fail_after(10):
            await front.ended.wait()

    assert ended_event(front.only_call())["media"]["jitter_ms"] < 10


def invite_from(local: tuple[str, int], front: tuple[str, int], call_id: str) -> bytes:
    host, port = local
    return (
        f"INVITE sip:ivr@{front[0]}:{front[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:nat@{host}:{port}>;tag=natted\r\n"
        f"To: <sip:ivr@{front[0]}:{front[1]}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:nat@{host}:{port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(OFFER)}\r\n\r\n"
    ).encode() + OFFER


OFFER = (
    b"v=0\r\no=nat 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


async def test_the_invite_is_answered_from_the_address_it_was_sent_to(tmp_path):
    """RFC 3581 §4: behind a NAT, only responses from where the request went get back."""

    async def app(call: Call) -> None:
        await call.wait_ended()

    caller = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await caller.bind(("127.0.0.1", 0))
    async with answering(tmp_path, app) as front:
        await caller.sendto(invite_from(caller.getsockname(), front.address, "nat1"), front.address)
        answers: list[tuple[str, tuple[str, int]]] = []
        with trio.fail_after(5):
            while not answers or not answers[-1][0].startswith("SIP/2.0 200"):
                data, source = await caller.recvfrom(65535)
                answers.append((data.decode(), source))
        ok = answers[-1][0]
        contact_port = int(ok.split("Contact: <sip:gosipd@127.0.0.1:", 1)[1].split(">")[0])
        to = next(h for h in ok.split("\r\n") if h.startswith("To:"))
        ack = (
            f"ACK sip:gosipd@127.0.0.1:{contact_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {caller.getsockname()[0]}:{caller.getsockname()[1]}"
            ";branch=z9hG4bKnat1ack;rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:nat@127.0.0.1>;tag=natted\r\n{to}\r\nCall-ID: nat1\r\n"
            "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
        await caller.sendto(ack.encode(), ("127.0.0.1", contact_port))
        await trio.sleep(0.2)
        front.only_call().hangup("local_hangup")  # BYE from the worker's own port
        with trio.fail_after(5):
            bye, bye_source = b"", ("", 0)
            while not bye.startswith(b"BYE "):
                bye, bye_source = await caller.recvfrom(65535)
            request = parse(bye)
            assert isinstance(request, Request)
            await caller.sendto(bytes(Response.for_request(request, 200)), bye_source)
            await front.ended.wait()
    caller.close()

    assert [text.split("\r\n", 1)[0] for text, _ in answers] == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 200 OK",
    ]
    assert {source for _, source in answers} == {front.address}
    assert bye_source == ("127.0.0.1", contact_port)  # in-dialog requests: from our Contact
    assert ended_event(front.only_call())["cause"] == "local_hangup"
