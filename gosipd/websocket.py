"""A WebSocket client for a call's trio loop, on wsproto: sending never waits.

wsproto does the handshake and the framing (RFC 6455); this is the I/O around it, shaped
for a media stream: 50 messages a second each way from one call's process. ``send``
frames a message and writes what the socket takes at once, in the caller's task; only
what the kernel would not take waits, for the writer task. ``receive`` reads in the
caller's task too. A message therefore costs no scheduler round of its own, where a
library with a send lock, a writer and a reader task (trio-websocket, which gosipd used
first) costs three or four, each a wakeup of the whole loop: measured in
``bench/streams.py``, that was a third of a streamed call's CPU.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

#: What one ``receive_some`` asks for: a 20 ms media message is under 400 bytes, a burst
#: of a prompt sent at once arrives in as few reads as the kernel allows.
READ_BYTES = 65536
#: RFC 6455 §7.4.1 codes we send or report.
NORMAL = 1000
PROTOCOL_ERROR = 1002
TOO_BIG = 1009
ABNORMAL = 1006  # never sent: the connection ended without a close frame
#: Framed bytes the kernel has not taken beyond which the server is dropped: senders
#: that must bound themselves wait for ``idle``, so only pongs and closes pile up here,
#: for a server that pings and never reads.
MAX_PENDING = 1 << 20


class WebSocketError(Exception):
    """The WebSocket could not be opened or used."""


class HandshakeFailed(WebSocketError):
    """The server's answer to the upgrade request was no WebSocket."""


class Rejected(WebSocketError):
    """The server answered the upgrade with an HTTP status, not 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class Closed(WebSocketError):
    """The WebSocket is closed: by the server (``remote``: its code and reason), by us
    (for what the server did wrong, or on our way out), or by the connection ending
    without a close frame (code 1006)."""

    def __init__(self, code: int, reason: str, *, remote: bool = False) -> None:
        super().__init__(f"{reason} (code {code})" if remote else reason)
        self.code = code
        self.reason = reason
        self.remote = remote


class WebSocket:
    """An open client WebSocket over ``stream`` (from ``handshake``; used inside its
    ``running`` block).

    ``send`` never waits; ``idle`` says whether all that was sent has reached the kernel,
    and ``wait_idle`` waits until it has, so a caller that must bound what waits (a
    media stream dropping its oldest audio for a stalled server) keeps its own queue
    and hands a message over only when the last one is gone."""

    def __init__(
        self,
        connection: WSConnection,
        stream: trio.abc.Stream,
        events: list[Event],
        max_message_size: int,
    ) -> None:
        self._connection = connection
        self._stream = stream
        # a plain TCP socket is written at once; through TLS, everything goes by the writer
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._events: deque[Event] = deque(events)
        self._max = max_message_size
        self._pending = bytearray()  # framed, not yet taken by the kernel
        self._writing = False  # the writer holds bytes taken from _pending
        self._wake_writer = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self._parts: list[str | bytes] = []
        self._part_bytes = 0
        self.closed: Closed | None = None

    # --- sending ----------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._pending and not self._writing

    @property
    def _gone(self) -> bool:
        """The connection is lost (1006): nothing more goes on it."""
        return self.closed is not None and self.closed.code == ABNORMAL

    async def wait_idle(self) -> None:
        """Until everything sent so far is in the kernel's hands (``Closed`` if it never
        will be). With no writer at work this task writes it: at the end of a call the
        writer is cancelled with everything else, and the last messages (``stop``, the
        close frame) are sent from a shielded task."""
        while True:
            if self._gone:
                assert self.closed is not None
                raise self.closed
            if self.idle:
                return
            if self._writing:
                await self._idle.wait()
            else:
                await self._drain()

    def send(self, message: str | bytes) -> None:
        """Frame ``message`` and write it now, as far as the socket takes it."""
        if self.closed is not None or self._connection.state is not ConnectionState.OPEN:
            raise self.closed or Closed(NORMAL, "closing")
        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(message)
        self._write(self._connection.send(event))

    def _write(self, data: bytes) -> None:
        if self._gone:
            return
        if self.idle and self._socket is not None:
            fd = self._socket.fileno()  # -1 once closed: never somebody else's descriptor
            if fd >= 0:
                try:
                    written = os.write(fd, data)
                except BlockingIOError:
                    written = 0
                except OSError as exc:
                    self._lost(f"cannot send: {exc.strerror}")
                    return
                if written == len(data):
                    return
                data = data[written:]
        if len(self._pending) + len(data) > MAX_PENDING:
            self._lost(f"the server has not read {MAX_PENDING} bytes sent to it")
            return
        self._pending += data
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._wake_writer.set()

    async def _writer(self) -> None:
        """What the kernel did not take at once, in order, as the socket drains."""
        while True:
            await self._wake_writer.wait()
            self._wake_writer = trio.Event()
            await self._drain()

    async def _drain(self) -> None:
        """Write what is pending until nothing is (one task at a time: another that
        comes while this one writes leaves it to this one, which takes what was added)."""
        if self._writing:
            return
        while self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._writing = True
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._lost(f"cannot send: {exc}")
            except BaseException:
                # cancelled with part of a frame maybe written: nothing more can follow
                self._lost("cancelled while sending")
                raise
            finally:
                self._writing = False
        self._idle.set()

    def _lost(self, why: str) -> None:
        self.closed = self.closed or Closed(ABNORMAL, why)
        self._pending.clear()
        self._idle.set()

    # --- receiving --------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The server's next message (answering its pings meanwhile); ``Closed`` when it
        closes the WebSocket, breaks the protocol or the connection ends."""
        while True:
            while self._events:
                message = self._handle(self._events.popleft())
                if message is not None:
                    return message
            if self.closed is not None:
                raise self.closed
            try:
                data = await self._stream.receive_some(READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._lost(f"connection lost: {exc}")
                continue
            if not data:
                self._lost("the server closed the connection without a close frame")
                continue
            try:
                self._connection.receive_data(bytes(data))
            except RemoteProtocolError as exc:
                self._fail(PROTOCOL_ERROR, f"bad data from the server: {exc}")
                continue
            self._events.extend(self._connection.events())

    def _handle(self, event: Event) -> str | bytes | None:
        if isinstance(event, Message):
            self._parts.append(event.data)
            self._part_bytes += len(event.data)
            if self._part_bytes > self._max:
                self._fail(TOO_BIG, f"a message over {self._max} bytes")
                return None
            if not event.message_finished:
                return None
            parts, self._parts, self._part_bytes = self._parts, [], 0
            if len(parts) == 1:
                return parts[0]
            return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
        if isinstance(event, Ping):
            if self._connection.state is ConnectionState.OPEN:
                self._write(self._connection.send(event.response()))
        elif isinstance(event, CloseConnection):
            state = self._connection.state
            if state is ConnectionState.REMOTE_CLOSING:  # the server's close frame
                self._write(self._connection.send(event.response()))
                self.closed = self.closed or Closed(
                    event.code, event.reason or "no reason given", remote=True
                )
            elif state is ConnectionState.OPEN:  # wsproto could not parse a frame
                self._fail(event.code, f"a bad frame from the server: {event.reason}")
            # (else the server's answer to our close)
        return None

    def _fail(self, code: int, why: str) -> None:
        """Close with ``code`` for what the server did wrong (reported as ``why``); what
        else it sent is not read."""
        self._events.clear()
        self._parts, self._part_bytes = [], 0
        if self._connection.state is ConnectionState.OPEN:
            reason = why.encode()[:120].decode(errors="ignore")  # a close frame: <= 123 bytes
            self._write(self._connection.send(CloseConnection(code=code, reason=reason)))
        self.closed = self.closed or Closed(code, why)

    # --- closing ----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, close_timeout: float) -> AsyncIterator[None]:
        """While the block lasts, the writer runs; when it ends, the closing handshake
        (``aclose``) in at most ``close_timeout``, even while cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            try:
                yield
            finally:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + close_timeout):
                    await self.aclose()
                nursery.cancel_scope.cancel()

    async def aclose(self, code: int = NORMAL, reason: str = "") -> None:
        """The closing handshake (RFC 6455 §7.1.2: our close frame, then the server's,
        read until it comes or the connection ends), then the connection. Bound it with
        a timeout: a server may never answer."""
        try:
            if self._connection.state is ConnectionState.OPEN and self.closed is None:
                self._write(self._connection.send(CloseConnection(code=code, reason=reason)))
                self.closed = Closed(code, reason)
            await self.wait_idle()
            while self._connection.state is ConnectionState.LOCAL_CLOSING:
                data = await self._stream.receive_some(READ_BYTES)
                if not data:
                    break
                self._connection.receive_data(bytes(data))
                for _event in self._connection.events():
                    pass  # parsed only for the server's close frame, which ends the loop
        except (
            WebSocketError,
            RemoteProtocolError,
            LocalProtocolError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ):
            pass
        finally:
            await trio.aclose_forcefully(self._stream)


async def handshake(
    stream: trio.abc.Stream,
    host: str,
    target: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    max_message_size: int,
) -> WebSocket:
    """The opening handshake over ``stream`` (connected, TLS done): ``Rejected`` for an
    HTTP answer, ``HandshakeFailed`` for anything else that is no WebSocket, and
    ``stream`` closed whatever goes wrong (a timeout too). Use the WebSocket inside
    its ``running`` block."""
    connection = WSConnection(ConnectionType.CLIENT)
    try:
        await stream.send_all(
            connection.send(Request(host=host, target=target, extra_headers=headers or []))
        )
        events = await _handshake(connection, stream)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return WebSocket(connection, stream, events, max_message_size)


async def _handshake(connection: WSConnection, stream: trio.abc.Stream) -> list[Event]:
    """Read the server's answer: the events after its ``AcceptConnection`` (messages that
    came in the same read), or why it was refused."""
    rejected: int | None = None
    while True:
        data = await stream.receive_some(READ_BYTES)
        if not data:
            if rejected is not None:
                raise Rejected(rejected)
            raise HandshakeFailed("the server closed the connection during the handshake")
        try:
            connection.receive_data(bytes(data))
        except RemoteProtocolError as exc:
            raise HandshakeFailed(f"the server's answer is no WebSocket upgrade: {exc}") from None
        events = list(connection.events())
        for i, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return events[i + 1 :]
            if isinstance(event, RejectConnection):
                rejected = event.status_code
                if not event.has_body:
                    raise Rejected(rejected)
            elif isinstance(event, RejectData) and event.body_finished and rejected is not None:
                raise Rejected(rejected)
