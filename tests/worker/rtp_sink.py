"""A plain UDP socket that collects the RTP sent to it: where a test stands in for a far
end's new media address, or for a far end that vanished."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import trio

from gosipd import _dsp


@dataclass(frozen=True)
class RtpPacket:
    arrival: float
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


@dataclass
class RtpSink:
    """Bind with ``await RtpSink.bind()``, run ``collect`` in a nursery, read ``packets``."""

    sock: trio.socket.SocketType
    packets: list[RtpPacket] = field(default_factory=list)

    @classmethod
    async def bind(cls, host: str = "127.0.0.1") -> RtpSink:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind((host, 0))
        return cls(sock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def collect(self) -> None:
        while True:
            data = await self.sock.recv(2048)
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            _, marker_pt, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
            self.packets.append(
                RtpPacket(
                    trio.current_time(), marker_pt & 0x7F, sequence, timestamp, ssrc, data[12:]
                )
            )

    def pcm(self) -> np.ndarray:
        """The PCMU payloads decoded, in arrival order, as float samples."""
        ulaw = b"".join(p.payload for p in self.packets if p.payload_type == 0)
        return np.frombuffer(_dsp.ulaw_decode(ulaw), np.int16).astype(np.float64)

    def close(self) -> None:
        self.sock.close()
