"""The supervisor: a small trio process that takes control requests and forks calls.

It owns three things only: the control socket (JSON lines, see
``gosipd.control``), the channel to the zygote that forks call workers
(``zygote.py``), and, when configured, the inbound SIP socket. Every call
lives in its own worker process, which publishes itself in the runtime
directory; the supervisor holds nothing it cannot rebuild from there
(``registry.py``), which is what makes re-exec upgrades and restarts after
``kill -9`` lose no call.

A ``dial`` that waits for its call hands the client's connection to the
worker, which streams the call's events to it until the end: neither an
upgrade nor a crash of the supervisor interrupts that stream. The
supervisor keeps a duplicate of the connection only to report, should the
worker die, the failed call with its exit status.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from gosipd import __version__
from gosipd.config import Config
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
from gosipd.log import get_logger
from gosipd.packet import recv_packet, send_packet
from gosipd.passthrough import HeaderError, check_outbound
from gosipd.paths import private_dir

from . import systemd
from .admission import Networks, RateLimiter, SourceLimits
from .registration import RegistrationDriver
from .registry import (
    CallRecord,
    Registry,
    calls_dir,
    read_published,
    remove_published,
)
from .sip_connections import SipConnections
from .zygote import decode_status

__all__ = ["Supervisor"]

#: How long a slow client may take to accept one reply before we drop it.
SEND_TIMEOUT = 5.0
#: How long a worker's control socket may take to answer a proxied request.
WORKER_TIMEOUT = 5.0
#: How long accept waits, doubling, while the process is out of file descriptors.
ACCEPT_BACKOFF_MIN = 0.05
ACCEPT_BACKOFF_MAX = 1.0
#: Retry-After a draining host sends with its 503s.
DRAIN_RETRY_AFTER = 60

CrashBye = Callable[["Supervisor", dict[str, Any]], Awaitable[None]]


#: Request lines read from a control connection and not yet answered.
Pending = deque[bytes | ControlError]


class Supervisor:
    def __init__(
        self,
        config: Config,
        *,
        control: socket.socket,
        zygote: socket.socket,
        sip: socket.socket | None = None,
        listeners: dict[str, socket.socket] | None = None,
        old_zygote: socket.socket | None = None,
        argv: list[str] | None = None,
        crash_bye: CrashBye | None = None,
        inbound: Callable[[Supervisor, bytes, tuple[str, int]], Awaitable[None]] | None = None,
        relay: Callable[[Supervisor], Awaitable[None]] | None = None,
        carried: list[dict[str, Any]] | None = None,
    ) -> None:
        """``carried``: control connections the previous process was serving when it
        re-executed for an upgrade (``fd``; ``lines``, complete requests not answered yet,
        and ``unread``, a request begun, in hex; ``skipping`` an over-long line)."""
        self.config = config
        self.runtime_dir = config.resolved_runtime_dir()
        self.registry = Registry(self.runtime_dir)
        self.log = get_logger(component="supervisor")
        self._control = trio.socket.from_stdlib_socket(control)
        zygote.setblocking(False)
        self._zygote = zygote  # stdlib: SCM_RIGHTS and SEQPACKET, driven by wait_readable
        self._sip_stdlib = sip
        self.sip = trio.socket.from_stdlib_socket(sip) if sip is not None else None
        #: SIP over TCP and TLS ([inbound] listen_tcp, listen_tls), with the UDP socket
        self.connections = (
            SipConnections(self, listeners) if listeners and sip is not None else None
        )
        self._old_zygote = old_zygote
        self._argv = argv or []
        self._crash_bye = crash_bye
        self._inbound = inbound
        self._relay = relay
        self.started = time.time()
        self.draining = False
        self.drain_deadline: float | None = None
        self.upgrading = False
        self._limiter = RateLimiter(config.limits.max_calls_per_second)
        self.sources = SourceLimits(
            config.inbound.max_calls_per_source,
            config.inbound.invites_per_source_per_second,
            config.inbound.trusted_sources,
        )
        #: empty: every source is answered
        self.allowed_sources = Networks(config.inbound.allowed_sources)
        self._spawn_lock = trio.Lock()
        self._spawn_waiters: dict[str, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self._exit_statuses: dict[int, int] = {}
        self._exit_events: dict[int, trio.Event] = {}
        self._client_dups: dict[str, socket.socket] = {}
        #: Warm spares the zygote forked (pid, the socket that hands one its call).
        self._spares: deque[tuple[int, socket.socket]] = deque()
        self._subscribers: set[trio.MemorySendChannel[bytes]] = set()
        self._idle = trio.Event()
        self._connections = 0
        #: Open control connections the supervisor still serves (not handed to a worker),
        #: with the request lines read but not yet answered: an upgrade carries them over.
        self._open: dict[trio.socket.SocketType, tuple[LineBuffer, Pending]] = {}
        self._carried = carried or []
        self._nursery: trio.Nursery | None = None
        self._drain_waiters: list[trio.Event] = []
        #: SIP Call-ID -> our call id, for datagrams arriving on the inbound socket
        self.sip_routes: dict[str, str] = {}
        #: The host's registration with the trunk (``[trunk] register``), once running.
        self.registration: RegistrationDriver | None = None
        self.counters = {
            "dials": 0,
            "refused": 0,
            "crashed": 0,
            "inbound": 0,
            "adopted": 0,
            "inbound_refused": 0,
            "inbound_dropped": 0,
            "inbound_strangers": 0,
            "accept_backoff": 0,
            "registrations": 0,
            "registration_failures": 0,
            "connections_refused": 0,
            "connections_dropped": 0,
            "tls_failures": 0,
        }

    # ======================================================================
    # lifecycle
    # ======================================================================

    async def run(self) -> int:
        private_dir(calls_dir(self.runtime_dir), what="calls directory")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._read_zygote)
            await nursery.start(self._signals)  # handlers in place before READY=1
            if self._old_zygote is not None:
                # an upgrade: the previous zygote stops forking; its workers carry on
                with contextlib.suppress(OSError):
                    send_packet(self._old_zygote, {"op": "exit"})
                self._old_zygote.close()
            await self._adopt()
            if self.sip is not None and self._inbound is not None:
                nursery.start_soon(self._serve_sip)
                if self._relay is not None:
                    nursery.start_soon(self._relay, self)
                if self.connections is not None:
                    nursery.start_soon(self.connections.run)
                if self.config.trunk.register:
                    self.registration = RegistrationDriver(self)
                    nursery.start_soon(self.registration.run)
            for carried in self._carried:
                sock = trio.socket.from_stdlib_socket(socket.socket(fileno=carried["fd"]))
                buffer = LineBuffer(
                    unread=bytes.fromhex(carried.get("unread", "")),
                    skipping=bool(carried.get("skipping")),
                )
                lines = [bytes.fromhex(line) for line in carried.get("lines", [])]
                nursery.start_soon(self._serve_connection, sock, buffer, lines)
            self._carried = []
            nursery.start_soon(self._accept)
            systemd.notify("READY=1", f"STATUS=serving, {len(self.registry)} calls")
            self.log.info(
                "supervisor.ready",
                version=__version__,
                pid=os.getpid(),
                socket=str(self.config.resolved_socket_path()),
                calls=len(self.registry),
            )
            await self._idle.wait()
            nursery.cancel_scope.cancel()
        if self.upgrading:
            self._exec_upgrade()
        systemd.notify("STOPPING=1")
        self.log.info("supervisor.exit", calls=len(self.registry))
        return 0

    async def _signals(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(
            signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD
        ) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.start_upgrade()
                elif signum == signal.SIGCHLD:
                    self._reap_orphans()
                else:
                    # stop the supervisor only: calls keep running and are re-adopted later
                    self.log.info("supervisor.stop", signal=signal.Signals(signum).name)
                    self._idle.set()

    def _reap_orphans(self) -> None:
        """Workers re-parented to us (we are a child subreaper) after their zygote left."""
        for record in self.registry.live():
            if record.pid is None or record.pid in self._exit_statuses:
                continue
            try:
                pid, status = os.waitpid(record.pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if pid:
                self._note_exit(pid, decode_status(status))

    def _note_exit(self, pid: int, status: int) -> None:
        self._exit_statuses[pid] = status
        event = self._exit_events.get(pid)
        if event is not None:
            event.set()

    # ======================================================================
    # the zygote
    # ======================================================================

    async def _read_zygote(self) -> None:
        while True:
            message, fds = await self._recv_zygote()
            if message is None:
                self.log.error("supervisor.zygote_lost")
                self._idle.set()
                return
            if "exited" in message:
                self._note_exit(int(message["exited"]), int(message["status"]))
            elif "spare" in message:
                if fds:
                    spare = socket.socket(fileno=fds.pop(0))
                    spare.set_inheritable(False)  # an upgrade's exec drops it: the spare exits
                    spare.setblocking(True)
                    self._spares.append((int(message["spare"]), spare))
            else:
                call = str(message.get("spawned") or message.get("failed") or "")
                waiter = self._spawn_waiters.get(call)
                if waiter is not None:
                    waiter[1].append(message)
                    waiter[0].set()
            for fd in fds:  # none expected but a spare's
                os.close(fd)

    async def _recv_zygote(self) -> tuple[dict[str, Any] | None, list[int]]:
        while True:
            await trio.lowlevel.wait_readable(self._zygote)
            try:
                return recv_packet(self._zygote)
            except BlockingIOError:
                continue

    async def spawn(self, call_id: str, spec: dict[str, Any], fds: dict[str, int]) -> int:
        """Start a worker for ``spec``; returns its pid. ``fds`` (by name) pass to the worker:
        ``client``, the dial's connection.

        A warm spare takes the call straight from us (the zygote only hears which one,
        to fork the next); with none left, the zygote forks a worker on demand."""
        async with self._spawn_lock:  # an upgrade's exec waits for this hand-over
            while self._spares:
                pid, spare = self._spares.popleft()
                try:
                    send_packet(spare, {"spec": spec, "fds": list(fds)}, list(fds.values()))
                except OSError:
                    continue  # that spare is gone: the next, or the zygote
                finally:
                    spare.close()
                await trio.lowlevel.wait_writable(self._zygote)
                send_packet(self._zygote, {"op": "used", "pid": pid, "call": call_id})
                return pid
        done = trio.Event()
        box: list[dict[str, Any]] = []
        self._spawn_waiters[call_id] = (done, box)
        try:
            async with self._spawn_lock:
                await trio.lowlevel.wait_writable(self._zygote)
                send_packet(
                    self._zygote,
                    {"op": "spawn", "call": call_id, "spec": spec, "fds": list(fds)},
                    list(fds.values()),
                )
            with trio.fail_after(10):
                await done.wait()
        finally:
            self._spawn_waiters.pop(call_id, None)
        reply = box[0]
        if "failed" in reply:
            raise ControlError("spawn_failed", str(reply.get("message", "fork failed")))
        return int(reply["pid"])

    # ======================================================================
    # calls
    # ======================================================================

    async def start_call(
        self, spec: dict[str, Any], *, fds: dict[str, int] | None = None
    ) -> CallRecord:
        """Check the limits, fork the worker (handing it ``fds``), and watch it."""
        if self.draining:
            self.counters["refused"] += 1
            raise ControlError("draining", "this host is draining and takes no new calls")
        limits = self.config.limits
        # inbound calls never take the share of calls and setups kept for dials
        inbound = spec.get("direction") == "inbound"
        held_back = limits.reserved_for_dials if inbound else 0.0
        if len(self.registry) >= limits.max_calls - int(limits.max_calls * held_back):
            self.counters["refused"] += 1
            raise ControlError(
                "too_many_calls",
                f"the limit of {limits.max_calls} calls is reached"
                + (f" ({limits.reserved_for_dials:.0%} are kept for dials)" if inbound else ""),
            )
        if not self._limiter.take(keep=limits.max_calls_per_second * held_back):
            self.counters["refused"] += 1
            raise ControlError(
                "rate_limited",
                f"more than {self.config.limits.max_calls_per_second:g} new calls per second",
            )
        call_id = spec.setdefault("call", secrets.token_hex(8))
        spec.setdefault("runtime_dir", str(self.runtime_dir))
        record = CallRecord(
            call_id,
            direction=spec.get("direction", "outbound"),
            target=str(spec.get("to", "")),
            sip_transport=str(spec.get("transport") or "udp"),
        )
        self.registry.calls[call_id] = record
        try:
            record.pid = await self.spawn(call_id, spec, fds or {})
        except BaseException:
            del self.registry.calls[call_id]
            raise
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, record)
        self._publish(
            {
                "event": "call.spawned",
                "call": call_id,
                "pid": record.pid,
                "direction": record.direction,
                "target": record.target,
            }
        )
        return record

    async def _adopt(self) -> None:
        alive, dead = self.registry.scan()
        assert self._nursery is not None
        for record in alive:
            if record.sip_call_id is not None and record.direction == "inbound":
                self.sip_routes[record.sip_call_id] = record.id
            self.counters["adopted"] += 1
            self.log.info("call.adopted", call=record.id, pid=record.pid)
            self._nursery.start_soon(self._watch, record)
        for call_id, state in dead:
            await self._crashed(call_id, state, status=None)

    async def _watch(self, record: CallRecord) -> None:
        """Wait for the worker to exit; an exit that left its files behind is a crash."""
        assert record.pid is not None
        pid = record.pid
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is not None:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        status = await self._exit_status(pid)
        record.ended = True
        record.exit_status = status
        state = read_published(self.runtime_dir, record.id)
        if state is not None and not state.get("ended"):
            await self._crashed(record.id, state, status)
        else:
            remove_published(self.runtime_dir, record.id)
            self._publish({"event": "call.exited", "call": record.id, "status": status})
        await self._legs_gone(record.id, state, status)
        dup = self._client_dups.pop(record.id, None)
        if dup is not None:
            dup.close()
        if record.sip_call_id is not None:
            self.sip_routes.pop(record.sip_call_id, None)
        if record.source_host is not None:
            self.sources.release(record.source_host)
        self.registry.calls.pop(record.id, None)
        self._exit_statuses.pop(pid, None)
        self._check_drained()

    async def _legs_gone(
        self, call_id: str, state: dict[str, Any] | None, status: int | None
    ) -> None:
        """The calls a worker's app placed beside its own (``Call.dial``) died with it:
        each left behind is reported and its dialog BYEd, as a call of its own would be."""
        legs = state.get("legs") if state is not None else None
        for leg in legs if isinstance(legs, list) else []:
            if not (
                isinstance(leg, str)
                and leg.startswith(f"{call_id}.leg")
                and re.fullmatch(r"[A-Za-z0-9_.-]{1,160}", leg)
            ):
                continue  # only the worker's own legs, named after its call (no paths)
            leg_state = read_published(self.runtime_dir, leg)
            if leg_state is not None and not leg_state.get("ended"):
                await self._crashed(leg, leg_state, status)
            else:
                remove_published(self.runtime_dir, leg)

    async def _exit_status(self, pid: int) -> int | None:
        if pid in self._exit_statuses:
            return self._exit_statuses[pid]
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
            if status or pid in self._exit_statuses:
                known: int | None = self._exit_statuses.get(pid, decode_status(status))
                return known
        except ChildProcessError:
            pass
        event = self._exit_events.setdefault(pid, trio.Event())
        with trio.move_on_after(2):
            await event.wait()
        self._exit_events.pop(pid, None)
        return self._exit_statuses.get(pid)

    async def _crashed(self, call_id: str, state: dict[str, Any], status: int | None) -> None:
        """A worker died without ending its call: report it, and BYE a confirmed dialog."""
        self.counters["crashed"] += 1
        event = {
            "event": "call.ended",
            "call": call_id,
            "ts": time.time(),
            "cause": "worker_crashed",
            "exit_status": status,
            "sip_status": None,
        }
        dialog = state.get("dialog")
        bye = isinstance(dialog, dict) and dialog.get("state") == "confirmed"
        event["bye_sent"] = bye
        self.log.error("call.crashed", call=call_id, exit_status=status, bye=bye)
        dup = self._client_dups.pop(call_id, None)
        if dup is not None:
            with contextlib.suppress(OSError):
                dup.setblocking(False)
                dup.send(encode(event))
            dup.close()
        self._publish(event)
        remove_published(self.runtime_dir, call_id)
        if bye and self._crash_bye is not None and self._nursery is not None:
            self._nursery.start_soon(self._crash_bye, self, state)

    # ======================================================================
    # drain and upgrade
    # ======================================================================

    def start_drain(self, deadline: float | None) -> None:
        self.draining = True
        self.drain_deadline = time.monotonic() + deadline if deadline is not None else None
        systemd.notify(f"STATUS=draining, {len(self.registry)} calls left")
        self.log.info("supervisor.drain", deadline_s=deadline, calls=len(self.registry))
        self._publish(
            {"event": "supervisor.draining", "calls": len(self.registry), "deadline_s": deadline}
        )
        if self.registration is not None:
            self.registration.pause()  # the registrar stops sending calls we would refuse
        assert self._nursery is not None
        if deadline is not None:
            self._nursery.start_soon(self._drain_deadline, deadline)
        self._check_drained()

    def stop_drain(self) -> None:
        self.draining = False
        self.drain_deadline = None
        systemd.notify("STATUS=serving")
        self._publish({"event": "supervisor.undrained"})
        if self.registration is not None:
            self.registration.resume()

    async def _drain_deadline(self, deadline: float) -> None:
        await trio.sleep(deadline)
        if not self.draining:
            return
        for record in self.registry.live():
            with contextlib.suppress(ControlError, OSError):
                await self.ask_worker(record.id, {"op": "hangup", "call": record.id})

    def _check_drained(self) -> None:
        if self.draining and len(self.registry) == 0:
            for waiter in self._drain_waiters:
                waiter.set()
            self._idle.set()

    async def start_upgrade(self) -> None:
        """Re-exec from the installed code, keeping the listening sockets (no call is touched)."""
        if self.upgrading:
            return
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        self.log.info("supervisor.upgrade", calls=len(self.registry))
        self.upgrading = True
        async with self._spawn_lock:  # no fork in flight across the exec
            # No checkpoint after this: the connection that asked is idle again, not cut
            # mid-request, so it is carried over too.
            self._idle.set()

    def _exec_upgrade(self) -> None:
        inherit: dict[str, Any] = {
            "control": self._control.fileno(),
            "zygote": self._zygote.fileno(),
        }
        if self.sip is not None:
            inherit["sip"] = self.sip.fileno()
        if self.connections is not None:
            inherit.update(self.connections.filenos())
        for fd in inherit.values():
            os.set_inheritable(fd, True)
        # Clients mid-conversation keep their connection: what they sent and we have not
        # answered yet goes along, so the new process answers it (no request is lost).
        carried = []
        for sock, (buffer, pending) in self._open.items():
            unread, skipping = buffer.unread
            lines = [line.hex() for line in pending if isinstance(line, bytes)]
            for refusal in pending:
                if isinstance(refusal, ControlError):  # an over-long line: answer it now
                    with contextlib.suppress(OSError):
                        sock.send(error_reply(None, refusal))
            os.set_inheritable(sock.fileno(), True)
            carried.append(
                {"fd": sock.fileno(), "lines": lines, "unread": unread.hex(), "skipping": skipping}
            )
        inherit["connections"] = carried
        env = dict(os.environ)
        env["GOSIPD_INHERIT_FDS"] = json.dumps(inherit)
        env["GOSIPD_UPGRADE_STATE"] = json.dumps({"draining": self.draining})
        sys.stdout.flush()
        sys.stderr.flush()
        # -P: the new code is imported from where it is installed, never from our cwd
        os.execve(
            sys.executable, [sys.executable, "-P", "-m", "gosipd.supervisor", *self._argv], env
        )

    # ======================================================================
    # the control socket
    # ======================================================================

    async def _accept(self) -> None:
        """Accept control connections; out of file descriptors, wait and keep serving."""
        backoff = ACCEPT_BACKOFF_MIN
        while True:
            try:
                sock, _ = await self._control.accept()
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                self.counters["accept_backoff"] += 1
                self.log.warning(
                    "control.accept_failed", reason=os.strerror(exc.errno), retry_s=backoff
                )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)
                continue
            backoff = ACCEPT_BACKOFF_MIN
            if self._connections >= self.config.limits.control_connections:
                sock.close()
                continue
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_connection, sock)

    async def _serve_connection(
        self,
        sock: trio.socket.SocketType,
        buffer: LineBuffer | None = None,
        lines: list[bytes] | None = None,
    ) -> None:
        """``buffer`` and ``lines``: what an upgraded predecessor had read and not answered."""
        self._connections += 1
        peer = _peer_credentials(sock)
        stream = trio.SocketStream(sock)
        buffer = buffer or LineBuffer()
        pending: Pending = deque(lines or ())
        self._open[sock] = (buffer, pending)
        handed_over = busy = False
        try:
            while not handed_over:
                if not pending:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    pending.extend(buffer.feed(data))
                while pending and not handed_over:
                    if self.upgrading:
                        await trio.sleep_forever()  # carried over to the new process
                    line = pending.popleft()
                    busy = True
                    if isinstance(line, ControlError):
                        await self._send(stream, error_reply(None, line))
                    else:
                        handed_over = await self._handle_line(stream, line, peer)
                    busy = False
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            busy = True  # nothing to carry over
        except Exception as exc:
            # A bug in serving one request must not take the supervisor (and every other
            # client) down with it: the client hears it, the log keeps the traceback.
            busy = True
            self.log.error("control.internal_error", error=repr(exc), exc_info=True)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                with trio.move_on_after(SEND_TIMEOUT):
                    await stream.send_all(
                        error_reply(
                            None, ControlError("internal_error", f"internal error: {exc!r}")
                        )
                    )
        finally:
            self._connections -= 1
            # An upgrade carries an idle connection over (its fd survives the exec); one
            # cut mid-request (a subscription, say) is closed, so its client knows.
            if handed_over or busy or not self.upgrading:
                self._open.pop(sock, None)
                # Closing our fd never ends a connection handed to a worker: it holds its own.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.aclose()

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        with trio.fail_after(SEND_TIMEOUT):
            await stream.send_all(data)

    async def _handle_line(
        self, stream: trio.SocketStream, line: bytes, peer: dict[str, int]
    ) -> bool:
        """Answer one request; True when the connection now belongs to a worker."""
        try:
            request = parse_request(line)
        except ControlError as exc:
            self.log.info("control.refused", **peer, code=exc.code, message=exc.message)
            await self._send(stream, error_reply(request_id_of(line), exc))
            return False
        # A dial is logged once it is handed on: its INVITE need not wait for a log line.
        deferred = request.op == "dial"
        if not deferred:
            self.log.info("control.request", op=request.op, **peer)
        try:
            return await self._dispatch(stream, request)
        except ControlError as exc:
            await self._send(stream, error_reply(request.id, exc))
            return False
        finally:
            if deferred:
                self.log.info("control.request", op=request.op, **peer)

    async def _dispatch(self, stream: trio.SocketStream, request: ControlRequest) -> bool:
        args = request.args
        match request.op:
            case "dial":
                return await self._dial(stream, request)
            case "status":
                await self._send(stream, ok_reply(request.id, **self.status()))
            case "calls":
                await self._send(
                    stream,
                    ok_reply(request.id, calls=[c.summary() for c in self.registry.live()]),
                )
            case "show" | "hangup" | "dtmf" | "play" | "record" | "stream" | "transfer":
                self._known_call(args["call"])
                reply = await self.ask_worker(args["call"], {"op": request.op, **args})
                reply["id"] = request.id
                await self._send(stream, encode(reply))
            case "subscribe":
                await self._subscribe(stream, request)
            case "drain":
                self.start_drain(args.get("deadline"))
                await self._send(stream, ok_reply(request.id, calls=len(self.registry)))
                if args.get("wait") and len(self.registry):
                    waiter = trio.Event()
                    self._drain_waiters.append(waiter)
                    await waiter.wait()
                    await self._send(stream, encode({"event": "supervisor.drained"}))
            case "undrain":
                self.stop_drain()
                await self._send(stream, ok_reply(request.id))
            case "upgrade":
                await self._send(stream, ok_reply(request.id, pid=os.getpid()))
                await self.start_upgrade()
            case _:
                raise ControlError("unknown_op", f"{request.op!r} is not served here")
        return False

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 3),
            "draining": self.draining,
            "calls": len(self.registry),
            "limits": {
                "max_calls": self.config.limits.max_calls,
                "max_calls_per_second": self.config.limits.max_calls_per_second,
            },
            "counters": dict(self.counters),
            "inbound": self.sip.getsockname()[:2] if self.sip is not None else None,
            **{
                f"inbound_{transport}": list(address)
                for transport, address in (
                    self.connections.addresses() if self.connections else {}
                ).items()
            },
            "connections": len(self.connections.open) if self.connections else 0,
            "registration": self.registration.status() if self.registration else None,
        }

    def _known_call(self, call_id: str) -> None:
        if call_id not in self.registry.calls or self.registry.calls[call_id].ended:
            raise ControlError("no_such_call", f"no call {call_id!r} is in progress", field="call")

    async def _dial(self, stream: trio.SocketStream, request: ControlRequest) -> bool:
        args = dict(request.args)
        wait = args.pop("wait", True)
        if not str(args["to"]).startswith(("sip:", "sips:")) and not self.config.trunk.configured:
            raise ControlError(
                "no_trunk",
                f"{args['to']!r} is a number, and no trunk is configured to dial it "
                "(dial a full SIP URI, or set [trunk] domain or proxy)",
                field="to",
            )
        try:
            check_outbound(args.get("headers", ()), self.config.headers.send)
        except HeaderError as exc:
            raise ControlError("bad_field", f"'headers': {exc}", field="headers") from None
        spec: dict[str, Any] = {"direction": "outbound", **args}
        self.counters["dials"] += 1
        call_id = secrets.token_hex(8)
        spec["call"] = call_id
        if not wait:
            record = await self.start_call(spec)
            await self._send(stream, ok_reply(request.id, call=record.id, pid=record.pid))
            return False
        # The worker takes the connection over and streams the call's events to it. We keep
        # a duplicate only to report the call should the worker die.
        fd = stream.socket.fileno()
        dup = socket.socket(fileno=os.dup(fd))
        self._client_dups[call_id] = dup
        spec["reply_id"] = request.id
        try:
            await self.start_call(spec, fds={"client": fd})
        except BaseException:
            self._client_dups.pop(call_id, None)
            dup.close()
            raise
        # The fd travelled in the SCM_RIGHTS message: closing ours leaves the worker's open.
        return True

    async def _subscribe(self, stream: trio.SocketStream, request: ControlRequest) -> None:
        call_id = request.args.get("call")
        if call_id is not None:
            self._known_call(call_id)
            await self._send(stream, ok_reply(request.id, call=call_id))
            await self._proxy_events(stream, call_id)
            return
        send, receive = trio.open_memory_channel[bytes](256)
        self._subscribers.add(send)
        try:
            await self._send(stream, ok_reply(request.id))
            async for line in receive:
                await self._send(stream, line)
        finally:
            self._subscribers.discard(send)

    async def _proxy_events(self, stream: trio.SocketStream, call_id: str) -> None:
        path = calls_dir(self.runtime_dir) / f"{call_id}.sock"
        try:
            worker = await trio.open_unix_socket(str(path))
        except OSError as exc:
            raise ControlError("worker_unreachable", f"call {call_id}: {exc}") from None
        async with worker:
            await worker.send_all(encode({"id": 0, "op": "subscribe"}))
            while True:
                data = await worker.receive_some(65536)
                if not data:
                    return
                await self._send(stream, data)

    def _publish(self, event: dict[str, Any]) -> None:
        event.setdefault("ts", time.time())
        line = encode(event)
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(line)
            except trio.WouldBlock:
                # a subscriber that does not read loses its subscription, not our memory
                channel.close()
                self._subscribers.discard(channel)
                self.log.warning("subscriber.dropped", reason="fell 256 events behind")

    async def ask_worker(self, call_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """One request to a worker's control socket, one reply back."""
        path = calls_dir(self.runtime_dir) / f"{call_id}.sock"
        try:
            with trio.fail_after(WORKER_TIMEOUT):
                worker = await trio.open_unix_socket(str(path))
                async with worker:
                    await worker.send_all(encode({"id": 1, **request}))
                    buffer = LineBuffer()
                    while True:
                        data = await worker.receive_some(65536)
                        if not data:
                            raise ControlError(
                                "worker_unreachable", f"call {call_id} closed its control socket"
                            )
                        for line in buffer.feed(data):
                            if isinstance(line, bytes):
                                try:
                                    reply = json.loads(line)
                                except ValueError:
                                    continue  # not ours to understand; the reply follows
                                if isinstance(reply, dict) and "ok" in reply:
                                    return dict(reply)
        except trio.TooSlowError:
            raise ControlError("worker_timeout", f"call {call_id} did not answer") from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # the worker's socket broke, not the client's: most often the call just ended
            record = self.registry.calls.get(call_id)
            if record is None or record.ended or not path.exists():
                raise ControlError("no_such_call", f"call {call_id} has ended") from None
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
            reason = getattr(cause, "strerror", None) or "its control socket broke"
            raise ControlError("worker_unreachable", f"call {call_id}: {reason}") from None
        except ControlError:
            if call_id not in self.registry.calls or not path.exists():
                raise ControlError("no_such_call", f"call {call_id} has ended") from None
            raise

    # ======================================================================
    # inbound SIP
    # ======================================================================

    async def _serve_sip(self) -> None:
        assert self.sip is not None and self._inbound is not None
        while True:
            try:
                data, source = await self.sip.recvfrom(65535)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
                    continue
                raise
            await self._inbound(self, data, source[:2])


def _peer_credentials(sock: trio.socket.SocketType) -> dict[str, int]:
    """SO_PEERCRED of a Unix-socket client, for the log."""
    import struct

    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return {}
    pid, uid, gid = struct.unpack("3i", raw)
    return {"peer_pid": pid, "peer_uid": uid, "peer_gid": gid}
