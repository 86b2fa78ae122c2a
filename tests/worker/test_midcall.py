"""What the far end does mid-call: it moves the media, holds and resumes, sends DTMF as
SIP INFO, and hangs up. The far end is SIPp running scenarios that send the requests."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from gosipd.call import Call
from tests.peers import read_wav_mono, tone_ratio
from tests.worker.conftest import ended_event, events_named
from tests.worker.rtp_sink import RtpSink

pytestmark = pytest.mark.interop

PAUSE_MS = 1200  # the pauses of uas_reinvite.xml


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def test_a_reinvite_that_moves_the_media_sends_our_audio_to_the_new_address(
    sipp_uas, place_call
):
    sink = await RtpSink.bind()
    uas = sipp_uas(
        "reinvite",
        keys={
            "reinvite_port": str(sink.port),
            "reinvite_direction": "sendrecv",
        },
    )
    recording = place_call.files / "heard.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await call.play_tones("1000:8000", wait=False)
            await call.wait_ended()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.collect)
        runtime = await place_call(uas.uri(), app)
        nursery.cancel_scope.cancel()
    sink.close()

    # while the media pointed at the sink, our tone went there, one stream, no gap
    assert len(sink.packets) >= 0.8 * PAUSE_MS / 20
    sequences = [p.sequence for p in sink.packets]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert len({p.ssrc for p in sink.packets}) == 1
    assert abs(dominant_hz(sink.pcm()) - 1000) < 10
    arrived = [p.arrival for p in sink.packets]
    assert arrived[-1] - arrived[0] < (PAUSE_MS + 400) / 1000  # and then it moved back

    # and after the second re-INVITE the echo came back to us
    samples, rate = read_wav_mono(recording)
    last = samples[-rate * PAUSE_MS // 1000 + 2000 : -800]
    assert tone_ratio(last, rate, 1000) > 0.8
    assert uas.received("ACK") == 1  # of our 200 to the initial INVITE; re-INVITE 200s ...
    assert uas.sent("ACK") == 2  # ... are ACKed by SIPp
    assert not events_named(runtime, "call.hold")
    end = ended_event(runtime)
    assert end["cause"] == "remote_hangup"
    assert end["duration_s"] >= 3 * PAUSE_MS / 1000


async def test_a_far_end_hold_stops_our_audio_and_a_resume_restarts_it(sipp_uas, place_call):
    sink = await RtpSink.bind()
    uas = sipp_uas(
        "reinvite",
        keys={
            "reinvite_port": str(sink.port),
            "reinvite_direction": "sendonly",
        },
    )
    sent_at: dict[str, int] = {}

    async def app(call: Call) -> None:
        await call.play_tones("1000:8000", wait=False)
        await call.wait_ended()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.collect)
        runtime = await place_call(uas.uri(), app)
        nursery.cancel_scope.cancel()
    sink.close()

    assert sink.packets == []  # held: nothing sent to the address it gave while holding
    (hold,) = events_named(runtime, "call.hold")
    (resume,) = events_named(runtime, "call.resume")
    assert hold["by"] == "remote" and resume["by"] == "remote"
    assert PAUSE_MS / 1000 - 0.2 < resume["ts"] - hold["ts"] < PAUSE_MS / 1000 + 0.5
    end = ended_event(runtime)
    assert end["cause"] == "remote_hangup"
    # about 2 of the 3 pauses sending: before the hold and after the resume
    expected = 2 * PAUSE_MS / 20
    assert 0.8 * expected < end["media"]["packets_sent"] < 1.2 * expected + 10
    del sent_at


async def test_dtmf_sent_as_sip_info_is_collected_by_the_app(sipp_uas, place_call):
    uas = sipp_uas("info", keys={"info_digit": "5"})
    collected: list[str] = []

    async def app(call: Call) -> None:
        collected.append(await call.collect_dtmf(max_digits=4, timeout=5, terminator="#"))
        await call.wait_ended()

    runtime = await place_call(uas.uri(), app)

    assert collected == ["5"]
    assert [(e["digit"], e["via"]) for e in events_named(runtime, "call.dtmf")] == [
        ("5", "info"),
        ("#", "info"),
    ]
    assert uas.received("200") >= 2 + 1  # both INFOs and the BYE were answered
    assert ended_event(runtime)["cause"] == "remote_hangup"


async def test_we_hold_and_resume_a_baresip_and_its_audio_stops_and_returns(
    baresip_uas, place_call
):
    bob = baresip_uas("uas", tone_hz=440)
    received: dict[str, int] = {}

    async def app(call: Call) -> None:
        await trio.sleep(0.6)
        await call.hold()
        await trio.sleep(0.3)  # what was in flight has arrived
        received["held"] = call.media_statistics()["packets_received"]
        await trio.sleep(1.0)
        received["still_held"] = call.media_statistics()["packets_received"]
        await call.resume()
        await trio.sleep(1.0)
        received["resumed"] = call.media_statistics()["packets_received"]

    runtime = await place_call(bob.uri, app)

    assert [(e["event"], e["by"]) for e in runtime.bus.history if "by" in e] == [
        ("call.hold", "local"),
        ("call.resume", "local"),
    ]
    assert received["still_held"] - received["held"] <= 2  # recvonly: baresip sent nothing
    assert received["resumed"] - received["still_held"] >= 40  # ~50 packets a second again
    assert ended_event(runtime)["cause"] == "local_hangup"
