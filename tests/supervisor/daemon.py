"""A real gosipd supervisor for tests: its own process, runtime directory and sockets.

``Daemon.start()`` runs ``python -m gosipd.supervisor`` with a configuration
written into the test's directory and waits for the control socket.
``request()`` speaks the control protocol; ``dial()`` opens a dial whose
connection then carries the call's events. ``stop()`` ends the supervisor
and then every call worker it left running (workers outlive a supervisor by
design, so a test must kill them by the PIDs they published).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Connection:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except BlockingIOError:  # the listen backlog is full for a moment
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._buffer = b""

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.sock.sendall(data)

    def read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next JSON line, or None at EOF."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def lines(self, timeout: float = 30.0) -> Iterator[dict[str, Any]]:
        while (message := self.read(timeout)) is not None:
            yield message

    def until_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        for message in self.lines(timeout):
            if message.get("event") == name:
                return message
        raise AssertionError(f"the connection closed before {name}")

    def close(self) -> None:
        self.sock.close()


class Daemon:
    def __init__(
        self,
        directory: Path,
        *,
        listen: bool = True,
        extra: str = "",
        env: dict[str, str] | None = None,
        pythonpath: Path | None = None,
        routes: dict[str, str] | None = None,
        inbound: str = "",
        nofile: int | None = None,
        python_flags: tuple[str, ...] = ("-P",),
    ) -> None:
        """``routes``: the [inbound.routes] table (default: everyone to echo); ``inbound``:
        more [inbound] keys, as TOML lines; ``nofile``: the supervisor's RLIMIT_NOFILE, to
        run it out of file descriptors; ``python_flags``: the interpreter's (``-P`` as
        systemd and the upgrade re-exec run it; ``()`` for a bare ``python -m``, which puts
        the working directory first on sys.path)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.runtime = directory / "run"
        self.socket = directory / "control.sock"
        self.sip_port = free_udp_port() if listen else None
        self.config = directory / "gosipd.toml"
        self.log = directory / "gosipd.log"
        lines = [
            "[daemon]",
            f'runtime_dir = "{self.runtime}"',
            f'socket = "{self.socket}"',
        ]
        if listen:
            lines += [
                "[inbound]",
                f'listen = "127.0.0.1:{self.sip_port}"',
                inbound,
                "[inbound.routes]",
                *(
                    f'"{user}" = "{app}"'
                    for user, app in (routes if routes is not None else {"*": "echo"}).items()
                ),
            ]
        self.config.write_text("\n".join(lines) + "\n" + extra)
        self.env = dict(os.environ, **(env or {}))
        if pythonpath is not None:
            self.env["PYTHONPATH"] = str(pythonpath)
        # The daemon runs in its own directory: a relative entry (PYTHONPATH=.) means the
        # tree under test, as it does for this process, not the daemon's directory.
        if self.env.get("PYTHONPATH"):
            self.env["PYTHONPATH"] = os.pathsep.join(
                os.path.abspath(entry) if entry else entry
                for entry in self.env["PYTHONPATH"].split(os.pathsep)
            )
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._nofile = nofile
        self._python_flags = python_flags

    # --- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Daemon:
        self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                *self._python_flags,
                *("-m", "gosipd.supervisor", "--config", str(self.config)),
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.directory,
            preexec_fn=self._limit_files if self._nofile else None,
        )
        self.wait_ready(timeout)
        return self

    def _limit_files(self) -> None:
        import resource

        assert self._nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self._nofile, self._nofile))

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"gosipd exited with {self.process.returncode}:\n"
                    + self.log.read_text()[-3000:]
                )
            with contextlib.suppress(OSError):
                reply = self.request({"op": "status"}, timeout=2)
                if reply.get("ok"):
                    return
            time.sleep(0.05)
        tail = self.log.read_text()[-3000:]
        raise AssertionError("gosipd did not answer status in time:\n" + tail)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=10)

    def worker_pids(self) -> dict[str, int]:
        pids = {}
        for path in (self.runtime / "calls").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(path.read_text())
                pids[path.stem] = int(state["pid"])
        return pids

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in self.worker_pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- the control protocol -------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> Connection:
        return Connection(self.socket, timeout)

    def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        conn = self.connect(timeout)
        try:
            conn.send({"id": 1, **message})
            reply = conn.read()
            assert reply is not None, "the connection closed without a reply"
            return reply
        finally:
            conn.close()

    def dial(self, to: str, **fields: Any) -> tuple[dict[str, Any], Connection]:
        conn = self.connect(30)
        conn.send({"id": 1, "op": "dial", "to": to, **fields})
        reply = conn.read()
        assert reply is not None, "dial got no reply"
        return reply, conn

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out
