"""A live call's control socket (<runtime>/calls/<call>.sock, JSON lines): what gosipctl and
the supervisor use to see and steer one call."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from gosipd.call import Call, CallRuntime
from tests.peers import read_wav_mono, tone_ratio
from tests.worker.conftest import ended_event, events_named

pytestmark = pytest.mark.interop


class ControlClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.next_id = 0

    @classmethod
    async def connect(cls, path: Path) -> ControlClient:
        return cls(await trio.open_unix_socket(str(path)))

    async def line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the call closed its control socket")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        request = {"id": self.next_id, "op": op, **fields}
        await self.stream.send_all(json.dumps(request).encode() + b"\n")
        reply = await self.line()
        assert reply["id"] == self.next_id
        return reply


def write_wav(path: Path, hz: float, seconds: float, rate: int, channels: int) -> None:
    t = np.arange(int(rate * seconds)) / rate
    mono = (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono, channels).tobytes())


async def until_answered(runtime: CallRuntime) -> None:
    with trio.fail_after(5):
        while not events_named(runtime, "call.answered"):
            await trio.sleep(0.02)


async def wait_ended(call: Call) -> None:
    await call.wait_ended()


async def test_the_control_socket_reports_and_steers_a_live_call(sipp_uas, place_call):
    echo = sipp_uas("echo")
    prompt = place_call.files / "prompt.wav"
    write_wav(prompt, 1000, 0.6, 16000, 2)  # not the call's rate or channel count
    recorded = place_call.files / "recorded" / "call.wav"
    recorded.parent.mkdir()
    runtime = place_call.runtime(echo.uri(), wait_ended)
    streamed: list[dict[str, Any]] = []

    async def subscribe(path: Path) -> None:
        client = await ControlClient.connect(path)
        assert (await client.request("subscribe"))["ok"]
        while True:
            try:
                streamed.append(await client.line())
            except EOFError:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.run)
        await until_answered(runtime)
        path = runtime.publication.socket_path
        nursery.start_soon(subscribe, path)
        client = await ControlClient.connect(path)

        status = await client.request("status")
        assert status["ok"] and status["state"] == "confirmed" and status["answered"]
        assert status["media"]["codec"] == "PCMU"
        dialog = (await client.request("dialog"))["dialog"]
        assert dialog["state"] == "confirmed"
        assert dialog["call_id"] == status["sip_call_id"]
        assert dialog["remote_target"].endswith(f"{echo.host}:{echo.port};transport=UDP")
        assert tuple(dialog["destination"]) == echo.address
        assert dialog["local_tag"] and dialog["remote_tag"]

        assert (await client.request("record", call=runtime.spec.call, file="recorded/call.wav"))[
            "ok"
        ]
        played = await client.request("play", call=runtime.spec.call, file="prompt.wav")
        assert played["ok"] and played["seconds"] == pytest.approx(0.6, abs=0.01)
        await trio.sleep(0.8)
        assert (await client.request("dtmf", call=runtime.spec.call, digits="159"))["ok"]
        await trio.sleep(1.2)

        refused = await client.request("dtmf", call=runtime.spec.call, digits="12x")
        assert not refused["ok"] and refused["error"]["field"] == "digits"
        missing = await client.request("play", call=runtime.spec.call, file="nonexistent.wav")
        assert not missing["ok"] and missing["error"]["code"] == "bad_file"
        assert "'nonexistent.wav': no such file" in missing["error"]["message"]
        unknown = await client.request("drain")
        assert not unknown["ok"] and unknown["error"]["code"] == "unknown_op"

        assert (await client.request("hangup", call=runtime.spec.call))["ok"]
        with trio.fail_after(5):
            await runtime.ended.wait()

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    # the digits went out and the echo brought them back
    assert "".join(e["digit"] for e in events_named(runtime, "call.dtmf")) == "159"
    # the recording holds the echoed prompt, resampled to 8 kHz mono on the way out
    samples, rate = read_wav_mono(recorded)
    loud = np.flatnonzero(np.abs(samples) > 1000)
    assert len(loud) > 0.5 * rate  # about the 0.6 s prompt
    assert tone_ratio(samples[loud[0] + 400 : loud[0] + 4000], rate, 1000) > 0.8
    assert streamed[-1]["event"] == "call.ended"
    assert [e["event"] for e in streamed].count("call.answered") == 1
    assert not runtime.publication.socket_path.exists()  # a clean end removes the files
    assert not runtime.publication.state_path.exists()


async def test_the_published_state_carries_the_confirmed_dialog_a_supervisor_can_bye(
    sipp_uas, place_call
):
    echo = sipp_uas("echo")
    runtime = place_call.runtime(echo.uri(), wait_ended)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.run)
        await until_answered(runtime)
        await trio.sleep(0.1)
        live = json.loads(runtime.publication.state_path.read_text())
        runtime.hangup("local_hangup")

    assert live["call"] == runtime.spec.call and live["pid"] > 0
    dialog = live["dialog"]
    assert dialog["call_id"] == live["sip_call_id"]
    assert dialog["local_seq"] == 1
    assert dialog["remote_uri"] == f"<{echo.uri()}>"
    assert dialog["route_set"] == []


async def test_a_refused_request_is_answered_with_its_own_id(sipp_uas, place_call):
    echo = sipp_uas("echo")
    runtime = place_call.runtime(echo.uri(), wait_ended)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.run)
        await until_answered(runtime)
        client = await ControlClient.connect(runtime.publication.socket_path)
        assert (await client.request("status"))["ok"]
        await client.stream.send_all(b'{"id": "second", "op": "dtmf", "digits": "x"}\n')
        refused = await client.line()
        runtime.hangup("local_hangup")
    assert not refused["ok"]
    assert refused["id"] == "second"
