"""The supervisor's inbound SIP socket: new INVITEs fork a worker, the rest is routed.

A datagram for a call in progress (by Call-ID) goes to that call's worker,
through the Unix datagram socket it publishes (``<id>.sip``), prefixed with
the source address. Any other request first gets the checks of RFC 3261
§8.2 (400, 405, 416, 420, 415, 406, 501), exactly as a call's UA would
apply them. A new INVITE then starts an inbound call whose app the
``[inbound.routes]`` table names for the Request-URI user, within the
per-source limits (``admission``), or gets 503 + Retry-After, before any
fork. OPTIONS get 200, or 503 with Retry-After while draining, so a load
balancer probing with OPTIONS (Kamailio's dispatcher) moves traffic
elsewhere. The port is public: no datagram can raise past
``handle_inbound``, and nothing that arrives here can touch a call it does
not belong to.

Also here: the BYE the supervisor sends for a worker that died with a
confirmed dialog, from the state the worker published.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from gosipd.config import Config
from gosipd.connections import CONNECT_TIMEOUT, client_tls_context
from gosipd.control import ControlError
from gosipd.log import module_logger
from gosipd.packet import frame_datagram, unframe_datagram
from gosipd.sip import Request, Response, SIPParseError, Via, parse
from gosipd.sip.framing import Framer, FramingError
from gosipd.sip.requests import bye_from_state
from gosipd.sip.session_timer import too_brief
from gosipd.sip.timers import Timers
from gosipd.sip.transaction import MAGIC_COOKIE, ClientNonInvite, ResponseReceived
from gosipd.sip.ua import UAConfig, supported_tags
from gosipd.sip.validate import check

if TYPE_CHECKING:
    from .server import Supervisor
    from .sip_connections import Connection

__all__ = ["crash_bye", "handle_inbound", "relay_answers", "relay_path", "route_app"]

#: What the supervisor's listener serves; the methods, option tags and body types a call's
#: UA serves (``UAConfig``), so that a request is judged the same here and in the worker.
ALLOW = UAConfig.allow
DRAIN_RETRY_AFTER = 60
#: Retry-After for a source over its limits.
SOURCE_RETRY_AFTER = 10

log = module_logger(component="inbound")


def route_app(routes: dict[str, str], user: str | None) -> str | None:
    """The app for a Request-URI user: an exact route, else the ``*`` route, else None."""
    if user is not None and user in routes:
        return routes[user]
    return routes.get("*")


def _reply_address(request: Request | Response, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response goes (RFC 3261 §18.2.2, RFC 3581): always the source's IP address,
    since nothing is sent to an address the datagram did not come from; the port is the
    source's under rport, else the top Via's."""
    try:
        via = request.top_via
    except SIPParseError:
        return source
    if via is None or via.has_rport:
        return (source[0], (via.rport if via else None) or source[1])
    return (source[0], via.port or 5060)


async def _send(
    supervisor: Supervisor,
    response: Response,
    address: tuple[str, int],
    connection: Connection | None,
) -> None:
    """Out of the public UDP socket, or back on the ``connection`` the request came on
    (RFC 3261 §18.2.2)."""
    if supervisor.config.user_agent:
        response.headers.add("Server", supervisor.config.user_agent)
    if connection is not None:
        connection.send(bytes(response))
    elif supervisor.sip is not None:
        with contextlib.suppress(OSError):
            await supervisor.sip.sendto(bytes(response), address)


async def _reply(
    supervisor: Supervisor,
    request: Request,
    source: tuple[str, int],
    connection: Connection | None,
    status: int,
    reason: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    if request.method == "ACK":
        return
    tag = secrets.token_hex(8) if status > 100 else None
    try:
        response = Response.for_request(request, status, reason, to_tag=tag)
    except (SIPParseError, ValueError):
        return
    for name, value in headers:
        response.headers.add(name, value)
    await _send(supervisor, response, _reply_address(request, source), connection)


async def _unavailable(
    supervisor: Supervisor,
    request: Request,
    source: tuple[str, int],
    connection: Connection | None,
    retry_after: int,
) -> None:
    """503 with the seconds after which to try again (draining, over a limit, no fork)."""
    await _reply(
        supervisor,
        request,
        source,
        connection,
        503,
        "Service Unavailable",
        (("Retry-After", str(retry_after)),),
    )


def _printable(text: str, limit: int = 100) -> str:
    """``text`` safe for a reason phrase: printable ASCII, bounded."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _drop(supervisor: Supervisor, source: tuple[str, int], reason: str) -> None:
    supervisor.counters["inbound_dropped"] += 1
    log.debug("inbound.dropped", source=f"{source[0]}:{source[1]}", reason=reason)


async def handle_inbound(
    supervisor: Supervisor,
    data: bytes,
    source: tuple[str, int],
    connection: Connection | None = None,
) -> None:
    """Answer, route or drop one datagram, or one message that came on a TCP or TLS
    ``connection``. Nothing raises past here: whatever a stranger sends, the socket
    keeps serving (a message no handler can make sense of is dropped and counted in
    ``inbound_dropped``)."""
    registration = supervisor.registration
    from_registrar = registration is not None and source == registration.destination
    if (
        supervisor.allowed_sources
        and source[0] not in supervisor.allowed_sources
        and not from_registrar
    ):
        # not even an error answer: to a scanner outside [inbound] allowed_sources the
        # port looks closed, and a spoofed source gets nothing reflected at it
        supervisor.counters["inbound_strangers"] += 1
        return
    try:
        await _handle(supervisor, data, source, connection)
    except trio.Cancelled:
        raise
    except Exception as exc:
        _drop(supervisor, source, f"{type(exc).__name__}: {exc}")


async def _handle(
    supervisor: Supervisor, data: bytes, source: tuple[str, int], connection: Connection | None
) -> None:
    try:
        message = parse(data)
    except SIPParseError as exc:
        reply = Response.for_malformed(exc, to_tag=secrets.token_hex(8))
        if reply is None:
            _drop(supervisor, source, exc.reason)
            return
        await _send(supervisor, reply, _reply_address(reply, source), connection)
        return
    try:
        owner = supervisor.sip_routes.get(message.call_id)
    except SIPParseError:
        owner = None
    if owner is not None and connection is not None:
        connection.saw(message.call_id)
    if isinstance(message, Response):
        registration = supervisor.registration
        if registration is not None and registration.owns(message):
            registration.deliver(message)
        elif owner is not None and connection is not None:
            # to a request a TCP or TLS call sent on one of our connections
            await _forward(supervisor, owner, data, source, None, connection)
        else:
            _drop(supervisor, source, "a response to nothing the supervisor sent")
        return
    request = message
    if owner is not None:
        await _forward(supervisor, owner, data, source, request, connection)
        return
    # RFC 3261 §8.2: what the request is owed before anything acts on it
    supported = _supported(supervisor.config)
    rejection = check(request, supported=supported, allow=ALLOW)
    if rejection is not None:
        if request.method == "ACK":
            _drop(supervisor, source, rejection.detail)
            return
        log.debug("inbound.rejected", status=rejection.status, detail=rejection.detail)
        reason = rejection.reason
        if rejection.status == 400 and rejection.detail:
            reason = f"{reason} ({_printable(rejection.detail)})"
        await _reply(
            supervisor, request, source, connection, rejection.status, reason, rejection.headers
        )
        return
    method = request.method
    if method == "ACK":
        return
    if (
        method == "INVITE"
        and (min_se := too_brief(request, supervisor.config.session_timer)) is not None
    ):
        # RFC 4028 §9: refused before a worker exists, which the retry would find
        await _reply(
            supervisor,
            request,
            source,
            connection,
            422,
            "Session Interval Too Small",
            (("Min-SE", str(min_se)),),
        )
        return
    if request.to.tag is not None or method in ("CANCEL", "BYE", "PRACK", "UPDATE", "INFO"):
        await _reply(
            supervisor, request, source, connection, 481, "Call/Transaction Does Not Exist"
        )
        return
    if method == "OPTIONS":
        if supervisor.draining:
            await _unavailable(supervisor, request, source, connection, DRAIN_RETRY_AFTER)
        else:
            await _reply(
                supervisor,
                request,
                source,
                connection,
                200,
                None,
                (
                    ("Allow", ", ".join(ALLOW)),
                    ("Accept", "application/sdp"),
                    ("Supported", ", ".join(supported)),
                ),
            )
        return
    await _new_call(supervisor, request, data, source, connection)


def _supported(config: Config) -> tuple[str, ...]:
    """The option tags a worker's UA will support under ``config``."""
    return supported_tags(UAConfig.supported, config.session_timer)


async def _new_call(
    supervisor: Supervisor,
    request: Request,
    data: bytes,
    source: tuple[str, int],
    connection: Connection | None,
) -> None:
    config = supervisor.config
    if supervisor.draining:
        await _unavailable(supervisor, request, source, connection, DRAIN_RETRY_AFTER)
        return
    user = request.uri.user if request.uri.is_sip else None
    app = route_app(config.inbound.routes, user)
    if app is None:
        # the same answer for every unknown user, whatever the method probing us
        await _reply(supervisor, request, source, connection, config.inbound.unrouted_status)
        return
    refusal = supervisor.sources.admit(source[0])
    if refusal is not None:
        supervisor.counters["inbound_refused"] += 1
        log.info("inbound.refused", reason=refusal)
        await _unavailable(supervisor, request, source, connection, SOURCE_RETRY_AFTER)
        return
    call_id = secrets.token_hex(8)
    assert supervisor.sip is not None
    local_host, local_port = (
        connection.local if connection is not None else supervisor.sip.getsockname()[:2]
    )
    if local_host in ("0.0.0.0", "::"):
        local_host = None
    transport = connection.transport if connection is not None else "udp"
    spec: dict[str, Any] = {
        "call": call_id,
        "direction": "inbound",
        "app": app,
        "to": str(request.uri),
        "datagram": data.hex(),
        "source": list(source),
        "local_host": local_host,
        # responses to the INVITE leave from the address the caller sent it to (RFC 3581
        # §4, callers behind NAT): the call frames them, we send them (see relay_answers)
        "answer_via": str(relay_path(supervisor.runtime_dir, transport)),
        "transport": transport,
        # TCP and TLS: our Via and Contact name the listener, which relays to us
        "local_port": local_port,
    }
    supervisor.sip_routes[request.call_id] = call_id
    if connection is not None:
        connection.saw(request.call_id)  # kept open while the call lives
    supervisor.counters["inbound"] += 1
    try:
        record = await supervisor.start_call(spec)
    except BaseException as exc:
        supervisor.sip_routes.pop(request.call_id, None)
        supervisor.sources.release(source[0])
        if not isinstance(exc, ControlError):
            raise
        supervisor.counters["inbound_refused"] += 1
        log.info("inbound.refused", reason=exc.message)
        await _unavailable(supervisor, request, source, connection, 5)
        return
    record.sip_call_id = request.call_id
    record.source_host = source[0]


async def _forward(
    supervisor: Supervisor,
    owner: str,
    data: bytes,
    source: tuple[str, int],
    request: Request | None,
    connection: Connection | None,
) -> None:
    """To the call that owns the Call-ID. ``request`` None: a response (over TCP or TLS,
    to a request the call sent on one of our connections)."""
    record = supervisor.registry.calls.get(owner)
    transport = connection.transport if connection is not None else "udp"
    if record is not None and record.sip_transport != transport:
        # the call cannot answer over another transport than its own
        _drop(supervisor, source, f"over {transport} for a call over {record.sip_transport}")
        return
    path = supervisor.runtime_dir / "calls" / f"{owner}.sip"
    packet = frame_datagram(source, data)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    try:
        await sock.sendto(packet, str(path))
    except OSError:
        # the worker is not listening (yet, or any more): a retransmission will come
        gone = owner not in supervisor.registry.calls
        if gone and request is not None and request.method not in ("ACK", "INVITE"):
            await _reply(
                supervisor, request, source, connection, 481, "Call/Transaction Does Not Exist"
            )
    finally:
        sock.close()


def relay_path(runtime_dir: Path, transport: str = "udp") -> Path:
    """Where calls send the responses that must leave from the public UDP socket, or
    what goes out on the supervisor's TCP or TLS connections."""
    name = "sip-relay.sock" if transport == "udp" else f"sip-relay-{transport}.sock"
    return runtime_dir / name


async def relay_answers(supervisor: Supervisor) -> None:
    """Send what calls frame to the relay socket out of the public SIP socket.

    Calls answer an INVITE they were handed from the address the caller sent it to, yet
    never hold this socket themselves: a call holding it would keep the port from a
    supervisor restarted after a crash. Only the service's user can reach the relay
    (the runtime directory is 0750).
    """
    assert supervisor.sip is not None
    path = relay_path(supervisor.runtime_dir)
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await sock.bind(str(path))
    try:
        while True:
            framed = unframe_datagram(await sock.recv(65536 + 256))
            if framed is None:
                continue
            destination, data = framed
            with contextlib.suppress(OSError, ValueError):
                await supervisor.sip.sendto(data, destination)
    finally:
        sock.close()


async def crash_bye(supervisor: Supervisor, state: dict[str, Any]) -> None:
    """Hang up a dead worker's confirmed dialog, so the far end is not left with a ghost call."""
    dialog = state.get("dialog")
    if not isinstance(dialog, dict):
        return
    if dialog.get("connection"):
        _crash_bye_on_connection(supervisor, state, dialog)
        return
    destination = dialog.get("destination")
    if not destination:
        return
    target = (str(destination[0]), int(destination[1]))
    if dialog.get("transport") in ("tcp", "tls"):
        await _crash_bye_connecting(supervisor, state, dialog, target)
        return
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    try:
        await sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        await sock.connect(target)
        local = sock.getsockname()
        bye = _crash_bye_request(state, dialog, "UDP", (local[0], local[1]), rport=True)
        if bye is None:
            return
        outbox: list[tuple[bytes, tuple[str, int]]] = []
        tx = ClientNonInvite(bye, target, Timers(), outbox, trio.current_time())
        status = None
        while not tx.terminated and status is None:
            for payload, _ in outbox:
                with contextlib.suppress(OSError):
                    await sock.send(payload)
            outbox.clear()
            deadline = tx.next_timer() or trio.current_time() + 1
            with trio.move_on_at(deadline):
                try:
                    data = await sock.recv(65535)
                except OSError:
                    break  # refused: nobody is there to hang up
                with contextlib.suppress(SIPParseError):
                    response = parse(data)
                    if isinstance(response, Response):
                        for event in tx.receive(response, trio.current_time()):
                            if isinstance(event, ResponseReceived) and event.response.status >= 200:
                                status = event.response.status
            tx.handle_timer(trio.current_time())
        log.info(
            "call.crash_bye",
            call=state.get("call"),
            sip_status=status,
            sip_call_id=dialog.get("call_id"),
        )
    finally:
        sock.close()


def _crash_bye_request(
    state: dict[str, Any],
    dialog: dict[str, Any],
    transport: str,
    local: tuple[str, int],
    *,
    rport: bool = False,
) -> Request | None:
    """The BYE for a dead worker's published dialog, sent over ``transport`` from
    ``local``; None (logged) when the dialog is unusable."""
    branch = f"{MAGIC_COOKIE}{secrets.token_hex(8)}"
    via = Via(transport.upper(), local[0], local[1], branch=branch, rport=rport)
    try:
        return bye_from_state(dialog, via)
    except (KeyError, ValueError, SIPParseError) as exc:
        log.warning("call.crash_bye_impossible", call=state.get("call"), reason=str(exc))
        return None


def _crash_bye_on_connection(
    supervisor: Supervisor, state: dict[str, Any], dialog: dict[str, Any]
) -> None:
    """An inbound TCP or TLS call's BYE, on the caller's connection if it is still open
    (a reliable transport: sent once; the answer reaches no call and is dropped)."""
    transport = str(dialog.get("transport", "tcp"))
    try:
        remote = (str(dialog["connection"][0]), int(dialog["connection"][1]))
    except (KeyError, IndexError, TypeError, ValueError):
        return
    connection = (
        supervisor.connections.open.get((transport, remote))
        if supervisor.connections is not None
        else None
    )
    if connection is None:
        log.info(
            "call.crash_bye_impossible", call=state.get("call"), reason="its connection is closed"
        )
        return
    bye = _crash_bye_request(state, dialog, transport, connection.local)
    if bye is None:
        return
    sent = connection.send(bytes(bye))
    log.info(
        "call.crash_bye",
        call=state.get("call"),
        sip_status=None,
        sip_call_id=dialog.get("call_id"),
        transport=transport,
        sent=sent,
    )


async def _crash_bye_connecting(
    supervisor: Supervisor, state: dict[str, Any], dialog: dict[str, Any], target: tuple[str, int]
) -> None:
    """A TCP or TLS call's BYE, on a connection of our own (the worker's died with it);
    over TLS the far end's certificate is checked as the call checked it."""
    config = supervisor.config
    transport = str(dialog["transport"])
    stream: trio.abc.Stream
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(*target)
            stream = tcp
            if transport == "tls":
                context = client_tls_context(
                    ca_file=config.tls_ca_file,
                    cert_file=config.tls_cert_file,
                    key_file=config.tls_key_file,
                    verify=config.tls_verify,
                )
                name = str(dialog.get("server_name") or target[0])
                stream = trio.SSLStream(tcp, context, server_hostname=name)
                await stream.do_handshake()
    except (OSError, ValueError, ssl.SSLError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        log.info("call.crash_bye_impossible", call=state.get("call"), reason=f"connect: {exc}")
        return
    status = None
    async with stream:
        local = tcp.socket.getsockname()
        bye = _crash_bye_request(state, dialog, transport, (local[0], local[1]))
        if bye is None:
            return
        framer = Framer()
        # Timer F: a reliable transport sends once and waits 64·T1 for the answer
        with (
            trio.move_on_after(64 * config.t1),
            contextlib.suppress(OSError, trio.BrokenResourceError, FramingError),
        ):
            await stream.send_all(bytes(bye))
            while status is None and (data := await stream.receive_some(65_536)):
                for item in framer.feed(bytes(data)):
                    with contextlib.suppress(SIPParseError):
                        response = parse(item) if isinstance(item, bytes) else None
                        if isinstance(response, Response) and response.status >= 200:
                            status = response.status
    log.info(
        "call.crash_bye",
        call=state.get("call"),
        sip_status=status,
        sip_call_id=dialog.get("call_id"),
        transport=transport,
    )
