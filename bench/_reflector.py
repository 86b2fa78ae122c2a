"""A minimal RTP reflector for the media bench when SIPp is not installed.

    python bench/_reflector.py PORT

Sends every datagram received on 127.0.0.1:PORT back to where it came from,
until SIGTERM. One process, one socket, a large receive buffer.
"""

from __future__ import annotations

import socket
import sys


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    buffer = bytearray(2048)
    view = memoryview(buffer)
    recv, send = sock.recvfrom_into, sock.sendto
    while True:
        n, source = recv(buffer)
        send(view[:n], source)


if __name__ == "__main__":
    main()
