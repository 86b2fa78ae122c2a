"""RTP packets (RFC 3550 §5.1): parse and build, and the RFC 5761 RTP/RTCP demultiplexing test.

A packet that breaks the header rules raises ``RTPError`` naming the rule
(``kind``) and the offset; the media loop counts such packets and drops them.
The media loop's C header parser (``gosipd._media.parse_rtp_header``) follows
the same rules and is tested against this module on the same inputs.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_SIZE",
    "MAX_PACKET_SIZE",
    "RTP_VERSION",
    "RTPError",
    "RtpPacket",
    "is_rtcp",
    "random_start",
]

RTP_VERSION = 2
#: The fixed header, before CSRCs and the extension.
HEADER_SIZE = 12
#: The largest RTP datagram the media loop reads; anything longer is malformed for voice.
MAX_PACKET_SIZE = 1500
_HEADER = struct.Struct("!BBHII")

#: Error kinds, shared with the C parser (same numbers).
TOO_SHORT = 1
BAD_VERSION = 2
CSRC_OVERRUN = 3
EXTENSION_OVERRUN = 4
BAD_PADDING = 5
RTCP_PAYLOAD_TYPE = 6
TOO_LONG = 7
ERROR_KINDS = {
    TOO_SHORT: "shorter than the 12-byte RTP header",
    BAD_VERSION: "RTP version is not 2",
    CSRC_OVERRUN: "CSRC list runs past the end",
    EXTENSION_OVERRUN: "header extension runs past the end",
    BAD_PADDING: "padding count is zero or longer than the payload",
    RTCP_PAYLOAD_TYPE: "payload type 72-76 collides with RTCP (RFC 5761)",
    TOO_LONG: f"longer than {MAX_PACKET_SIZE} bytes",
}


class RTPError(ValueError):
    """A malformed RTP packet: ``kind`` is one of the module's error numbers."""

    def __init__(self, kind: int, offset: int, detail: str = "") -> None:
        self.kind = kind
        self.offset = offset
        text = f"RTP packet invalid at byte {offset}: {ERROR_KINDS[kind]}"
        super().__init__(text + (f" ({detail})" if detail else ""))


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    #: (profile-defined 16 bits, extension data whose length is a multiple of 4)
    extension: tuple[int, bytes] | None = None
    #: Number of padding octets to append (build) or that were present (parse), 0 for none.
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        data = bytes(data)
        n = len(data)
        if n > MAX_PACKET_SIZE:
            raise RTPError(TOO_LONG, MAX_PACKET_SIZE, f"{n} bytes")
        if n < HEADER_SIZE:
            raise RTPError(TOO_SHORT, n, f"{n} bytes")
        first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RTPError(BAD_VERSION, 0, f"version {first >> 6}")
        pt = second & 0x7F
        if 72 <= pt <= 76:
            raise RTPError(RTCP_PAYLOAD_TYPE, 1, f"payload type {pt}")
        offset = HEADER_SIZE
        cc = first & 0x0F
        if offset + 4 * cc > n:
            raise RTPError(CSRC_OVERRUN, offset, f"{cc} CSRCs")
        csrcs = struct.unpack_from(f"!{cc}I", data, offset)
        offset += 4 * cc
        extension = None
        if first & 0x10:
            if offset + 4 > n:
                raise RTPError(EXTENSION_OVERRUN, offset, "no room for its header")
            profile, words = struct.unpack_from("!HH", data, offset)
            if offset + 4 + 4 * words > n:
                raise RTPError(EXTENSION_OVERRUN, offset, f"{words} words")
            extension = (profile, data[offset + 4 : offset + 4 + 4 * words])
            offset += 4 + 4 * words
        end = n
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or padding > n - offset:
                raise RTPError(BAD_PADDING, n - 1, f"count {padding}, {n - offset} bytes follow")
            end -= padding
        return cls(
            payload_type=pt,
            sequence=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=data[offset:end],
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
            padding=padding,
        )

    def build(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type must be 0-127, got {self.payload_type}")
        if len(self.csrcs) > 15:
            raise ValueError(f"at most 15 CSRCs, got {len(self.csrcs)}")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding must be 0-255 octets, got {self.padding}")
        first = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        out = bytearray(
            _HEADER.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        )
        for c in self.csrcs:
            out += struct.pack("!I", c)
        if self.extension is not None:
            profile, ext = self.extension
            if len(ext) % 4:
                raise ValueError(f"extension data must be whole 32-bit words, got {len(ext)} bytes")
            out += struct.pack("!HH", profile, len(ext) // 4) + ext
        out += self.payload
        if self.padding:
            out += bytes(self.padding - 1) + bytes([self.padding])
        return bytes(out)


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 §4: on a multiplexed port, the second octet 192-223 marks RTCP."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def random_start() -> tuple[int, int, int]:
    """A new stream's random SSRC, initial sequence number and timestamp (RFC 3550 §5.1)."""
    return secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
