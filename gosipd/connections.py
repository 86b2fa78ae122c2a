"""SIP over TCP and TLS for one call worker: a connection per destination, one local port.

``StreamEndpoint`` has ``UdpEndpoint``'s shape (``send``, ``receive`` giving
``Datagram`` or ``IcmpError``, ``local_address``), so the call drives the SIP
engine the same way over any transport. Under it:

- **One local port.** Every connection is bound to the same local address
  and port (``SO_REUSEADDR``/``SO_REUSEPORT``) before it connects, so our
  Via and Contact name one address whatever target the call fails over to.
  The far end sends its requests (a BYE) back on the connection we opened
  (RFC 5923 connection reuse, what SIP proxies and TLS trunks do): a worker
  does not listen.
- **Framing** by ``gosipd.sip.framing`` with its limits; a peer that breaks
  them (no Content-Length, a 10 MB message) or stalls mid-message for
  ``stall_timeout`` seconds loses its connection, and the call hears it as a
  transport error for that destination.
- **Keepalives** (RFC 5626 §4.4.1): a double CRLF every ``keepalive`` seconds
  on an idle connection keeps NATs and the far end's idle timers open; a
  peer's ping gets its pong.
- **TLS** with the standard ``ssl`` over ``trio.SSLStream``: TLS 1.2 or newer,
  the server's certificate verified against the system trust store (or
  ``[tls] ca_file``) for the host name the target came from; a failed
  handshake is reported with ``Reason.TLS_FAILED`` and the ``ssl`` reason.

Connection and TLS failures come out of ``receive`` like ICMP errors on UDP,
so the call's failover treats a refused connection like a port unreachable.

``RelayEndpoint`` is the same shape for an inbound call over TCP or TLS: the
supervisor holds the connections (``supervisor/sip_connections.py``) and the
call sends and receives through it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import trio

from gosipd.locate import Datagram, IcmpError, Reason
from gosipd.packet import frame_datagram, unframe_datagram
from gosipd.sip.framing import PING, PONG, Framer, FramingError, Keepalive

__all__ = ["RelayEndpoint", "StreamEndpoint", "client_tls_context"]

#: Seconds to connect (and handshake) before the destination counts as unreachable.
CONNECT_TIMEOUT = 5.0


def client_tls_context(
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """TLS 1.2+, the peer verified (system store, or ``ca_file``) unless ``verify`` is off;
    ``cert_file``/``key_file``: our client certificate, for trunks that ask for one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclass
class _Connection:
    stream: trio.abc.Stream
    sock: trio.socket.SocketType
    lock: trio.Lock
    last_sent: float


class StreamEndpoint:
    """TCP (``tls=None``) or TLS connections from one local address; see the module doc.

    ``server_name(destination)`` gives the name a TLS certificate must carry for a
    destination (the SIP domain or host the target was located from). Call
    ``run`` in a nursery (``await nursery.start(endpoint.run)``) before sending.
    """

    def __init__(
        self,
        host: str,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: Callable[[tuple[str, int]], str | None] = lambda destination: None,
        keepalive: float = 30.0,
        stall_timeout: float = 32.0,
        max_message: int = 65_536,
    ) -> None:
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._tls = tls
        self._server_name = server_name
        self._keepalive = keepalive
        self._stall_timeout = stall_timeout
        self._max_message = max_message
        self._probe = socket.socket(self.family, socket.SOCK_STREAM)
        if self.family == socket.AF_INET6:
            self._probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self._probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._probe.bind((host, 0))  # reserves the port every connection binds to
        self._local = self._probe.getsockname()[:2]
        self._connections: dict[tuple[str, int], _Connection] = {}
        self._connecting: dict[tuple[str, int], trio.Event] = {}
        self._send_inbox, self._inbox = trio.open_memory_channel[Datagram | IcmpError](256)
        self._nursery: trio.Nursery | None = None
        self.transport = "TLS" if tls is not None else "TCP"

    @property
    def local_address(self) -> tuple[str, int]:
        return (str(self._local[0]), int(self._local[1]))

    def server_name(self, destination: tuple[str, int]) -> str:
        """The name a TLS certificate of ``destination`` must carry."""
        return self._server_name(destination) or destination[0]

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._keepalives)
            task_status.started()
            await trio.sleep_forever()

    def close(self) -> None:
        """Close every connection at once (no TLS close_notify: the call is over)."""
        self._probe.close()
        for connection in self._connections.values():
            connection.sock.close()
        self._connections.clear()

    async def send(self, data: bytes, destination: tuple[str, int]) -> None:
        """Send one message, connecting first if need be; failures come out of ``receive``."""
        if len(data) > self._max_message:
            raise ValueError(f"a {len(data)}-byte message exceeds {self._max_message} bytes")
        connection = self._connections.get(destination) or await self._connect(destination)
        if connection is None:
            return
        try:
            async with connection.lock:
                await connection.stream.send_all(data)
            connection.last_sent = trio.current_time()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._drop(destination, Reason.CONNECTION_LOST, f"sending failed: {exc}")

    async def receive(self) -> Datagram | IcmpError:
        return await self._inbox.receive()

    async def _connect(self, destination: tuple[str, int]) -> _Connection | None:
        if (waiting := self._connecting.get(destination)) is not None:
            await waiting.wait()
            return self._connections.get(destination)
        done = self._connecting[destination] = trio.Event()
        try:
            opened = await self._open(destination)
        finally:
            del self._connecting[destination]
            done.set()
        if opened is None:
            return None
        connection = _Connection(*opened, trio.Lock(), trio.current_time())
        self._connections[destination] = connection
        assert self._nursery is not None, "StreamEndpoint.run is not running"
        self._nursery.start_soon(self._read, destination, connection)
        return connection

    async def _open(
        self, destination: tuple[str, int]
    ) -> tuple[trio.abc.Stream, trio.socket.SocketType] | None:
        sock = trio.socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            address = destination
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                if ":" not in destination[0]:
                    address = (f"::ffff:{destination[0]}", destination[1])  # dual stack
            await sock.bind(self._local)
            with trio.fail_after(CONNECT_TIMEOUT):
                await sock.connect(address)
        except trio.TooSlowError:
            sock.close()
            self._fail(destination, Reason.TIMEOUT, errno.ETIMEDOUT)
            return None
        except OSError as exc:
            sock.close()
            reason = (
                Reason.PORT_UNREACHABLE
                if exc.errno == errno.ECONNREFUSED
                else Reason.HOST_UNREACHABLE
            )
            self._fail(destination, reason, exc.errno or 0)
            return None
        stream: trio.abc.Stream = trio.SocketStream(sock)
        if self._tls is None:
            return stream, sock
        tls = trio.SSLStream(stream, self._tls, server_hostname=self.server_name(destination))
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            await trio.aclose_forcefully(tls)
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
            self._fail(destination, Reason.TLS_FAILED, 0, detail=_tls_reason(cause))
            return None
        return tls, sock

    async def _read(self, destination: tuple[str, int], connection: _Connection) -> None:
        framer = Framer(max_body=self._max_message)
        stream = connection.stream
        try:
            while True:
                timeout = self._stall_timeout if framer.pending else math.inf
                with trio.move_on_after(timeout) as stalled:
                    data = await stream.receive_some(65_536)
                if stalled.cancelled_caught:
                    self._drop(destination, Reason.CONNECTION_LOST, "stalled mid-message")
                    return
                if not data:
                    self._drop(destination, Reason.CONNECTION_LOST, "closed by the peer")
                    return
                for item in framer.feed(bytes(data)):
                    if isinstance(item, Keepalive):
                        async with connection.lock:
                            await stream.send_all(PONG)
                    else:
                        await self._send_inbox.send(Datagram(item, destination))
        except FramingError as exc:
            self._drop(destination, Reason.CONNECTION_LOST, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._drop(destination, Reason.CONNECTION_LOST, str(exc))

    async def _keepalives(self) -> None:
        while True:
            await trio.sleep(self._keepalive / 3)
            now = trio.current_time()
            for connection in list(self._connections.values()):
                if now - connection.last_sent >= self._keepalive:
                    connection.last_sent = now
                    try:
                        async with connection.lock:
                            await connection.stream.send_all(PING)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass  # its reader reports the loss

    def _drop(self, destination: tuple[str, int], reason: Reason, detail: str) -> None:
        connection = self._connections.pop(destination, None)
        if connection is None:
            return
        if self._nursery is not None:
            self._nursery.start_soon(trio.aclose_forcefully, connection.stream)
        self._fail(destination, reason, 0, detail=detail)

    def _fail(
        self, destination: tuple[str, int], reason: Reason, code: int, detail: str = ""
    ) -> None:
        error = IcmpError(destination, reason, code, reporter=detail or None)
        # a call far behind still has its transactions' timers to end it
        with contextlib.suppress(trio.WouldBlock):
            self._send_inbox.send_nowait(error)


def _tls_reason(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, trio.TooSlowError):
        return "handshake timed out"
    return str(exc) or type(exc).__name__


#: A relayed message and its address line: a stream's largest message (16 KiB of header,
#: 64 KiB of body) fits.
RELAYED_MAX = 128 * 1024


class RelayEndpoint:
    """An inbound TCP or TLS call's SIP, through the supervisor that holds the connections.

    What arrives on a connection for our Call-ID reaches the Unix datagram socket bound
    at ``path``, framed with the connection's remote address (``packet``); what we send
    goes to the supervisor's ``relay`` socket, framed with the connection to send it on.
    Responses go back on the connection their request came on (RFC 3261 §18.2.2). Our
    requests (a BYE) go on a connection from their destination if there is one, else on
    the connection the far end last used: peers behind NAT and TLS trunks expect requests
    on the connection they opened (RFC 5923 reuse), and nothing goes to an address that
    has not connected to us. A frame with no message back from the supervisor says the
    connection is gone: it comes out of ``receive`` as ``Reason.CONNECTION_LOST``.
    """

    transport: str

    def __init__(
        self, path: str, relay: str, transport: str, local_address: tuple[str, int]
    ) -> None:
        """``local_address``: the supervisor's listener, which our Via and Contact name."""
        self.local_address = local_address
        self._path = path
        self._relay = relay
        self.transport = transport.upper()
        self._sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        self._sources: set[tuple[str, int]] = set()
        self._latest: tuple[str, int] | None = None
        #: connection -> the destinations whose messages went on it, for which its loss
        #: is reported (the engine knows a transaction by where it sent it)
        self._carried: dict[tuple[str, int], set[tuple[str, int]]] = {}
        self._errors: list[IcmpError] = []

    async def bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        await self._sock.bind(self._path)

    @property
    def latest(self) -> tuple[str, int] | None:
        """The connection our requests go on when their destination has none."""
        return self._latest

    def heard_from(self, source: tuple[str, int]) -> None:
        """A connection the far end used (the INVITE the call was handed came on it)."""
        self._sources.add(source)
        self._latest = source

    async def send(self, data: bytes, destination: tuple[str, int]) -> None:
        connection = destination if destination in self._sources else self._latest
        if connection is None:
            raise OSError(errno.ENOTCONN, "no connection from the far end to send on")
        self._carried.setdefault(connection, set()).add(destination)
        await self._sock.sendto(frame_datagram(connection, data), self._relay)

    async def receive(self) -> Datagram | IcmpError:
        while not self._errors:
            framed = unframe_datagram(await self._sock.recv(RELAYED_MAX))
            if framed is None:
                continue
            source, data = framed
            if data:
                self.heard_from(source)
                return Datagram(data, source)
            self._sources.discard(source)
            if self._latest == source:
                self._latest = next(iter(self._sources), None)
            self._errors = [
                IcmpError(
                    destination,
                    Reason.CONNECTION_LOST,
                    errno.ENOTCONN,
                    reporter="the connection is closed",
                )
                for destination in self._carried.pop(source, {source})
            ]
        return self._errors.pop()

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
