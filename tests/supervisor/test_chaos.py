"""Crash isolation, re-adoption, zero-downtime upgrade and drain, with real calls up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from .daemon import Daemon

pytestmark = pytest.mark.interop

CALLS = 50


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def place_calls(daemon: Daemon, uri: str, count: int, **fields):
    placed = []
    for _ in range(count):
        reply, conn = daemon.dial(uri, max_duration=120, **fields)
        assert reply["ok"], reply
        placed.append((reply["call"], conn))
    for _, conn in placed:
        conn.until_event("call.answered")
    return placed


def options(port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        sock.sendto(
            (
                f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKprobe{local};rport\r\n"
                f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:probe@127.0.0.1>\r\n"
                f"Call-ID: probe-{local}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        return sock.recv(65535).decode()


def test_chaos_kills_restart_and_drain_with_fifty_calls(gosipd, sipp_uas):
    uas = sipp_uas("echo")
    daemon = gosipd()
    placed = place_calls(daemon, uas.uri("echo"), CALLS)
    assert daemon.request({"op": "status"})["calls"] == CALLS

    # kill -9 three workers: only those calls end, each with a BYE sent on its behalf
    pids = daemon.worker_pids()
    victims = [placed[i] for i in (3, 17, 41)]
    byes_before = uas.received("BYE")
    for call_id, _ in victims:
        os.kill(pids[call_id], signal.SIGKILL)
    for _, conn in victims:
        ended = conn.until_event("call.ended")
        assert ended["cause"] == "worker_crashed"
        assert ended["exit_status"] == -signal.SIGKILL
        assert ended["bye_sent"] is True
    wait_for(lambda: uas.received("BYE") >= byes_before + 3)
    survivors = [p for p in placed if p not in victims]
    assert daemon.request({"op": "status"})["calls"] == CALLS - 3

    # kill -9 the supervisor: no call notices; a new one re-adopts them all
    daemon.kill(signal.SIGKILL)
    time.sleep(0.5)
    assert all(os.path.exists(f"/proc/{pid}") for cid, pid in daemon.worker_pids().items())
    daemon.start()
    status = daemon.request({"op": "status"})
    assert status["calls"] == CALLS - 3
    assert status["counters"]["adopted"] == CALLS - 3
    listed = {c["call"] for c in daemon.request({"op": "calls"})["calls"]}
    assert listed == {call_id for call_id, _ in survivors}

    # drain with a deadline: no new dial, OPTIONS 503, then everything is hung up
    assert daemon.request({"op": "drain", "deadline": 1})["ok"]
    refused, _ = daemon.dial(uas.uri("echo"))
    assert refused["error"]["code"] == "draining"
    assert options(daemon.sip_port).startswith("SIP/2.0 503")
    assert "Retry-After:" in options(daemon.sip_port)
    for _, conn in survivors:
        ended = conn.until_event("call.ended", timeout=30)
        assert ended["cause"] == "local_hangup"
        assert ended["media"]["packets_lost"] == 0
    assert daemon.process is not None
    assert daemon.process.wait(timeout=20) == 0
    wait_for(lambda: uas.received("BYE") >= byes_before + CALLS)
    assert daemon.worker_pids() == {}


def _copy_tree(tmp_path: Path) -> Path:
    """A private copy of the installed package, so the test can 'install' a new version."""
    import gosipd

    source = Path(gosipd.__file__).parent
    root = tmp_path / "site"
    shutil.copytree(source, root / "gosipd", ignore=shutil.ignore_patterns("*.c", "__pycache__"))
    shutil.copytree(
        source.parent / "supervisor",
        root / "gosipd" / "supervisor",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


def test_upgrade_under_dial_load_drops_nothing_and_new_calls_run_new_code(
    gosipd, sipp_uas, tmp_path
):
    uas = sipp_uas("echo")
    site = _copy_tree(tmp_path)
    daemon = gosipd(pythonpath=site)
    old_pid = daemon.pid
    [(old_call, old_conn)] = place_calls(daemon, uas.uri("echo"), 1)
    assert daemon.request({"op": "show", "call": old_call})["version"] == "0.1.0"

    results: list[dict] = []
    stop = threading.Event()

    def dial_load() -> None:
        while not stop.is_set():
            try:
                reply, conn = daemon.dial(uas.uri("echo"), max_duration=1)
            except OSError as exc:  # a refused connection is a refused dial
                results.append({"ok": False, "error": {"code": "connect", "message": str(exc)}})
                continue
            if reply.get("ok"):
                started = conn.until_event("call.started")
                ended = conn.until_event("call.ended")
                results.append({"ok": True, "version": started["version"], "cause": ended["cause"]})
            else:
                results.append(reply)
            conn.close()

    threads = [threading.Thread(target=dial_load) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    version_file = site / "gosipd" / "_version.py"
    version_file.write_text('__version__ = "0.2.0"\n')
    assert daemon.request({"op": "upgrade"})["ok"]
    wait_for(lambda: daemon.request({"op": "status"})["version"] == "0.2.0", timeout=20)
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert daemon.pid == old_pid  # re-exec: same process, new code
    assert results and all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    versions = [r["version"] for r in results]
    assert "0.1.0" in versions and versions[-1] == "0.2.0"
    assert all(r["cause"] == "max_duration" for r in results)
    # the call placed before the upgrade still runs the code it started with
    assert daemon.request({"op": "show", "call": old_call})["version"] == "0.1.0"
    assert daemon.request({"op": "hangup", "call": old_call})["ok"]
    assert old_conn.until_event("call.ended")["cause"] == "local_hangup"


def test_a_live_inbound_call_never_keeps_the_sip_port_from_a_restarted_supervisor(gosipd):
    """Calls answer their INVITE from the public port through the supervisor's relay and
    never hold that socket, so a supervisor killed mid-call comes back on the same port."""
    daemon = gosipd()
    _, conn = daemon.dial(f"sip:echo@127.0.0.1:{daemon.sip_port}", max_duration=30)
    conn.until_event("call.answered")
    assert len(daemon.worker_pids()) == 2  # our outbound call and the inbound one it reached
    daemon.kill(signal.SIGKILL)
    daemon.start()  # binds the SIP port again: no call holds it
    assert daemon.request({"op": "status"})["counters"]["adopted"] == 2
    assert options(daemon.sip_port).startswith("SIP/2.0 200")
    calls = daemon.request({"op": "calls"})["calls"]
    outbound = next(c["call"] for c in calls if c["direction"] == "outbound")
    assert daemon.request({"op": "hangup", "call": outbound})["ok"]
    assert conn.until_event("call.ended")["cause"] == "local_hangup"
