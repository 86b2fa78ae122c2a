"""A warm spare binds its call's control socket ahead of time; the call renames it into place."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import trio
from gosipd.supervisor.registry import Registry

from gosipd.publication import CallPublication, bind_listener
from gosipd.spare import LISTENER_PREFIX, LISTENER_SUFFIX


async def test_a_prebound_listener_becomes_the_calls_control_socket(tmp_path):
    calls = tmp_path / "calls"
    spare_path = calls / f"{LISTENER_PREFIX}{os.getpid()}{LISTENER_SUFFIX}"
    listener = bind_listener(spare_path)
    publication = CallPublication(tmp_path, "c1", prebound=(listener, spare_path))
    publication.open()
    assert not spare_path.exists()
    assert oct(publication.socket_path.stat().st_mode & 0o777) == "0o660"
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(publication.socket_path))  # the same listening socket, new name
    client.close()
    publication.close(clean=True)
    assert list(calls.iterdir()) == []
    await trio.lowlevel.checkpoint()


def test_a_prebound_listener_never_used_is_removed_with_the_publication(tmp_path):
    spare_path = tmp_path / "calls" / "spare-1.listen"
    publication = CallPublication(tmp_path, "c2", prebound=(bind_listener(spare_path), spare_path))
    publication.close(clean=True)
    assert not spare_path.exists()


def test_the_registry_scan_removes_listeners_of_spares_that_died(tmp_path):
    calls = tmp_path / "calls"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = calls / f"{LISTENER_PREFIX}{int(dead.stdout)}{LISTENER_SUFFIX}"
    live = calls / f"{LISTENER_PREFIX}{os.getpid()}{LISTENER_SUFFIX}"
    socks = [bind_listener(stale), bind_listener(live)]
    Registry(tmp_path).scan()
    assert not stale.exists()
    assert live.exists()
    for sock in socks:
        sock.close()
