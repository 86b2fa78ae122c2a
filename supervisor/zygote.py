"""The fork server: a pre-imported, frozen process that forks one call worker per request.

Why a separate process: the supervisor runs trio, and a process forked from
inside a running trio loop cannot start a loop of its own. So before trio
starts, the supervisor forks this zygote; the zygote imports the whole
engine once, calls ``gc.freeze()`` (so a worker's garbage collections never
touch, and never copy, the inherited objects), and then sits in a plain
blocking loop. Each spawn request forks a worker that starts its own
``trio.run``; the worker costs only the pages it writes (~3 MB), not a fresh
interpreter (~27 MB). A couple of warm spares (``gosipd.spare``), forked
ahead of demand and already inside ``trio.run``, take the dials first, so
the fork is off a dial's critical path; the supervisor holds their sockets
and hands a spare its call itself, so the zygote is off that path too.

Wire protocol with the supervisor, over a SOCK_SEQPACKET socketpair (one
JSON object per packet, file descriptors as SCM_RIGHTS):

- unprompted: ``{"spare": PID}`` + the socket that gives that spare its call
  (``{"spec": {...}, "fds": [names]}`` + those fds, sent by the supervisor);
- ``{"op": "used", "pid": PID, "call": ID}``: the supervisor gave a spare a
  call; the zygote forks the next spare;
- ``{"op": "spawn", "call": ID, "spec": {...}, "fds": [names]}`` (+ those fds,
  e.g. the dial's ``client`` connection), when no spare is left -> a worker
  forked on demand, ``{"spawned": ID, "pid": N}`` or
  ``{"failed": ID, "message": ...}``
- ``{"op": "exit"}``: stop forking and exit; running workers carry on
  (they are re-parented to the supervisor, a child subreaper).
- unprompted: ``{"exited": PID, "call": ID, "status": N}`` when a worker
  ends (N < 0: killed by signal -N).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import re
import select
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

from gosipd.packet import fd_names, recv_packet, send_packet

__all__ = ["WORKER_ENTRY", "Zygote", "decode_status"]

#: ``module:function`` run in each forked worker as ``function(spec, fds) -> exit code``.
WORKER_ENTRY = "gosipd.worker:run_forked"
#: ``module:function`` a warm spare runs as ``function(channel) -> exit code`` (gosipd.spare).
SPARE_ENTRY = "gosipd.spare:serve_spare"
#: ``module:function`` the zygote runs once before it freezes (gosipd.spare.preload).
PRELOAD_ENTRY = "gosipd.spare:preload"
#: How many warm spares the zygote keeps ready.
SPARES = 2
WorkerMain = Callable[[dict[str, Any], dict[str, int]], int]
SpareMain = Callable[[socket.socket], int]
PR_SET_PDEATHSIG = 1


def decode_status(status: int) -> int:
    """waitpid status -> exit code, or -signal when killed."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


PR_SET_NAME = 15


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def set_process_name(name: str) -> None:
    """What ps -o comm and top show (15 bytes at most)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class Zygote:
    """The zygote's side: runs in the forked process until told to exit."""

    def __init__(
        self,
        channel: socket.socket,
        entry: str = WORKER_ENTRY,
        spare_entry: str | None = SPARE_ENTRY,
        spares: int = SPARES,
    ) -> None:
        self.channel = channel
        self.entry = entry
        self.spare_entry = spare_entry
        self.spare_count = spares if spare_entry else 0
        self.children: dict[int, str] = {}
        #: Spares forked and handed to the supervisor that have not been given a call yet.
        self.idle_spares: set[int] = set()
        #: Objects that hold the allocator's free blocks (see ``fill_free_blocks``).
        self._fillers: list[object] = []
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def serve(self) -> int:
        _die_with_parent()
        set_process_name("gosipd-zygote")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._wakeup_w)
        run: WorkerMain = _load(self.entry)
        serve_spare: SpareMain | None = _load(self.spare_entry) if self.spare_entry else None
        if self.spare_entry:
            _load(PRELOAD_ENTRY)()
        gc.collect()
        self._fillers = fill_free_blocks()
        gc.freeze()
        if serve_spare is not None:
            for _ in range(self.spare_count):
                self._fork_spare(serve_spare)
        while True:
            readable, _, _ = select.select([self.channel.fileno(), self._wakeup_r], [], [])
            if self._wakeup_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wakeup_r, 4096)
                self._reap()
            if self.channel.fileno() in readable:
                message, fds = recv_packet(self.channel)
                if message is None or message.get("op") == "exit":
                    for fd in fds:
                        os.close(fd)
                    return 0
                if message.get("op") in ("spawn", "used"):
                    if message["op"] == "spawn":
                        self._spawn(message, fds, run)
                    else:  # the supervisor gave one of our spares a call
                        pid = int(message["pid"])
                        self.idle_spares.discard(pid)
                        self.children[pid] = str(message.get("call", ""))
                    if serve_spare is not None:
                        while len(self.idle_spares) < self.spare_count:
                            # after the reply: off the dial's path
                            self._fork_spare(serve_spare)
                else:
                    for fd in fds:
                        os.close(fd)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # A spare we still count as idle may have been given its call already (the
            # supervisor's "used" still on its way): report it like any worker.
            self.idle_spares.discard(pid)
            call = self.children.pop(pid, "")
            with contextlib.suppress(OSError):
                send_packet(
                    self.channel, {"exited": pid, "call": call, "status": decode_status(status)}
                )

    def _spawn(self, message: dict[str, Any], fds: list[int], run: WorkerMain) -> None:
        call = str(message.get("call", ""))
        named = fd_names(message, fds)
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in named.values():
                os.close(fd)
            send_packet(self.channel, {"failed": call, "message": f"fork failed: {exc}"})
            return
        if pid == 0:
            code = 70
            try:
                self._become_worker()
                code = run(message["spec"], named)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self._started(call, pid, named)

    def _started(self, call: str, pid: int, fds: dict[str, int]) -> None:
        self.children[pid] = call
        for fd in fds.values():
            os.close(fd)
        send_packet(self.channel, {"spawned": call, "pid": pid})

    def _fork_spare(self, serve_spare: SpareMain) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return  # no spare this time: calls are forked on demand
        if pid == 0:
            code = 70
            try:
                ours.close()
                self._become_worker()
                code = serve_spare(theirs)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        theirs.close()
        # The supervisor hands the spare its call directly: one process less on the path.
        # It holds the only copy of this end; when it goes, the idle spare reads EOF.
        with contextlib.suppress(OSError):
            send_packet(self.channel, {"spare": pid}, [ours.fileno()])
        ours.close()
        self.idle_spares.add(pid)

    def _become_worker(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()  # a terminal's Ctrl-C or the supervisor's fate never reaches a call
        set_process_name("gosipd-call")
        self.channel.close()
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)


_SIZE_CLASS_ROW = re.compile(rb"\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$")


def allocator_report() -> list[bytes]:
    """The lines of ``sys._debugmallocstats``, read from a temporary file, not left on
    stderr. Raw lines, not parsed: a caller that must not leave freed objects behind
    (the fill) parses them as it goes."""
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as report:
            os.dup2(report.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
            report.seek(0)
            return report.read().splitlines()
    finally:
        os.close(saved)


def fill_free_blocks() -> list[object]:
    """Take every free block left in the small-object allocator's partly used pools, and
    keep them: a worker's new objects then go to pools of its own, packed, instead of
    into holes scattered over the inherited pages, each of which costs it a copied page
    (measured: ~0.4 MB less private memory per call, ~6 % fewer page faults).

    CPython reports its pools only as text (``sys._debugmallocstats``, on stderr): a row
    per size class with the blocks still available. A format it no longer has fills
    nothing, which costs only those pages."""
    fillers: list[object] = []
    for row in allocator_report():
        if not (match := _SIZE_CLASS_ROW.match(row)):
            continue
        size, available = int(match[1]), int(match[2])
        if size <= 16:
            fillers.extend(object() for _ in range(available))  # 16 bytes
        elif size <= 32:
            fillers.extend(float(i) for i in range(available))  # 24 bytes
        else:  # a bytes object is 33 bytes + its length, rounded up to the class
            fillers.extend(bytes(size - 33) for _ in range(available))
    return fillers


def _load(entry: str) -> Any:
    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)
