"""Another user on the host: a runtime directory they made or can write to, and modules
they left where the daemon is started.

The runtime directory (control socket, every call's socket and state) must be a real
directory, ours, writable by nobody else: anything else is refused at start with one
clear line and exit status 2, no traceback. A fresh one is made 0750; none is ever a
fixed name in /tmp. And nothing is imported from the daemon's working directory: not
an app named like a module there, not ``gosipd`` itself when SIGHUP re-executes it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gosipd import cli
from gosipd.config import Config
from gosipd.paths import RuntimeDirError, check_socket_dir, private_dir
from tests.peers import in_ci
from tests.supervisor.daemon import Daemon

OTHER_UID = 65534  # nobody


# --------------------------------------------------------------------------- at start


def _start_refused(tmp_path: Path, runtime: Path) -> str:
    """Start a supervisor on ``runtime``; it must exit 2 at once. Its stderr."""
    config = tmp_path / "gosipd.toml"
    config.write_text(
        f'[daemon]\nruntime_dir = "{runtime}"\nsocket = "{tmp_path / "control.sock"}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "gosipd.supervisor", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"gosipd started on the unsafe runtime directory {runtime}")
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert not (tmp_path / "control.sock").exists()
    return stderr


@pytest.mark.parametrize(
    ("mode", "complaint"),
    [
        (0o777, "is writable by its group and everyone (mode 0777)"),
        (0o770, "is writable by its group (mode 0770)"),
    ],
    ids=["world_writable", "group_writable"],
)
def test_a_runtime_dir_others_can_write_to_is_refused(
    tmp_path: Path, mode: int, complaint: str
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    runtime.chmod(mode)
    stderr = _start_refused(tmp_path, runtime)
    assert f"runtime directory {runtime} {complaint}" in stderr


def test_a_runtime_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        reason = "giving a directory to another uid needs root"
        if in_ci():
            pytest.fail(f"{reason} (CI=true runs the tests as root)")
        pytest.skip(reason)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, OTHER_UID, OTHER_UID)
    stderr = _start_refused(tmp_path, runtime)
    assert f"runtime directory {runtime} is owned by uid {OTHER_UID}, not by us" in stderr


def test_a_symlinked_runtime_dir_is_refused(tmp_path: Path) -> None:
    """Even to a directory that is ours and private: whoever made the link chose it."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    runtime = tmp_path / "run"
    runtime.symlink_to(target)
    stderr = _start_refused(tmp_path, runtime)
    assert f"runtime directory {runtime} is a symlink" in stderr
    assert list(target.iterdir()) == []  # nothing was made through it


def test_a_calls_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (runtime / "calls").symlink_to(tmp_path / "elsewhere")
    stderr = _start_refused(tmp_path, runtime)
    assert f"calls directory {runtime / 'calls'} is a symlink" in stderr


def test_a_fresh_runtime_dir_is_made_private(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "d", listen=False)
    assert not daemon.runtime.exists()
    try:
        daemon.start()
        for directory in (daemon.runtime, daemon.runtime / "calls"):
            info = os.lstat(directory)
            assert stat.S_ISDIR(info.st_mode)
            assert info.st_uid == os.geteuid()
            assert stat.S_IMODE(info.st_mode) in (0o700, 0o750), oct(info.st_mode)
    finally:
        daemon.stop()


# --------------------------------------------------------------------------- the rule


@pytest.fixture
def no_runtime_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("XDG_RUNTIME_DIR", "RUNTIME_DIRECTORY", "GOSIPD_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_there_is_no_tmp_fallback(no_runtime_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root, no XDG_RUNTIME_DIR, no config: ./run (beside ./out), never /tmp/gosipd-UID."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    resolved = Config().resolved_runtime_dir()
    assert resolved == no_runtime_env / "run"
    for tmp in {Path("/tmp"), Path(tempfile.gettempdir())}:
        assert f"gosipd-{1000}" not in str(resolved)
        assert resolved.parent != tmp, resolved
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert Config().resolved_runtime_dir() == Path("/run/gosipd")


def test_the_runtime_dir_rule_in_order(
    no_runtime_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/xdg")  # not a path we trust: ignored
    assert Config().resolved_runtime_dir() == no_runtime_env / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert Config().resolved_runtime_dir() == Path("/run/user/1000/gosipd")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/gosipd:/run/gosipd/calls")  # systemd's
    assert Config().resolved_runtime_dir() == Path("/run/gosipd")
    configured = Config(runtime_dir=Path("state/run"))
    assert configured.resolved_runtime_dir() == no_runtime_env / "state" / "run"


def test_gosipctl_finds_the_socket_by_the_same_rule(
    no_runtime_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A supervisor with no [daemon] paths, started under systemd's RuntimeDirectory; a
    gosipctl in the same environment reaches it without --socket."""
    runtime = no_runtime_env / "rd"
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    assert cli.default_socket() == runtime / "control.sock"
    (no_runtime_env / "empty.toml").write_text("")
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(map(os.path.abspath, env["PYTHONPATH"].split(":")))
    log = (no_runtime_env / "log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "gosipd.supervisor", "--config", "empty.toml"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not (runtime / "control.sock").exists():
            assert process.poll() is None, (no_runtime_env / "log").read_text()
            assert time.monotonic() < deadline, "no control socket"
            time.sleep(0.05)
        assert cli.main(["--json", "status"]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[0])["ok"]
        assert stat.S_IMODE(os.lstat(runtime).st_mode) in (0o700, 0o750)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_an_unsafe_parent_or_socket_dir_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could rename our directory away and put theirs there
    with pytest.raises(RuntimeDirError, match=r"its parent .* is writable by .* not sticky"):
        private_dir(shared / "run")
    with pytest.raises(
        RuntimeDirError, match=rf"control socket directory {re.escape(str(shared))} .* not sticky"
    ):
        check_socket_dir(shared)
    shared.chmod(0o1777)  # like /tmp: others may add, not replace ours
    assert stat.S_IMODE(os.lstat(private_dir(shared / "run")).st_mode) == 0o750
    check_socket_dir(shared)
    made = tmp_path / "new" / "sockets"
    check_socket_dir(made)
    assert stat.S_IMODE(os.lstat(made).st_mode) == 0o750


# --------------------------------------------------------------------------- imports

MALICIOUS = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported from the working directory")
async def run(call):
    pass
"""


def _plant(directory: Path, *names: str) -> dict[str, Path]:
    markers = {}
    for name in names:
        marker = directory / f"{name}.imported"
        (directory / f"{name}.py").write_text(MALICIOUS.format(marker=str(marker)))
        markers[name] = marker
    return markers


PROBE = """\
import json, os, sys
async def run(call):
    with open({out!r}, "w") as f:
        json.dump({{"path": sys.path, "cwd": os.getcwd()}}, f)
    async for frame in call.audio():
        call.write(frame)
"""


def test_apps_are_never_imported_from_the_working_directory(tmp_path: Path) -> None:
    """Started by hand with a bare ``python -m`` (the cwd first on sys.path) from a
    directory holding echo.py, tone.py and cwdapp.py: a call to the built-ins and to
    ``cwdapp`` imports none of them, and an app the calls do import (from PYTHONPATH)
    sees neither '' nor the cwd on sys.path."""
    lib = tmp_path / "lib"
    lib.mkdir()
    probe_out = tmp_path / "probe.json"
    (lib / "probeapp.py").write_text(PROBE.format(out=str(probe_out)))
    pythonpath = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(lib)]))
    daemon = Daemon(
        tmp_path / "d",
        routes={"probe": "probeapp", "cwd": "cwdapp", "*": "echo"},
        env={"PYTHONPATH": pythonpath},
        python_flags=(),
    )
    markers = _plant(daemon.directory, "echo", "tone", "cwdapp", "probeapp")
    try:
        daemon.start()
        target = f"127.0.0.1:{daemon.sip_port}"
        # the built-ins, both ends in one daemon
        _, conn = daemon.dial(f"sip:echo@{target}", max_duration=1, app="tone:440")
        assert conn.until_event("call.ended")["cause"] == "max_duration"
        # an app from PYTHONPATH: what sys.path holds in a call's process
        _, conn = daemon.dial(f"sip:probe@{target}", max_duration=1)
        assert conn.until_event("call.ended")["cause"] == "max_duration"
        # a user app that exists only in the cwd: the dial's own end, then an inbound route
        reply, conn = daemon.dial(f"sip:echo@{target}", max_duration=1, app="cwdapp")
        if reply.get("ok"):
            conn.until_event("call.ended")
        reply, conn = daemon.dial(f"sip:cwd@{target}", max_duration=1)
        if reply.get("ok"):
            conn.until_event("call.ended")
        assert daemon.request({"op": "status"})["ok"]
    finally:
        daemon.stop()
        imported = [name for name, marker in markers.items() if marker.exists()]
        assert imported == [], f"imported from the daemon's cwd: {imported}"
    seen = json.loads(probe_out.read_text())
    cwd = os.path.realpath(seen["cwd"])
    assert cwd == os.path.realpath(daemon.directory)
    assert "" not in seen["path"] and "." not in seen["path"]
    assert cwd not in [os.path.realpath(entry) for entry in seen["path"]], seen["path"]
    assert str(lib) in seen["path"]


def test_an_upgrade_does_not_import_gosipd_from_the_working_directory(tmp_path: Path) -> None:
    """SIGHUP re-executes ``python -m gosipd.supervisor``: a gosipd.py put in its cwd
    after the start is not what the new process runs, and calls go on."""
    daemon = Daemon(tmp_path / "d")
    try:
        daemon.start()
        time.sleep(1.5)  # so the new process's uptime is shorter than this one's
        before = daemon.request({"op": "status"})
        markers = _plant(daemon.directory, "gosipd", "trio", "echo")
        assert daemon.request({"op": "upgrade"})["ok"]
        deadline = time.monotonic() + 20
        while True:
            assert daemon.process is not None and daemon.process.poll() is None, (
                daemon.log.read_text()[-3000:]
            )
            try:
                after = daemon.request({"op": "status"}, timeout=2)
                if after["ok"] and after["uptime_s"] < before["uptime_s"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the upgrade did not come up"
            time.sleep(0.1)
        assert after["pid"] == before["pid"]
        _, conn = daemon.dial(f"sip:echo@127.0.0.1:{daemon.sip_port}", max_duration=1)
        assert conn.until_event("call.ended")["cause"] == "max_duration"
    finally:
        daemon.stop()
    imported = [name for name, marker in markers.items() if marker.exists()]
    assert imported == [], f"imported from the daemon's cwd: {imported}"
