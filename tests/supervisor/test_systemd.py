"""The systemd integration: unit files that verify, sd_notify, socket activation."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.peers import missing

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        missing("systemd-analyze (package systemd)")
    return str(path)


def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    analyze = _analyze()
    service = (UNITS / "gosipd.service").read_text()
    # verify checks that ExecStart exists: point it at this checkout's python
    service = service.replace("/opt/gosipd/bin/python", sys.executable)
    (tmp_path / "gosipd.service").write_text(service)
    shutil.copy(UNITS / "gosipd.socket", tmp_path / "gosipd.socket")
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "gosipd.service"), str(tmp_path / "gosipd.socket")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "gosipd.service" not in result.stderr, result.stderr


def test_the_service_keeps_calls_alive_and_is_sandboxed():
    service = (UNITS / "gosipd.service").read_text()
    for line in (
        "Type=notify",
        "KillMode=process",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=gosipd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RuntimeDirectoryPreserve=yes",
    ):
        assert line in service.splitlines(), line
    socket_unit = (UNITS / "gosipd.socket").read_text()
    assert "SocketMode=0660" in socket_unit
    assert "ListenStream=/run/gosipd/control.sock" in socket_unit


def test_the_service_imports_nothing_from_its_working_directory():
    """ExecStart runs python -P (no cwd on sys.path), like the SIGHUP re-exec does."""
    service = (UNITS / "gosipd.service").read_text()
    (exec_start,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    argv = exec_start.removeprefix("ExecStart=").split()
    assert argv[0].endswith("/python"), argv
    assert "-P" in argv[1 : argv.index("-m")] or "-I" in argv[1 : argv.index("-m")], argv
    assert argv[argv.index("-m") + 1] == "gosipd.supervisor", argv
    assert "RuntimeDirectoryMode=0750" in service.splitlines()


def test_sysusers_and_tmpfiles_entries_are_valid():
    for tool, name in (
        ("systemd-sysusers", "gosipd.sysusers.conf"),
        ("systemd-tmpfiles", "gosipd.tmpfiles.conf"),
    ):
        path = shutil.which(tool)
        if path is None:
            missing(f"{tool} (package systemd)")
        args = [path, "--cat-config"] if tool == "systemd-tmpfiles" else [path, "--dry-run"]
        result = subprocess.run(
            [*args, str(UNITS / name)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "Failed" not in result.stderr, result.stderr


def _notifications(sock: socket.socket, until: str, timeout: float = 20) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen += data.splitlines()
        if any(line.startswith(until) for line in seen):
            return seen
    raise AssertionError(f"no {until} among {seen}")


def _log(tmp_path: Path) -> str:
    return (tmp_path / "log").read_text()[-2000:]


def test_socket_activation_and_sd_notify(tmp_path):
    """As systemd runs it: the control socket comes as fd 3, readiness goes to NOTIFY_SOCKET."""
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    control_path = tmp_path / "control.sock"
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(control_path))
    control.listen(16)
    config = tmp_path / "gosipd.toml"
    config.write_text(f'[daemon]\nruntime_dir = "{tmp_path / "run"}"\n')
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), LISTEN_FDS="1")
    # LISTEN_PID must name the supervisor itself: set it in the shell that execs it
    listening = control.fileno()
    process = subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            "export LISTEN_PID=$$; "
            f'exec "{sys.executable}" -P -m gosipd.supervisor --config "{config}"',
        ],
        env=env,
        pass_fds=(3,),
        preexec_fn=lambda: os.dup2(listening, 3),  # the socket at fd 3, as systemd passes it
        stdout=open(tmp_path / "log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    control.close()
    try:
        try:
            assert "READY=1" in _notifications(notify, "READY=1")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_log(tmp_path)}") from None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(str(control_path))
            client.sendall(b'{"id": 1, "op": "status"}\n')
            assert b'"ok":true' in client.recv(65536)
        process.send_signal(signal.SIGHUP)  # systemctl reload
        assert "RELOADING=1" in _notifications(notify, "RELOADING=1")
        assert "READY=1" in _notifications(notify, "READY=1")  # the re-executed supervisor
        process.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in _notifications(notify, "STOPPING=1")
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()
    _ = pytest
