"""How a call worker makes itself known: its control socket, its published state, its events.

Under ``<runtime>/calls/`` a worker keeps ``<id>.sock`` (JSON lines: status,
hangup, dtmf, play, record, subscribe, dialog) and ``<id>.json`` (who it is
and, once confirmed, the dialog state a supervisor needs to send the BYE
should the worker die). Both are written atomically and removed when the call
ends cleanly; that is the whole contract with the supervisor.

``EventBus`` fans the call's events out to every subscriber (the dial
client, ``gosipctl events``, the log) without letting a slow one hold the
call back: a subscriber that stops reading is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from gosipd.control import (
    ControlError,
    ControlRequest,
    LineBuffer,
    encode,
    error_reply,
    ok_reply,
    parse_request,
    request_id_of,
)
from gosipd.log import module_logger
from gosipd.paths import private_dir

__all__ = ["CallPublication", "EventBus", "bind_listener", "discard_listener"]

#: Events kept for a subscriber that joins late (it gets the call's story so far).
HISTORY = 64
SUBSCRIBER_QUEUE = 256
#: How long one event may take to reach a subscriber before it is dropped.
SEND_TIMEOUT = 5.0

log = module_logger(component="publication")

Handler = Callable[[ControlRequest], Awaitable[dict[str, Any]]]


class EventBus:
    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._lagged: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._pairs: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.closed = False
        #: Subscribers' streams still sending (``drained`` waits for them after ``close``).
        self.streaming = 0

    def publish(self, event: dict[str, Any]) -> None:
        self.history = [*self.history[-(HISTORY - 1) :], event]
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self._lagged.add(channel)  # told why when its stream ends (_stream_events)
                channel.close()
                self._subscribers.discard(channel)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                channel.close()
                self._subscribers.discard(channel)

    def lagged(self, receive: trio.MemoryReceiveChannel[dict[str, Any]]) -> bool:
        """Whether ``receive``'s subscription was cut for falling behind."""
        send = self._pairs.pop(id(receive), None)
        if send is None or send not in self._lagged:
            return False
        self._lagged.discard(send)
        return True

    def subscribe(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_QUEUE)
        self._pairs[id(receive)] = send
        for event in self.history:
            send.send_nowait(event)
        if self.closed:
            send.close()
        else:
            self._subscribers.add(send)
        return receive

    async def drained(self) -> None:
        """Until every subscriber's stream has sent what it had (after ``close``)."""
        while self.streaming:
            await trio.sleep(0.005)

    def close(self) -> None:
        """No more events: every subscriber's stream ends after what it has."""
        self.closed = True
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()


def bind_listener(path: Path) -> socket.socket:
    """A control socket listening at ``path`` (mode 0660: the service group may connect)."""
    private_dir(path.parent, what="calls directory")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o660)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def discard_listener(listener: tuple[socket.socket, Path]) -> None:
    """Close a listener from ``bind_listener`` and remove its path."""
    sock, path = listener
    sock.close()
    with contextlib.suppress(OSError):
        path.unlink()


class CallPublication:
    def __init__(
        self,
        runtime_dir: Path,
        call_id: str,
        *,
        prebound: tuple[socket.socket, Path] | None = None,
    ) -> None:
        """``prebound``: a listener a warm spare bound ahead of its call (see
        ``bind_listener``); ``open`` renames it into place, one syscall on the dial's path."""
        self.directory = runtime_dir / "calls"
        self.call_id = call_id
        self.socket_path = self.directory / f"{call_id}.sock"
        self.state_path = self.directory / f"{call_id}.json"
        self.state: dict[str, Any] = {}
        self._listener: trio.socket.SocketType | None = None
        self._prebound = prebound

    def publish(self, **changes: Any) -> None:
        """Merge ``changes`` into the published state and write it atomically."""
        self.state.update(changes)
        tmp = self.state_path.with_suffix(f".json.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.state))
        except FileNotFoundError:  # the first time, maybe: the directory is made once
            private_dir(self.directory, what="calls directory")
            tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    def open(self) -> None:
        sock = None
        if self._prebound is not None:
            sock, path = self._prebound
            self._prebound = None
            try:
                os.replace(path, self.socket_path)
            except OSError:  # another file system, say: bind afresh
                discard_listener((sock, path))
                sock = None
        if sock is None:
            sock = bind_listener(self.socket_path)
        self._listener = trio.socket.from_stdlib_socket(sock)

    async def serve(self, handler: Handler, events: EventBus) -> None:
        """Answer control connections until cancelled."""
        assert self._listener is not None
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await self._listener.accept()
                nursery.start_soon(self._connection, trio.SocketStream(conn), handler, events)

    async def _connection(
        self, stream: trio.SocketStream, handler: Handler, events: EventBus
    ) -> None:
        await serve_stream(stream, handler, events)

    def close(self, *, clean: bool) -> None:
        """Stop serving; a clean end removes the files (a crash leaves them for the supervisor)."""
        if self._prebound is not None:
            discard_listener(self._prebound)
            self._prebound = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if clean:
            for path in (self.socket_path, self.state_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


async def serve_stream(
    stream: trio.SocketStream,
    handler: Handler,
    events: EventBus,
    *,
    first_reply: bytes | None = None,
    subscribed: bool = False,
) -> None:
    """Serve one control connection: requests in, replies (and maybe events) out."""
    buffer = LineBuffer()
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            if first_reply is not None:
                await stream.send_all(first_reply)
            if subscribed:
                await _stream_events(stream, events)
                return
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                for line in buffer.feed(data):
                    if isinstance(line, ControlError):
                        await stream.send_all(error_reply(None, line))
                        continue
                    try:
                        request = parse_request(line)
                    except ControlError as exc:
                        await stream.send_all(error_reply(request_id_of(line), exc))
                        continue
                    if request.op == "subscribe":
                        await stream.send_all(ok_reply(request.id))
                        await _stream_events(stream, events)
                        return
                    try:
                        result = await handler(request)
                    except ControlError as exc:
                        await stream.send_all(error_reply(request.id, exc))
                    else:
                        await stream.send_all(ok_reply(request.id, **result))


async def _stream_events(stream: trio.SocketStream, events: EventBus) -> None:
    """Send the call's events until it ends. A subscriber that takes more than
    ``SEND_TIMEOUT`` to take one, or falls ``SUBSCRIBER_QUEUE`` events behind, is
    dropped with a logged reason: the call goes on without it."""
    receive = events.subscribe()
    events.streaming += 1
    try:
        await _send_events(stream, events, receive)
    finally:
        events.streaming -= 1


async def _send_events(
    stream: trio.SocketStream,
    events: EventBus,
    receive: trio.MemoryReceiveChannel[dict[str, Any]],
) -> None:
    async with receive:
        async for event in receive:
            with trio.move_on_after(SEND_TIMEOUT) as scope:
                await stream.send_all(encode(event))
            if scope.cancelled_caught:
                events.lagged(receive)
                log.warning(
                    "subscriber.dropped",
                    reason=f"did not read an event within {SEND_TIMEOUT:g} s",
                    pending=event.get("event"),
                )
                return
        if events.lagged(receive):
            log.warning(
                "subscriber.dropped",
                reason=f"fell more than {SUBSCRIBER_QUEUE} events behind",
            )


def now_ts() -> float:
    return round(time.time(), 6)
