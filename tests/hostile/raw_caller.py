"""A caller made of one plain UDP socket, for attacker-style tests: it writes its INVITE
by hand (so the SDP may name anyone), and ACKs, BYEs and answers only when told to.

``answering_front`` runs ``tests.worker.inbound_front.InboundFront`` (the supervisor's
inbound side, in-process) with the test's app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gosipd.config import Config
from gosipd.sip import Request, Response, SIPParseError, parse
from tests.worker.inbound_front import App, InboundFront


@asynccontextmanager
async def answering_front(tmp_path: Path, app: App, config: Config) -> AsyncIterator[InboundFront]:
    front = InboundFront(config, tmp_path / "run", app)
    await front.bind()
    async with trio.open_nursery() as nursery:
        await nursery.start(front.serve)
        yield front
        nursery.cancel_scope.cancel()


def offer(media_host: str, media_port: int, *, rtcp_port: int | None = None) -> bytes:
    rtcp = f"a=rtcp:{rtcp_port}\r\n" if rtcp_port is not None else ""
    return (
        f"v=0\r\no=- 1 1 IN IP4 {media_host}\r\ns=-\r\nc=IN IP4 {media_host}\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{rtcp}"
    ).encode()


@dataclass
class RawCaller:
    """Send ``invite()``; ``collect`` (in a nursery) keeps every datagram in ``received``."""

    sock: trio.socket.SocketType
    call_id: str
    received: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    new_datagram: trio.Event = field(default_factory=trio.Event)

    @classmethod
    async def bind(cls, call_id: str) -> RawCaller:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        return cls(sock, call_id)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    async def invite(self, front: tuple[str, int], body: bytes) -> None:
        host, port = self.address
        request = (
            f"INVITE sip:ivr@{front[0]}:{front[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{self.call_id};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:caller@{host}:{port}>;tag=raw{self.call_id}\r\n"
            f"To: <sip:ivr@{front[0]}:{front[1]}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:caller@{host}:{port}>\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        await self.sock.sendto(request, front)

    async def collect(self, *, answer_bye: bool = False) -> None:
        while True:
            data, source = await self.sock.recvfrom(65535)
            self.received.append((data, (source[0], source[1])))
            if answer_bye and data.startswith(b"BYE "):
                with_reply = _parsed(data)
                if isinstance(with_reply, Request):
                    await self.sock.sendto(bytes(Response.for_request(with_reply, 200)), source)
            self.new_datagram.set()
            self.new_datagram = trio.Event()

    def first_lines(self) -> list[str]:
        return [data.split(b"\r\n", 1)[0].decode() for data, _ in self.received]

    async def wait_for(self, start: bytes) -> tuple[bytes, tuple[str, int]]:
        while True:
            for data, source in self.received:
                if data.startswith(start):
                    return data, source
            await self.new_datagram.wait()

    async def ack(self) -> None:
        """ACK the 200 (to its Contact, with its To tag)."""
        ok, _ = await self.wait_for(b"SIP/2.0 200")
        text = ok.decode()
        contact_port = int(text.split("Contact: <sip:gosipd@127.0.0.1:", 1)[1].split(">")[0])
        to = next(h for h in text.split("\r\n") if h.startswith("To:"))
        host, port = self.address
        ack = (
            f"ACK sip:gosipd@127.0.0.1:{contact_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{self.call_id}ack;rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:caller@{host}:{port}>;tag=raw{self.call_id}\r\n{to}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
        await self.sock.sendto(ack.encode(), ("127.0.0.1", contact_port))

    def close(self) -> None:
        self.sock.close()


def _parsed(data: bytes) -> object:
    try:
        return parse(data)
    except SIPParseError:
        return None
