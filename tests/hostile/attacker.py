"""A stranger on the network: raw UDP to a live supervisor's public SIP port, and a raw
TCP server at the other end of a connection we open (a SIP trunk, a WebSocket server)."""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from gosipd import sip
from gosipd.sip import Response

#: What a raw server does with one connection, after reading its head (``serve_raw``).
Behaviour = Callable[[trio.SocketStream, bytes], Awaitable[None]]


async def serve_raw(behaviour: Behaviour, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A TCP listener on loopback that reads each connection up to the blank line after
    its head (a SIP request's, an HTTP upgrade's) and hands it and the stream to
    ``behaviour``; ``nursery.start`` it for the listener."""

    async def handler(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        await behaviour(stream, data)

    await trio.serve_tcp(handler, 0, host="127.0.0.1", task_status=task_status)


def options(
    port: int, *, via: str | None = None, extra: str = "", user: str = "probe", tag: str = ""
) -> bytes:
    """An OPTIONS as a scanner sends it; ``via`` replaces the whole Via value."""
    branch = f"z9hG4bK{secrets.token_hex(6)}"
    via_value = via if via is not None else f"SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport"
    return (
        f"OPTIONS sip:{user}@127.0.0.1 SIP/2.0\r\n"
        f"Via: {via_value}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:attacker@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{user}@127.0.0.1>{tag}\r\n"
        f"Call-ID: {secrets.token_hex(8)}@attacker\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def stream_options(transport: str = "TCP") -> bytes:
    """An OPTIONS sent on a TCP or TLS connection: its Via names a port nobody listens
    on (9), so an answer can only come back on the connection."""
    branch = f"z9hG4bK{secrets.token_hex(6)}"
    return options(9, via=f"SIP/2.0/{transport} 127.0.0.1:9;branch={branch}")


def invite(port: int, *, user: str = "echo", sdp_port: int = 40000, call_id: str = "") -> bytes:
    body = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {sdp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    branch = f"z9hG4bK{secrets.token_hex(6)}"
    return (
        f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:attacker@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {call_id or secrets.token_hex(8)}@attacker\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:attacker@127.0.0.1:{port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def raw_call_id(data: bytes) -> str:
    """The Call-ID as sent, read without the parser (the message may be broken)."""
    match = re.search(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", data, re.MULTILINE | re.IGNORECASE)
    return match.group(1).decode("latin-1") if match else ""


class Attacker:
    """One UDP socket; ``ask`` sends a datagram and returns the responses it draws."""

    def __init__(self, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = int(self.sock.getsockname()[1])

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def responses(self, wait: float = 2.0, *, until: int | None = None) -> list[Response]:
        """Responses arriving within ``wait`` s (sooner, once one has status >= ``until``)."""
        found: list[Response] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, BlockingIOError):
                break
            with contextlib.suppress(sip.SIPParseError):
                message = sip.parse(data)
                if isinstance(message, Response):
                    found.append(message)
                    if until is not None and message.status >= until:
                        break
        return found

    def reply_to(self, call_id: str, wait: float) -> Response | None:
        """The first response in the transaction of ``call_id``, skipping all others."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, BlockingIOError):
                return None
            with contextlib.suppress(sip.SIPParseError):
                message = sip.parse(data)
                if isinstance(message, Response) and raw_call_id(data) == call_id:
                    return message
        return None

    def ask(self, data: bytes, wait: float = 2.0) -> list[Response]:
        self.send(data)
        return self.responses(wait, until=200)

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(65535)
        self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()
