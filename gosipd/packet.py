"""One JSON object per SOCK_SEQPACKET packet, with file descriptors riding along as SCM_RIGHTS.

The supervisor, its zygote and the warm spares hand calls (and the sockets a
call takes over) to each other this way; one packet is one message, so no
framing is needed.

Also here, the framing of a SIP datagram that passes between the supervisor's
inbound socket and a call over a Unix datagram socket: ``"HOST PORT\n"`` (where
it came from, or where it goes) and then the datagram itself.
"""

from __future__ import annotations

import array
import json
import os
import socket
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_PACKET",
    "fd_names",
    "frame_datagram",
    "recv_packet",
    "send_packet",
    "unframe_datagram",
]

MAX_PACKET = 256 * 1024


def send_packet(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        sock.sendmsg([data], ancillary)
    else:
        sock.send(data)


def recv_packet(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One packet and the fds it carried; (None, []) at EOF."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(16 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message: dict[str, Any] = json.loads(data)
    return message, list(fds)


def fd_names(message: dict[str, Any], fds: Sequence[int]) -> dict[str, int]:
    """The fds a packet carried, by the names its ``fds`` field lists in order.

    A packet without names carries at most its client connection. Fds beyond
    the names are closed, so a confused sender cannot leak them into a call.
    """
    names = message.get("fds")
    if not isinstance(names, list):
        names = ["client"]
    named: dict[str, int] = {}
    for index, fd in enumerate(fds):
        name = str(names[index]) if index < len(names) else None
        if name is None or name in named:
            os.close(fd)
        else:
            named[name] = fd
    return named


def frame_datagram(address: tuple[str, int], data: bytes) -> bytes:
    return f"{address[0]} {address[1]}\n".encode() + data


def unframe_datagram(packet: bytes) -> tuple[tuple[str, int], bytes] | None:
    """The address and datagram of a framed packet; None when the header is malformed."""
    header, _, data = packet.partition(b"\n")
    try:
        host, port = header.decode().rsplit(" ", 1)
        return (host, int(port)), data
    except (UnicodeDecodeError, ValueError):
        return None
