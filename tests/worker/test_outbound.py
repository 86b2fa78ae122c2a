"""Outbound calls from a call worker to real peers: SIPp, baresip and Kamailio on loopback.

Every test places one real call with ``CallRuntime`` in-process and judges it by what a
user of gosipd sees (the events, the recorded audio) and what the far end saw.
"""

from __future__ import annotations

import wave

import numpy as np
import pytest
import trio

from gosipd.call import Call
from gosipd.config import TrunkConfig
from tests.peers import read_wav_mono, tone_ratio
from tests.worker.conftest import config_with, ended_event, event_names, events_named

pytestmark = pytest.mark.interop


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency of the middle second (Hann-windowed FFT)."""
    middle = len(samples) // 2
    segment = samples[max(0, middle - rate // 2) : middle + rate // 2]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    return float(np.fft.rfftfreq(len(segment), 1 / rate)[int(np.argmax(spectrum))])


async def test_our_1khz_tone_comes_back_from_a_sipp_echo_uas(sipp_uas, place_call):
    echo = sipp_uas("echo")
    recording = place_call.files / "echoed.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await call.play_tones("1000:2000")
            await trio.sleep(0.2)  # the last echoed packets

    runtime = await place_call(echo.uri(), app)

    samples, rate = read_wav_mono(recording)
    assert rate == 8000
    assert abs(dominant_hz(samples, rate) - 1000) < 5
    assert tone_ratio(samples, rate, 1000) > 0.9
    names = event_names(runtime)
    assert names[:2] == ["call.started", "locate.target"]
    assert names.index("call.trying") < names.index("call.ringing") < names.index("call.answered")
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert end["sip_status"] == 200 and end["answered"] is True
    assert 2.0 <= end["duration_s"] < 4.0
    assert end["setup_ms"] < 500
    media = end["media"]
    assert media["packets_sent"] >= 100 and media["packets_received"] >= 95
    assert media["packets_lost"] == 0
    assert media["mos"] > 4.0
    assert {"event", "call", "ts"} <= end.keys()
    assert echo.received("BYE") == 1 and echo.received("ACK") == 1


async def test_a_baresip_that_answers_by_itself_is_recorded_saying_440_hz(baresip_uas, place_call):
    bob = baresip_uas("uas", tone_hz=440)
    recording = place_call.files / "bob.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await trio.sleep(2.0)

    runtime = await place_call(bob.uri, app)

    samples, rate = read_wav_mono(recording)
    assert abs(dominant_hz(samples, rate) - 440) < 5
    assert tone_ratio(samples, rate, 440) > 0.8
    assert ended_event(runtime)["cause"] == "local_hangup"
    await bob.wait_event("CALL_CLOSED", timeout=5)


async def test_a_reliable_180_is_pracked_and_the_call_connects(sipp_uas, place_call):
    uas = sipp_uas("100rel")

    async def app(call: Call) -> None:
        await trio.sleep(0.3)

    runtime = await place_call(uas.uri(), app)

    (ringing,) = events_named(runtime, "call.early_media") or events_named(runtime, "call.ringing")
    assert ringing["sip_status"] == 180 and ringing["reliable"] is True
    assert uas.received("PRACK") == 1
    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "local_hangup"


async def test_a_302_retargets_the_call_to_its_contact(sipp_uas, place_call):
    echo = sipp_uas("echo")
    redirect = sipp_uas("302", redirect_to=echo.uri("moved"))

    async def app(call: Call) -> None:
        await trio.sleep(0.3)

    runtime = await place_call(redirect.uri("old"), app)

    (redirected,) = events_named(runtime, "call.redirected")
    assert redirected["sip_status"] == 302
    assert redirected["contact"] == echo.uri("moved")
    assert redirect.received("ACK") == 1  # the 302 was acknowledged
    assert echo.received("INVITE") == 1
    assert "INVITE sip:moved@" in echo.message_log()
    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "local_hangup"


async def test_a_401_is_answered_with_the_trunk_credentials(sipp_uas, place_call):
    uas = sipp_uas("auth401", user="trunkuser", password="s3cret")
    config = config_with(
        trunk=TrunkConfig(domain="127.0.0.1", username="trunkuser", password="s3cret")
    )

    async def app(call: Call) -> None:
        await trio.sleep(0.3)

    runtime = await place_call(uas.uri(), app, config=config)

    (challenged,) = events_named(runtime, "call.auth_challenged")
    assert challenged["sip_status"] == 401
    assert uas.received("INVITE") == 2
    assert 'username="trunkuser"' in uas.message_log()
    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "local_hangup"


async def test_a_401_with_wrong_credentials_fails_the_call_without_looping(sipp_uas, place_call):
    uas = sipp_uas("auth401", user="trunkuser", password="s3cret")
    config = config_with(
        trunk=TrunkConfig(domain="127.0.0.1", username="trunkuser", password="wrong")
    )

    runtime = await place_call(uas.uri(), None, config=config)

    end = ended_event(runtime)
    assert not end["answered"]
    assert end["cause"] == "rejected"
    assert end["sip_status"] in (401, 403)
    assert uas.received("INVITE") <= 2


async def test_kamailio_407_is_answered_and_the_bye_follows_the_record_route(
    kamailio, baresip_uas, place_call
):
    proxy = kamailio("registrar")
    bob = baresip_uas("uas", registrar=f"{proxy.address[0]}:{proxy.address[1]}", password="bobpass")
    with trio.fail_after(10):
        while "AoR: bob" not in proxy.rpc("ul.dump"):
            await trio.sleep(0.1)
    config = config_with(
        trunk=TrunkConfig(
            proxy=f"{proxy.address[0]}:{proxy.address[1]}",
            username="alice",
            password="alicepass",
            from_uri="sip:alice@lab.test",  # Kamailio wants the From user to be the auth user
        )
    )
    seen: dict[str, object] = {}

    async def app(call: Call) -> None:
        await trio.sleep(0.5)
        seen["dialog"] = call._runtime.publication.state.get("dialog")

    runtime = await place_call(proxy.uri("bob"), app, config=config)

    (challenged,) = events_named(runtime, "call.auth_challenged")
    assert challenged["sip_status"] == 407
    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "local_hangup"
    dialog = seen["dialog"]
    assert isinstance(dialog, dict)
    assert dialog["route_set"], "Kamailio record-routes, so the dialog has a route set"
    assert f"{proxy.address[0]}:{proxy.address[1]}" in dialog["route_set"][0]
    assert tuple(dialog["destination"]) == proxy.address  # the BYE goes to the proxy
    await bob.wait_event("CALL_CLOSED", timeout=5)
    assert "session closed: Connection reset by peer" in bob.log()  # baresip's word for a BYE


async def test_cancel_while_ringing_ends_the_call_as_no_answer(baresip_uas, place_call):
    ring = baresip_uas("ring")
    config = config_with(limits={"ring_timeout_s": 1.0})

    runtime = await place_call(ring.uri, None, config=config)

    end = ended_event(runtime)
    assert end["cause"] == "no_answer"
    assert end["sip_status"] == 487
    assert not end["answered"] and end["setup_ms"] is None
    assert events_named(runtime, "call.ringing")
    await ring.wait_event("CALL_CLOSED", timeout=5)


async def test_a_busy_far_end_is_reported_with_its_status(baresip_uas, place_call):
    bob = baresip_uas("uas")
    runtime = await place_call(bob.uri_for("nobody"), None)
    end = ended_event(runtime)
    assert end["cause"] == "rejected"
    assert end["sip_status"] == 404
    assert not end["answered"]


async def test_the_far_end_hanging_up_ends_the_call_as_remote_hangup(baresip_uas, place_call):
    bob = baresip_uas("uas")
    app_saw_end = trio.Event()

    async def app(call: Call) -> None:
        await bob.wait_event("CALL_ESTABLISHED", timeout=5)
        await trio.sleep(0.5)
        await bob.ctrl("hangup")
        await call.wait_ended()
        app_saw_end.set()

    runtime = await place_call(bob.uri, app)

    assert app_saw_end.is_set()
    end = ended_event(runtime)
    assert end["cause"] == "remote_hangup"
    assert end["answered"] and end["duration_s"] >= 0.5


async def test_max_duration_hangs_up_with_its_own_cause(sipp_uas, place_call):
    echo = sipp_uas("echo")

    async def app(call: Call) -> None:
        await call.wait_ended()

    runtime = await place_call(echo.uri(), app, max_duration=1.0)

    end = ended_event(runtime)
    assert end["cause"] == "max_duration"
    assert 1.0 <= end["duration_s"] < 1.5
    assert echo.received("BYE") == 1


def onset_s(samples: np.ndarray, rate: int, threshold: float = 2000.0) -> float:
    loud = np.flatnonzero(np.abs(samples) > threshold)
    assert len(loud), "no audio above the threshold"
    return float(loud[0] / rate)


async def test_a_stereo_recording_has_the_far_end_left_and_us_right_in_step(sipp_uas, place_call):
    echo = sipp_uas("echo")
    recording = place_call.files / "stereo.wav"

    async def app(call: Call) -> None:
        await call.play_tones("0:200", wait=True)  # something is playing when we start
        async with call.record(recording.name, stereo=True):
            await call.play_tones("0:300,1000:1000,0:300")

    await place_call(echo.uri(), app)

    with wave.open(str(recording)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    far, ours = frames[:, 0].astype(float), frames[:, 1].astype(float)
    assert abs(onset_s(ours, 8000) - 0.3) < 0.03  # what we sent, when we sent it
    lag = onset_s(far, 8000) - onset_s(ours, 8000)
    print(f"echo lag in the stereo recording: {lag * 1000:.0f} ms")
    assert 0.0 <= lag < 0.2  # the echo: a round trip and a jitter buffer later
    assert tone_ratio(ours[2400:10400], 8000, 1000) > 0.95
    assert tone_ratio(far[3200:10400], 8000, 1000) > 0.9
