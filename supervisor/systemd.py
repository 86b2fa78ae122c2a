"""The two pieces of systemd the supervisor speaks: sd_notify and socket activation.

Both are small, documented wire protocols (sd_notify(3), sd_listen_fds(3)),
so they are written here rather than pulled in as a dependency.
"""

from __future__ import annotations

import os
import socket

__all__ = ["SD_LISTEN_FDS_START", "listen_fds", "notify"]

SD_LISTEN_FDS_START = 3


def notify(*lines: str) -> bool:
    """Send ``READY=1``, ``RELOADING=1``, ``STATUS=...`` to systemd; False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    payload = "\n".join(lines).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(payload)
        except OSError:
            return False
    return True


def listen_fds(*, unset: bool = True) -> list[socket.socket]:
    """The sockets systemd passed us (LISTEN_PID/LISTEN_FDS), as socket objects."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets
