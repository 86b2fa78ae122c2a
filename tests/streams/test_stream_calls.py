"""Calls streamed to a real WebSocket server (trio-websocket, in the test) with a real
far end (SIPp, echoing RTP): the server's audio reaches the far end intact and in order
(its echo comes back to the server byte for byte), marks come back when their audio
was sent, ``clear`` stops it at once, DTMF arrives once per digit, and a server that
fails ends the call with BYE and the cause ``stream_failed``."""

from __future__ import annotations

import base64
import itertools
import json
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from gosipd import _dsp
from gosipd.config import StreamConfig
from tests.peers import free_port
from tests.worker.conftest import CallPlacer, config_with, ended_event, events_named, place_call

pytestmark = pytest.mark.interop
__all__ = ["place_call"]  # the fixture
FRAME = 160


def ulaw_noise(frames: int, seed: int) -> bytes:
    """Random µ-law without 0x7f (-0 comes back as 0xff): survives every round trip."""
    rng = random.Random(seed)
    return bytes(rng.choice([b for b in range(256) if b != 0x7F]) for _ in range(frames * FRAME))


@dataclass
class Server:
    """Everything the server received, with trio's clock at its arrival."""

    port: int = 0
    received: list[tuple[float, str | bytes]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    marks_sent: dict[str, float] = field(default_factory=dict)
    notes: dict[str, float] = field(default_factory=dict)

    def json_events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for at, message in self.received:
            if isinstance(message, str):
                data = json.loads(message)
                if data.get("event") == name:
                    out.append((at, data))
        return out

    def inbound_ulaw(self) -> list[tuple[float, bytes]]:
        return [
            (at, base64.b64decode(data["media"]["payload"]))
            for at, data in self.json_events("media")
        ]

    async def record(self, ws: WebSocketConnection) -> None:
        while True:
            self.received.append((trio.current_time(), await ws.get_message()))

    async def until(self, ws: WebSocketConnection, event: str) -> dict[str, Any]:
        while True:
            message = await ws.get_message()
            self.received.append((trio.current_time(), message))
            if isinstance(message, str) and json.loads(message).get("event") == event:
                return dict(json.loads(message))


Behaviour = Callable[[WebSocketConnection, Server], Awaitable[None]]


async def start_server(
    nursery: trio.Nursery, behaviour: Behaviour, tls: ssl.SSLContext | None = None
) -> Server:
    server = Server()

    async def handler(request: WebSocketRequest) -> None:
        server.headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        ws = await request.accept()
        try:
            await behaviour(ws, server)
        except* ConnectionClosed:  # the call ended (from a nursery of the behaviour's too)
            pass

    listener = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, tls)
    server.port = listener.port
    return server


def media(ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode()
    return json.dumps({"event": "media", "streamSid": "MZ", "media": {"payload": payload}})


async def streamed_call(
    place_call: CallPlacer,
    far_end: str,
    behaviour: Behaviour,
    *,
    options: str = "",
    max_duration: float = 3.0,
    host: str = "127.0.0.1",
    stream: StreamConfig | None = None,
) -> tuple[Any, Server]:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, behaviour)
        config = config_with(stream=stream or StreamConfig())
        app = f"stream:ws://{host}:{server.port}/media {options}".strip()
        runtime = await place_call(
            far_end, None, config=config, app_name=app, max_duration=max_duration
        )
        nursery.cancel_scope.cancel()
    return runtime, server


def frames_in_order(prompt: bytes, echoed: bytes) -> int:
    """How many 20 ms frames of ``prompt`` came back byte for byte, in order: the far
    end's echo passes our jitter buffer on the way back, which may drop or repeat a
    frame when it adapts."""
    found, where = 0, 0
    for i in range(0, len(prompt), FRAME):
        at = echoed.find(prompt[i : i + FRAME], where)
        if at >= 0:
            found, where = found + 1, at + FRAME
    return found


def speaking(prompt: bytes) -> Behaviour:
    """A server that sends ``prompt`` at once after ``start``, a mark "end" after it
    (noting when), and records the rest."""

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        for i in range(0, len(prompt), FRAME):
            await ws.send_message(media(prompt[i : i + FRAME]))
        await ws.send_message('{"event": "mark", "streamSid": "MZ", "mark": {"name": "end"}}')
        server.marks_sent["end"] = trio.current_time()
        await server.record(ws)

    return behaviour


async def test_the_server_s_audio_reaches_the_far_end_intact_and_its_echo_comes_back(
    sipp_uas, place_call
):
    prompt = ulaw_noise(50, seed=1)  # 1 s, sent at once: faster than real time

    echo = sipp_uas("echo")
    runtime, server = await streamed_call(
        place_call, echo.uri(), speaking(prompt), options="param.agent=sales"
    )

    [(_, _connected)], [(_, start)] = server.json_events("connected"), server.json_events("start")
    assert start["start"]["customParameters"] == {"agent": "sales"}
    assert start["start"]["callSid"] == runtime.spec.call
    inbound = server.inbound_ulaw()
    assert len(inbound) >= 100  # the far end's audio, every 20 ms of the call
    found = frames_in_order(prompt, b"".join(ulaw for _, ulaw in inbound))
    assert found >= 48, f"{found} of 50 frames of the prompt came back intact, in order"
    numbers = [
        int(json.loads(m)["sequenceNumber"]) for _, m in server.received if "sequenceNumber" in m
    ]
    gaps = [(a, b) for a, b in itertools.pairwise(numbers) if b != a + 1]
    assert numbers[0] == 1 and not gaps, gaps
    (mark_at, mark), *_ = server.json_events("mark")
    assert mark["mark"]["name"] == "end"
    assert 0.9 <= mark_at - server.marks_sent["end"] <= 1.3  # after 1 s of audio was sent
    assert server.json_events("stop"), "the server is told the stream stopped"
    states = [e["state"] for e in events_named(runtime, "call.stream")]
    assert states == ["connected"]
    assert ended_event(runtime)["cause"] == "max_duration"


async def test_the_server_s_audio_is_paced_even_when_the_far_end_sends_nothing(
    sipp_uas, place_call
):
    prompt = ulaw_noise(50, seed=3)  # 1 s, while the far end sends no RTP at all

    silent = sipp_uas("silent")
    runtime, server = await streamed_call(place_call, silent.uri(), speaking(prompt))

    # nothing heard, but 20 ms of it every 20 ms all the same (what the jitter buffer
    # plays when nothing came), and our audio still went out at the media clock
    heard = server.inbound_ulaw()
    assert len(heard) >= 100
    quiet = np.frombuffer(_dsp.ulaw_decode(b"".join(u for _, u in heard)), np.int16)
    assert np.abs(quiet.astype(np.int32)).max() < 200
    (mark_at, mark), *_ = server.json_events("mark")
    assert mark["mark"]["name"] == "end"
    assert 0.9 <= mark_at - server.marks_sent["end"] <= 1.3  # its second was sent
    media_stats = ended_event(runtime)["media"]
    assert media_stats["packets_sent"] >= 140  # 3 s of the call, the prompt among them


async def test_clear_stops_a_long_prompt_within_two_frames(sipp_uas, place_call):
    prompt = ulaw_noise(500, seed=2)  # 10 s
    windows = {prompt[i : i + 16] for i in range(len(prompt) - 15)}

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        server.notes["sent"] = trio.current_time()
        for i in range(0, len(prompt), FRAME):
            await ws.send_message(media(prompt[i : i + FRAME]))
        await ws.send_message('{"event": "mark", "streamSid": "MZ", "mark": {"name": "long"}}')
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.record, ws)
            await trio.sleep_until(server.notes["sent"] + 1.0)
            server.notes["clear"] = trio.current_time()
            await ws.send_message('{"event": "clear", "streamSid": "MZ"}')

    echo = sipp_uas("echo")
    _runtime, server = await streamed_call(place_call, echo.uri(), behaviour, max_duration=3.0)

    def carries_prompt(ulaw: bytes) -> bool:
        return any(ulaw[i : i + 16] in windows for i in range(0, len(ulaw) - 15, 16))

    heard = [at for at, ulaw in server.inbound_ulaw() if carries_prompt(ulaw)]
    assert heard, "the prompt's echo came back before the clear"
    echo_delay = heard[0] - server.notes["sent"]
    assert echo_delay < 0.5
    # what was already on the wire, or in the media loop's few frames, is all that follows
    assert heard[-1] - server.notes["clear"] <= echo_delay + 0.04 + 0.02
    assert 40 <= len(heard) <= 60  # about 1 s of the 10 s prompt
    (mark_at, mark), *_ = server.json_events("mark")
    assert mark["mark"]["name"] == "long" and mark_at - server.notes["clear"] < 0.1


async def test_far_end_dtmf_reaches_the_server_once_per_digit(sipp_uas, place_call):
    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.record(ws)

    info = sipp_uas("info", keys={"info_digit": "5"})
    runtime, server = await streamed_call(place_call, info.uri(), behaviour, max_duration=10)

    digits = [e["dtmf"]["digit"] for _, e in server.json_events("dtmf")]
    assert digits == ["5", "#"]
    assert ended_event(runtime)["cause"] == "remote_hangup"


async def test_a_server_that_goes_away_ends_the_call_with_bye_and_stream_failed(
    sipp_uas, place_call
):
    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        await trio.sleep(0.3)
        await ws.aclose(code=1011, reason="agent crashed")

    echo = sipp_uas("echo")
    runtime, _ = await streamed_call(place_call, echo.uri(), behaviour, max_duration=10)

    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "stream_failed"
    assert end["duration_s"] < 2
    failed = events_named(runtime, "call.stream")[-1]
    assert failed["state"] == "failed" and "agent crashed" in failed["reason"]
    assert echo.received("BYE") == 1


async def test_with_on_error_continue_the_call_outlives_its_stream(sipp_uas, place_call):
    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        await ws.aclose()

    echo = sipp_uas("echo")
    runtime, _ = await streamed_call(
        place_call, echo.uri(), behaviour, options="on_error=continue", max_duration=1.5
    )

    assert ended_event(runtime)["cause"] == "max_duration"
    assert [e["state"] for e in events_named(runtime, "call.stream")] == ["connected", "failed"]


async def test_a_server_that_stops_reading_for_6_s_never_stalls_the_call(sipp_uas, place_call):
    """The server sends its prompt, then reads nothing for 6 s (trio-websocket stops
    reading the socket once its one-message queue is full). The call's media keeps its
    20 ms clock, the prompt still reaches the far end and comes back, and when the
    server reads again the far end's audio is there, in order. (A longer stall fills
    the socket buffers; then the oldest media is dropped and reported as
    backpressure: tests/streams/test_profiles.py.)"""
    prompt = ulaw_noise(150, seed=11)  # 3 s

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        await ws.send_message(media(prompt))
        await trio.sleep(6.0)
        server.notes["resumed"] = trio.current_time()
        await server.record(ws)

    echo = sipp_uas("echo")
    runtime, server = await streamed_call(place_call, echo.uri(), behaviour, max_duration=8.0)

    end = ended_event(runtime)
    assert end["cause"] == "max_duration"
    assert end["media"]["packets_sent"] >= 0.95 * 8.0 * 50  # the 20 ms clock never stopped
    assert end["media"]["send_lateness_p99_ms"] < 5
    assert end["media"]["packets_received"] >= 0.9 * 8.0 * 50  # the echo of what we sent
    inbound = server.inbound_ulaw()
    assert any(at >= server.notes["resumed"] for at, _ in inbound)
    # the prompt went out and its echo came back to the server, in order
    assert prompt[FRAME * 10 : FRAME * 140] in b"".join(chunk for _, chunk in inbound)
    assert [e["state"] for e in events_named(runtime, "call.stream")] == ["connected"]


async def test_a_server_that_cannot_be_reached_fails_the_stream_saying_why(sipp_uas, place_call):
    echo = sipp_uas("echo")
    config = config_with(stream=StreamConfig(connect_timeout_s=2))
    app = f"stream:ws://127.0.0.1:{free_port(tcp=True)}/media"

    runtime = await place_call(echo.uri(), None, config=config, app_name=app, max_duration=10)

    (failed,) = events_named(runtime, "call.stream")
    assert failed["state"] == "failed" and failed["reason"].startswith("cannot connect")
    assert ended_event(runtime)["cause"] == "stream_failed"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_binary_profile_and_a_bearer_token_only_for_its_own_host(sipp_uas, place_call, host):
    prompt = _dsp.ulaw_decode(ulaw_noise(25, seed=3))  # L16 that µ-law carries exactly

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        await ws.send_message(prompt)
        await server.record(ws)

    token = "Bearer s3cret-token"
    stream = StreamConfig(headers={"127.0.0.1": {"Authorization": token}})
    echo = sipp_uas("echo")
    runtime, server = await streamed_call(
        place_call, echo.uri(), behaviour, options="profile=binary", host=host, stream=stream
    )

    assert server.headers.get("authorization") == (token if host == "127.0.0.1" else None)
    (_, start) = server.json_events("start")[0]
    assert start["format"] == "L16" and start["rate"] == 8000
    audio = b"".join(m for _, m in server.received if isinstance(m, bytes))
    assert prompt in audio
    assert "s3cret" not in json.dumps(runtime.bus.history)


async def test_a_16_khz_binary_stream_sends_and_gets_16_khz_audio(sipp_uas, place_call):
    """rate=16000: a 1 kHz tone from the server at 16 kHz reaches the far end (SIPp
    echoes it) and comes back to the server at 16 kHz, still 1 kHz, 640 octets a frame."""
    tone = (8000 * np.sin(2 * np.pi * 1000 * np.arange(16000 * 2) / 16000)).astype("<i2")

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        await ws.send_message(tone.tobytes())
        await server.record(ws)

    echo = sipp_uas("echo")
    runtime, server = await streamed_call(
        place_call, echo.uri(), behaviour, options="profile=binary rate=16000"
    )

    (_, start) = server.json_events("start")[0]
    assert start["rate"] == 16000
    frames = [m for _, m in server.received if isinstance(m, bytes)]
    assert frames and all(len(f) == 640 for f in frames)  # 20 ms at 16 kHz
    back = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    loud = back[np.abs(back) > 2000]
    assert loud.size > 16000  # at least a second of the tone came back
    start_at = int(np.flatnonzero(np.abs(back) > 2000)[0]) + 1600
    segment = back[start_at : start_at + 16000]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size)))
    assert abs(np.fft.rfftfreq(segment.size, 1 / 16000)[spectrum.argmax()] - 1000) < 5
    assert ended_event(runtime)["cause"] == "max_duration"


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted_ca", "unknown_ca"])
async def test_wss_verifies_the_server_s_certificate(sipp_uas, place_call, tmp_path, trusted):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(tls)
    ca_file = tmp_path / "ca.pem"
    (ca if trusted else trustme.CA()).cert_pem.write_to_path(str(ca_file))

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.record(ws)

    echo = sipp_uas("echo")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, behaviour, tls)
        config = config_with(stream=StreamConfig(ca_file=ca_file, connect_timeout_s=3))
        app = f"stream:wss://localhost:{server.port}/media"
        runtime = await place_call(echo.uri(), None, config=config, app_name=app, max_duration=5)
        nursery.cancel_scope.cancel()

    if trusted:
        assert server.json_events("start") and ended_event(runtime)["cause"] == "max_duration"
        # through TLS every message goes by the WebSocket's writer task: all of it, in order
        chunks = [int(data["media"]["chunk"]) for _, data in server.json_events("media")]
        assert len(chunks) > 150 and chunks == list(range(1, len(chunks) + 1))
        assert server.json_events("stop")
    else:
        (failed,) = events_named(runtime, "call.stream")
        assert failed["reason"].startswith("TLS failed: ")
        assert "certificate" in failed["reason"]
        assert ended_event(runtime)["cause"] == "stream_failed"


async def test_the_stream_op_attaches_a_stream_to_a_running_call(sipp_uas, place_call):
    from tests.worker.test_control import ControlClient, until_answered

    prompt = ulaw_noise(25, seed=4)

    async def behaviour(ws: WebSocketConnection, server: Server) -> None:
        await server.until(ws, "start")
        await ws.send_message(media(prompt))
        await server.record(ws)

    async def app(call: Any) -> None:
        await call.wait_ended()

    echo = sipp_uas("echo")
    runtime = place_call.runtime(echo.uri(), app, max_duration=2.5)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, behaviour)
        nursery.start_soon(runtime.run)
        await until_answered(runtime)
        client = await ControlClient.connect(runtime.publication.socket_path)
        bad = await client.request("stream", call=runtime.spec.call, url="http://x/")
        assert not bad["ok"] and bad["error"]["field"] == "url"
        reply = await client.request(
            "stream",
            call=runtime.spec.call,
            url=f"ws://127.0.0.1:{server.port}/late",
            parameters={"attached": "yes"},
        )
        assert reply["ok"], reply
        await runtime.ended.wait()
        nursery.cancel_scope.cancel()

    [(_, start)] = server.json_events("start")
    assert start["start"]["customParameters"] == {"attached": "yes"}
    found = frames_in_order(prompt, b"".join(ulaw for _, ulaw in server.inbound_ulaw()))
    assert found >= 23, f"{found} of 25 frames of the prompt came back intact, in order"
    assert ended_event(runtime)["cause"] == "max_duration"
