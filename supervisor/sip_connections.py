"""Inbound SIP over TCP and TLS: the listeners on ``[inbound] listen_tcp``/``listen_tls``.

The supervisor terminates the connections, frames their byte streams into
messages (``gosipd.sip.framing``) and hands each to ``handle_inbound`` as it
does a UDP datagram, with the connection it came on: what the supervisor
answers itself goes back on that connection, a new INVITE starts a call that
is told its transport, and the rest is relayed to its call by Call-ID. A call
sends through the relay socket of its transport (``relay_path``), framed with
the remote address of the connection to send on; a connection that is gone is
reported back to the call with an empty frame (``RelayEndpoint``).

The ports are public, so every connection is held to limits: the
``allowed_sources`` (others are closed unread), ``max_connections`` in all and
``max_connections_per_source`` (trusted sources are exempt), a TLS handshake
within ``HANDSHAKE_TIMEOUT``, the framing limits, a message finished within
16·T1 of its start and a first message within 16·T1 of the connection, and
``[inbound] connection_idle_s`` of silence both ways once no call uses it. A peer
that stops reading fills its bounded queue and loses the connection; it never
holds up another connection or call. RFC 5626 keepalive pings get their pong.

Open connections do not survive an upgrade (the listeners do): the far end's
next request opens a new one, which reaches its call by Call-ID as before.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from gosipd.connections import RELAYED_MAX
from gosipd.log import module_logger
from gosipd.networks import Networks
from gosipd.packet import frame_datagram, unframe_datagram
from gosipd.sip.framing import PONG, Framer, FramingError, Keepalive

from .inbound import handle_inbound, relay_path

if TYPE_CHECKING:
    from .server import Supervisor

__all__ = ["Connection", "SipConnections", "server_tls_context"]

HANDSHAKE_TIMEOUT = 10.0
#: Seconds one write may take before the peer counts as not reading.
SEND_TIMEOUT = 10.0
#: Messages queued for one connection; a peer that lets more pile up is not reading.
SEND_QUEUE = 128

log = module_logger(component="inbound")


def server_tls_context(cert_file: str, key_file: str | None) -> ssl.SSLContext:
    """TLS 1.2+ with our certificate. Clients are not asked for one: trunks and phones
    authenticate with digest or by address, as over UDP."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class Connection:
    """One accepted connection: where ``handle_inbound`` answers what came on it."""

    def __init__(
        self,
        transport: str,
        stream: trio.abc.Stream,
        remote: tuple[str, int],
        local: tuple[str, int],
    ) -> None:
        self.transport = transport
        self.stream = stream
        self.remote = remote
        self.local = local
        #: SIP Call-IDs of the messages that came on it: while a call with one of them
        #: lives, the connection is kept however quiet it is.
        self.call_ids: set[str] = set()
        self.closed_because: str | None = None
        self.faulted = False
        self.last_activity = trio.current_time()
        self._queue, self._queued = trio.open_memory_channel[bytes](SEND_QUEUE)
        self._scope = trio.CancelScope()

    def send(self, data: bytes) -> bool:
        """Queue ``data``; False when the connection is closed or its peer is not reading
        (the connection is then closed)."""
        if self.closed_because is not None:
            return False
        try:
            self._queue.send_nowait(data)
        except trio.WouldBlock:
            self.close(f"the peer is not reading ({SEND_QUEUE} messages queued)", fault=True)
            return False
        return True

    def saw(self, call_id: str) -> None:
        self.call_ids.add(call_id)

    def close(self, reason: str, *, fault: bool = False) -> None:
        """``fault``: we close it because the peer broke a limit (logged, counted)."""
        if self.closed_because is None:
            self.closed_because = reason
            self.faulted = fault
        self._scope.cancel()

    async def run(self, read: Callable[[Connection], Awaitable[None]]) -> None:
        """``read`` beside the writer, until it returns or ``close`` is called."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                await read(self)
                nursery.cancel_scope.cancel()

    async def _write(self) -> None:
        async for data in self._queued:
            with trio.move_on_after(SEND_TIMEOUT) as slow:
                await self.stream.send_all(data)
            if slow.cancelled_caught:
                self.close(f"a write took over {SEND_TIMEOUT:.0f} s", fault=True)
                return
            self.last_activity = trio.current_time()


class SipConnections:
    """The TCP and TLS listeners of one supervisor and every connection they accepted."""

    def __init__(self, supervisor: Supervisor, listeners: dict[str, socket.socket]) -> None:
        self.supervisor = supervisor
        inbound = supervisor.config.inbound
        self._listeners = {
            transport: trio.socket.from_stdlib_socket(sock) for transport, sock in listeners.items()
        }
        self._tls: ssl.SSLContext | None = None
        if "tls" in listeners:
            config = supervisor.config
            assert config.tls_cert_file is not None
            self._tls = server_tls_context(config.tls_cert_file, config.tls_key_file)
        #: 16·T1: a message begun must be finished, a new connection must say something
        self._stall = 16 * supervisor.config.t1
        self._idle = inbound.connection_idle_s
        self._max = inbound.max_connections
        self._max_per_source = inbound.max_connections_per_source
        self._trusted = Networks(inbound.trusted_sources)
        #: (transport, remote address) -> connection
        self.open: dict[tuple[str, tuple[str, int]], Connection] = {}
        self._per_source: Counter[str] = Counter()

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {t: listener.getsockname()[:2] for t, listener in self._listeners.items()}

    def filenos(self) -> dict[str, int]:
        return {f"sip_{t}": listener.fileno() for t, listener in self._listeners.items()}

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for transport, listener in self._listeners.items():
                nursery.start_soon(self._accept, transport, listener, nursery)
                nursery.start_soon(self._relay, transport)

    # --- accepting -------------------------------------------------------------

    async def _accept(
        self, transport: str, listener: trio.socket.SocketType, nursery: trio.Nursery
    ) -> None:
        counters = self.supervisor.counters
        while True:
            try:
                sock, address = await listener.accept()
            except OSError as exc:
                # out of descriptors or buffers: shed load for a moment, keep serving
                counters["accept_backoff"] += 1
                log.warning("inbound.accept_failed", transport=transport, error=str(exc))
                await trio.sleep(0.1)
                continue
            remote = (str(address[0]), int(address[1]))
            refusal = self._refusal(remote[0])
            if refusal is not None:
                counters["connections_refused"] += 1
                log.info("sip.connection_refused", transport=transport, reason=refusal)
                sock.close()
                continue
            nursery.start_soon(self._serve, transport, sock, remote)

    def _refusal(self, host: str) -> str | None:
        supervisor = self.supervisor
        if supervisor.allowed_sources and host not in supervisor.allowed_sources:
            return "not in [inbound] allowed_sources"
        if sum(self._per_source.values()) >= self._max:  # handshaking ones too
            return f"{self._max} connections are open ([inbound] max_connections)"
        if host not in self._trusted and self._per_source[host] >= self._max_per_source:
            return (
                f"{self._per_source[host]} connections from one address "
                "([inbound] max_connections_per_source)"
            )
        return None

    async def _serve(
        self, transport: str, sock: trio.socket.SocketType, remote: tuple[str, int]
    ) -> None:
        self._per_source[remote[0]] += 1
        stream: trio.abc.Stream = trio.SocketStream(sock)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = sock.getsockname()[:2]
            if transport == "tls":
                assert self._tls is not None
                stream = trio.SSLStream(stream, self._tls, server_side=True)
                failure = await _handshake(stream)
                if failure is not None:
                    self.supervisor.counters["tls_failures"] += 1
                    log.info("sip.tls_failed", source=_text(remote), reason=failure)
                    return
            connection = Connection(transport, stream, remote, (str(local[0]), int(local[1])))
            key = (transport, remote)
            previous = self.open.pop(key, None)
            if previous is not None:
                previous.close("replaced by a new connection from the same address")
            self.open[key] = connection
            try:
                await connection.run(self._read)
            finally:
                if self.open.get(key) is connection:
                    del self.open[key]
            if connection.faulted:
                self.supervisor.counters["connections_dropped"] += 1
            (log.info if connection.faulted else log.debug)(
                "sip.connection_closed",
                transport=transport,
                source=_text(remote),
                reason=connection.closed_because or "closed",
            )
        finally:
            self._per_source[remote[0]] -= 1
            if self._per_source[remote[0]] <= 0:
                del self._per_source[remote[0]]
            await trio.aclose_forcefully(stream)

    async def _read(self, connection: Connection) -> None:
        framer = Framer()
        heard = False
        while True:
            if framer.pending or not heard:
                timeout = self._stall
            elif self._in_use(connection):
                timeout = self._idle  # then look again: the call may have ended
            else:
                timeout = max(0.0, connection.last_activity + self._idle - trio.current_time())
            with trio.move_on_after(timeout) as waited:
                try:
                    data = await connection.stream.receive_some(65_536)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    connection.close(f"broken: {exc.__cause__ or exc}")
                    return
            if waited.cancelled_caught:
                if framer.pending:
                    connection.close(f"stalled mid-message for {self._stall:g} s", fault=True)
                elif not heard:
                    connection.close(f"no message in {self._stall:g} s", fault=True)
                elif self._in_use(connection):
                    continue  # a call began using it while we waited
                else:
                    connection.close(f"idle for {self._idle:g} s")
                return
            if not data:
                connection.close("closed by the peer")
                return
            connection.last_activity = trio.current_time()
            try:
                items = framer.feed(bytes(data))
            except FramingError as exc:
                self.supervisor.counters["inbound_dropped"] += 1
                connection.close(str(exc), fault=True)
                return
            for item in items:
                heard = True
                if isinstance(item, Keepalive):
                    connection.send(PONG)
                else:
                    await handle_inbound(self.supervisor, item, connection.remote, connection)

    def _in_use(self, connection: Connection) -> bool:
        routes = self.supervisor.sip_routes
        connection.call_ids = {call_id for call_id in connection.call_ids if call_id in routes}
        return bool(connection.call_ids)

    # --- what calls send ---------------------------------------------------------

    async def _relay(self, transport: str) -> None:
        """Send what calls frame to this transport's relay socket on its connection; tell
        the sender when that connection is gone. Only the service's user can reach the
        socket (the runtime directory is 0750)."""
        path = relay_path(self.supervisor.runtime_dir, transport)
        path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        await sock.bind(str(path))
        try:
            while True:
                packet, sender = await sock.recvfrom(RELAYED_MAX)
                framed = unframe_datagram(packet)
                if framed is None:
                    continue
                remote, data = framed
                connection = self.open.get((transport, remote))
                if connection is not None and data and connection.send(data):
                    continue
                if isinstance(sender, str) and sender:
                    with contextlib.suppress(OSError):
                        await sock.sendto(frame_datagram(remote, b""), sender)
        finally:
            sock.close()
            path.unlink(missing_ok=True)


async def _handshake(stream: trio.SSLStream[trio.abc.Stream]) -> str | None:
    """None once the handshake is done, else why it failed (for the log)."""
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            await stream.do_handshake()
    except trio.TooSlowError:
        return f"no handshake in {HANDSHAKE_TIMEOUT:.0f} s"
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        if isinstance(cause, ssl.SSLError):
            return cause.reason or str(cause)
        return str(cause) or type(cause).__name__
    return None


def _text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"
