"""gosipd.websocket against real servers on loopback: trio-websocket (a library's own
server), and a server on bare wsproto where a test needs what trio-websocket never sends
(fragments, a message in the same read as the 101, a close without a close frame)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from gosipd.websocket import (
    ABNORMAL,
    MAX_PENDING,
    TOO_BIG,
    Closed,
    HandshakeFailed,
    Rejected,
    WebSocket,
    handshake,
)
from tests.hostile.attacker import Behaviour, serve_raw

Handler = Callable[[WebSocketRequest], Awaitable[None]]


@asynccontextmanager
async def library_server(handler: Handler) -> AsyncIterator[int]:
    """A trio-websocket server on loopback running ``handler`` per connection: its port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        yield server.port
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(port: int, *, max_message_size: int = 1 << 20, headers=None):
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = await handshake(
        stream,
        f"127.0.0.1:{port}",
        "/media?x=1",
        headers=headers,
        max_message_size=max_message_size,
    )
    async with ws.running(close_timeout=2.0):
        yield ws


async def test_messages_go_both_ways_in_order_and_the_close_is_a_handshake():
    seen: dict[str, object] = {}

    async def handler(request: WebSocketRequest) -> None:
        seen["path"] = request.path
        seen["auth"] = dict(request.headers).get(b"authorization")
        ws = await request.accept()
        await ws.send_message("hello")
        await ws.send_message(b"\x00\x01binary")
        got = [await ws.get_message() for _ in range(100)]
        seen["got"] = got
        await ws.ping(b"are you there")  # returns when our pong comes back
        seen["ponged"] = True
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            seen["close"] = (exc.reason.code, exc.reason.reason)

    async with library_server(handler) as port:
        async with connected(port, headers=[(b"Authorization", b"Bearer s3cret")]) as ws:
            assert await ws.receive() == "hello"
            assert await ws.receive() == b"\x00\x01binary"
            for i in range(100):
                ws.send(f"message {i}" if i % 2 else f"{i}".encode())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.receive)  # a ping is answered while we receive
                with trio.fail_after(5):
                    while "ponged" not in seen:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            await ws.wait_idle()
        with trio.fail_after(5):
            while "close" not in seen:
                await trio.sleep(0.01)

    assert seen["path"] == "/media?x=1" and seen["auth"] == b"Bearer s3cret"
    assert seen["got"] == [f"message {i}" if i % 2 else f"{i}".encode() for i in range(100)]
    assert seen["ponged"] and seen["close"] == (1000, None)


async def test_a_server_that_closes_is_reported_with_its_code_and_reason():
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(code=1011, reason="agent crashed")

    async with library_server(handler) as port, connected(port) as ws:
        with pytest.raises(Closed) as caught:
            await ws.receive()
        with pytest.raises(Closed):
            ws.send("after the close")

    assert caught.value.remote and caught.value.code == 1011
    assert str(caught.value) == "agent crashed (code 1011)"


async def test_an_http_answer_is_a_rejection_with_its_status():
    async def handler(request: WebSocketRequest) -> None:
        await request.reject(403, body=b"no token")

    async with library_server(handler) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with pytest.raises(Rejected) as caught:
            await handshake(stream, "h", "/", max_message_size=1000)
    assert caught.value.status_code == 403


@asynccontextmanager
async def raw_server(script: Behaviour):
    """A TCP server that hands ``script`` each connection and the request it read: its port."""
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(serve_raw, script)
        yield listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def accepted(request: bytes) -> tuple[WSConnection, bytes]:
    """A wsproto server that has read ``request``: its 101 answer."""
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    assert any(isinstance(e, Request) for e in server.events())
    return server, server.send(AcceptConnection())


async def test_what_comes_in_the_101_s_read_and_in_fragments_is_one_message_each():
    async def script(stream: trio.SocketStream, request: bytes) -> None:
        server, answer = accepted(request)
        first = server.send(TextMessage(data="in the same read"))
        await stream.send_all(answer + first)  # one segment with the 101
        for part, last in (("frag", False), ("men", False), ("ted", True)):
            await stream.send_all(server.send(TextMessage(data=part, message_finished=last)))
            await trio.sleep(0.02)
        await stream.send_all(server.send(BytesMessage(data=b"\xff" * 70000)))
        await trio.sleep(1)

    async with raw_server(script) as port, connected(port) as ws:
        assert await ws.receive() == "in the same read"
        assert await ws.receive() == "fragmented"
        assert await ws.receive() == b"\xff" * 70000  # over more than one read


async def test_a_message_over_the_limit_closes_with_1009():
    closes: list[int] = []

    async def script(stream: trio.SocketStream, request: bytes) -> None:
        server, answer = accepted(request)
        await stream.send_all(answer)
        await stream.send_all(server.send(TextMessage(data="x" * 600, message_finished=False)))
        await stream.send_all(server.send(TextMessage(data="x" * 600)))
        while data := await stream.receive_some(65536):
            server.receive_data(data)
            closes.extend(e.code for e in server.events() if isinstance(e, CloseConnection))

    async with raw_server(script) as port, connected(port, max_message_size=1000) as ws:
        with pytest.raises(Closed) as caught:
            await ws.receive()
        await trio.sleep(0.2)
    assert caught.value.code == TOO_BIG and not caught.value.remote
    assert closes == [TOO_BIG]


async def test_a_frame_that_breaks_the_protocol_is_answered_with_its_close_code():
    closes: list[int] = []

    async def script(stream: trio.SocketStream, request: bytes) -> None:
        server, answer = accepted(request)
        await stream.send_all(answer + b"\x81\x02\xff\xfe")  # a text frame, not UTF-8
        while data := await stream.receive_some(65536):
            server.receive_data(data)
            closes.extend(e.code for e in server.events() if isinstance(e, CloseConnection))

    async with raw_server(script) as port, connected(port) as ws:
        with pytest.raises(Closed) as caught:
            await ws.receive()
        await trio.sleep(0.2)
    assert caught.value.code == 1007 and not caught.value.remote
    assert "bad frame" in str(caught.value)
    assert closes == [1007]


async def test_a_connection_that_ends_without_a_close_frame_is_1006():
    async def script(stream: trio.SocketStream, request: bytes) -> None:
        _, answer = accepted(request)
        await stream.send_all(answer)
        await stream.aclose()

    async with raw_server(script) as port, connected(port) as ws:
        with pytest.raises(Closed) as caught:
            await ws.receive()
    assert caught.value.code == ABNORMAL and not caught.value.remote


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", HandshakeFailed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Rejected),
        (b"", HandshakeFailed),
    ],
)
async def test_a_server_that_is_no_websocket_fails_the_handshake(answer, error):
    async def script(stream: trio.SocketStream, request: bytes) -> None:
        await stream.send_all(answer)
        await stream.aclose()

    async with raw_server(script) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with pytest.raises(error):
            await handshake(stream, "h", "/", max_message_size=1000)


async def test_send_never_waits_and_what_the_socket_would_not_take_follows_in_order():
    """A server that stops reading: ``send`` returns at once all the same, ``idle``
    turns false once the kernel's buffers are full, and when the server reads again
    every message arrives, in order."""
    got: list[str | bytes] = []
    reading = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await reading.wait()
        while True:
            try:
                got.append(await ws.get_message())
            except ConnectionClosed:
                return

    async with library_server(handler) as port, connected(port) as ws:
        ws: WebSocket
        sent = 0
        with trio.fail_after(10):
            while ws.idle:
                ws.send(f"{sent:08d}" + "x" * 4000)
                sent += 1
            for _ in range(20):  # sent while the writer holds the rest
                ws.send(f"{sent:08d}" + "x" * 4000)
                sent += 1
            await trio.sleep(0.2)
            assert not ws.idle
            reading.set()
            await ws.wait_idle()
        with trio.fail_after(10):
            while len(got) < sent:
                await trio.sleep(0.01)
    assert [int(m[:8]) for m in got] == list(range(sent))
    assert sent > 40


async def test_a_server_that_pings_and_never_reads_is_dropped_not_kept_in_memory():
    async def script(stream: trio.SocketStream, request: bytes) -> None:
        server, answer = accepted(request)
        await stream.send_all(answer)
        ping = server.send(Ping(payload=b"p" * 125))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:  # and never a read
                await stream.send_all(ping * 1000)

    async with raw_server(script) as port, connected(port) as ws:
        with trio.fail_after(30), pytest.raises(Closed) as caught:
            while True:
                await ws.receive()
    assert caught.value.code == ABNORMAL and f"not read {MAX_PENDING} bytes" in str(caught.value)
