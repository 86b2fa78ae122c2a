"""The built-in apps (gosipd/apps/), named as a dial request or a route names them, in real
calls with baresip: what it hears, and what we record."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import trio

from tests.peers import clearest, read_wav_mono, tone_ratio
from tests.worker.conftest import ended_event

pytestmark = pytest.mark.interop


def loud_part(samples: np.ndarray, rate: int, threshold: float = 1000.0) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > threshold)
    assert len(loud), "nothing was heard"
    return samples[loud[0] : loud[-1]]


async def test_tone_plays_its_frequency_without_a_gap(baresip_uas, place_call):
    bob = baresip_uas("uas", record=True)
    runtime = await place_call(bob.uri, app=None, app_name="tone:700", max_duration=3.2)
    await bob.wait_event("CALL_CLOSED", timeout=5)

    assert ended_event(runtime)["cause"] == "max_duration"
    heard, rate = read_wav_mono(bob.recording_path)
    tone = loud_part(heard, rate)
    assert len(tone) > 2.8 * rate
    assert tone_ratio(tone, rate, 700) > 0.9
    block = rate // 100
    envelope = np.abs(tone[: len(tone) // block * block]).reshape(-1, block).max(axis=1)
    assert envelope.min() > 0.5 * np.median(envelope)  # no 10 ms without the tone


async def test_play_plays_a_wav_file_then_hangs_up(baresip_uas, place_call):
    bob = baresip_uas("uas", record=True)
    prompt = place_call.files / "prompt.wav"
    t = np.arange(44100 * 1.5) / 44100
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.repeat((12000 * np.sin(2 * np.pi * 850 * t)).astype("<i2"), 2).tobytes())

    runtime = await place_call(bob.uri, app=None, app_name="play:prompt.wav")
    await bob.wait_event("CALL_CLOSED", timeout=5)

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert 1.5 <= end["duration_s"] < 5.0  # the file, not the 30 s max duration
    heard, rate = read_wav_mono(bob.recording_path)
    tone = loud_part(heard, rate)
    assert 1.3 < len(tone) / rate < 1.6  # baresip's jitter buffer may eat the first frames
    assert tone_ratio(tone, rate, 850) > 0.9


async def test_record_records_both_sides_until_the_far_end_hangs_up(baresip_uas, place_call):
    bob = baresip_uas("uas", tone_hz=440)
    path = place_call.files / "calls" / "bob.wav"
    path.parent.mkdir()  # a recording creates no directories
    runtime = await place_call(bob.uri, app=None, app_name="record:calls/bob.wav", max_duration=2)

    assert ended_event(runtime)["cause"] == "max_duration"
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert frames.shape[0] > 1.8 * 8000
    far = loud_part(frames[:, 0].astype(float), 8000)
    assert len(far) > 1.0 * 8000
    assert clearest(far, 8000, 440) > 0.9  # (as in the echo test below)
    assert np.abs(frames[:, 1]).max() < 100  # we said nothing: comfort noise at most


async def test_echo_sends_the_callers_audio_back(baresip_uas, place_call):
    bob = baresip_uas("uas", tone_hz=440, record=True)
    runtime = await place_call(bob.uri, app=None, app_name="echo", max_duration=2.5)
    await bob.wait_event("CALL_CLOSED", timeout=5)

    assert ended_event(runtime)["cause"] == "max_duration"
    heard, rate = read_wav_mono(bob.recording_path)
    echoed = loud_part(heard, rate)
    assert len(echoed) > 1.5 * rate
    # the clearest half second: baresip's own tone may stutter for a frame on a busy host
    assert clearest(echoed, rate, 440) > 0.9


async def test_an_audio_listener_hears_every_frame_and_a_failing_one_ends_the_call(
    baresip_uas, place_call
):
    bob = baresip_uas("uas", tone_hz=440)
    heard: list[bytes] = []

    async def listening(call) -> None:
        with call.listen_audio(heard.append):
            await trio.sleep(1.0)
        await trio.sleep(0.3)  # not listening any more

    runtime = await place_call(bob.uri, listening)

    assert 45 <= len(heard) <= 56 and all(len(frame) == 320 for frame in heard)
    assert ended_event(runtime)["cause"] == "local_hangup"

    def broken(frame: bytes) -> None:
        raise RuntimeError("a bug in a listener")

    async def failing(call) -> None:
        with call.listen_audio(broken):
            await call.wait_ended()

    runtime = await place_call(bob.uri, failing)

    end = ended_event(runtime)
    assert end["cause"] == "app_error" and "a bug in a listener" in end["app_error"]
