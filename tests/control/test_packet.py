"""The supervisor/zygote/spare packet wire: JSON plus named file descriptors."""

from __future__ import annotations

import os
import socket

from gosipd.packet import fd_names, frame_datagram, recv_packet, send_packet, unframe_datagram


def _open_fds(count: int) -> list[int]:
    return [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_named_fds_travel_with_their_message():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sent = _open_fds(2)
    send_packet(ours, {"op": "spawn", "fds": ["client", "extra"]}, sent)
    message, fds = recv_packet(theirs)
    assert message is not None and message["op"] == "spawn"
    named = fd_names(message, fds)
    assert set(named) == {"client", "extra"} and all(_is_open(fd) for fd in named.values())
    for fd in [*sent, *named.values()]:
        os.close(fd)
    ours.close()
    assert recv_packet(theirs) == (None, [])
    theirs.close()


def test_unnamed_or_twice_named_fds_are_closed_not_leaked():
    fds = _open_fds(3)
    named = fd_names({"fds": ["client", "client"]}, fds)
    assert named == {"client": fds[0]}
    assert _is_open(fds[0]) and not _is_open(fds[1]) and not _is_open(fds[2])
    os.close(fds[0])


def test_a_framed_datagram_keeps_its_address_and_bytes():
    data = b"SIP/2.0 200 OK\r\n\r\n\n\x00"
    assert unframe_datagram(frame_datagram(("::1", 5060), data)) == (("::1", 5060), data)
    assert unframe_datagram(b"no port here\nx") is None
    assert unframe_datagram(b"\xff\xfe 1\nx") is None
