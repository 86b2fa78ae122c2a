"""RTCP (RFC 3550 §6): compound packets, and the report schedule of one RTP session.

``parse_compound`` validates a compound packet the way RFC 3550 A.2 says
(version 2, the first packet an SR or RR, padding only in the last, lengths
adding up) and returns typed packets: ``SenderReport``, ``ReceiverReport``,
``SourceDescription``, ``Bye``, and ``UnknownRtcp`` for the rest (APP,
feedback). ``build_compound`` writes them back.

``RtcpSession`` is sans-I/O: it says when the next report is due
(``next_timer``; 5 s minimum interval, randomised and halved for the first
report as in §6.2 and §6.3.5), builds the report from the sender and
reception counters it is given, and reads the far end's reports to compute
the round-trip time from LSR/DLSR (§6.4.1). Wall-clock times (for the NTP
timestamps and LSR/DLSR) and the monotonic time (for the schedule) are
passed in; nothing here reads a clock.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from gosipd.rtp.statistics import ReceptionSnapshot

__all__ = [
    "MAX_RTCP_SIZE",
    "MIN_INTERVAL",
    "Bye",
    "RTCPError",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpSession",
    "SenderInfo",
    "SenderReport",
    "SenderSnapshot",
    "SourceDescription",
    "UnknownRtcp",
    "build_compound",
    "ntp_from_unix",
    "parse_compound",
]

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
SDES_CNAME = 1
#: The largest compound packet read or written.
MAX_RTCP_SIZE = 1500
#: The minimum report interval (RFC 3550 §6.2), in seconds.
MIN_INTERVAL = 5.0
#: RFC 3550 §6.3.1: divide the randomised interval by e - 3/2.
_COMPENSATION = 2.71828 - 1.5
#: Seconds from 1900 (NTP) to 1970 (Unix).
NTP_UNIX_OFFSET = 2_208_988_800
MAX_REPORT_BLOCKS = 31


class RTCPError(ValueError):
    """A malformed RTCP compound packet; says at which byte and why."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"RTCP packet invalid at byte {offset}: {reason}")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0-255, of 256
    cumulative_lost: int  # signed 24 bits
    highest_sequence: int  # extended
    jitter: int  # timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0  # 1/65536 s since that SR

    _STRUCT = struct.Struct("!IB3sIIII")

    def build(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost)) & 0xFFFFFF
        return self._STRUCT.pack(
            self.ssrc,
            max(0, min(255, self.fraction_lost)),
            lost.to_bytes(3, "big"),
            self.highest_sequence & 0xFFFFFFFF,
            max(0, min(0xFFFFFFFF, self.jitter)),
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = cls._STRUCT.unpack_from(data, offset)
        cumulative = int.from_bytes(lost, "big")
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, fraction, cumulative, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderInfo:
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    sender: SenderInfo
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    #: (ssrc, ((item type, value), ...)) per chunk
    chunks: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]

    def cname(self, ssrc: int) -> str | None:
        for chunk_ssrc, items in self.chunks:
            if chunk_ssrc == ssrc:
                for kind, value in items:
                    if kind == SDES_CNAME:
                        return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def ntp_from_unix(seconds: float) -> int:
    """Unix time in seconds -> 64-bit NTP timestamp (32.32 fixed point since 1900)."""
    return int((seconds + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (the LSR and arrival time format)."""
    return (ntp >> 16) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Parse / build
# ---------------------------------------------------------------------------


def _blocks(data: bytes, offset: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > end:
        raise RTCPError(f"{count} report blocks do not fit in the packet", offset)
    return tuple(ReportBlock.parse(data, offset + 24 * i) for i in range(count))


def _parse_sdes(data: bytes, offset: int, count: int, end: int) -> SourceDescription:
    chunks = []
    for _ in range(count):
        if offset + 4 > end:
            raise RTCPError("SDES chunk runs past the end", offset)
        (ssrc,) = struct.unpack_from("!I", data, offset)
        offset += 4
        items = []
        while True:
            if offset >= end:
                raise RTCPError("SDES chunk has no terminating null item", offset)
            kind = data[offset]
            if kind == 0:
                offset = (offset + 4) & ~3  # skip the null and pad to a word
                break
            if offset + 2 > end or offset + 2 + data[offset + 1] > end:
                raise RTCPError("SDES item runs past the end", offset)
            length = data[offset + 1]
            items.append((kind, data[offset + 2 : offset + 2 + length]))
            offset += 2 + length
        chunks.append((ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Validate and parse a compound RTCP packet (RFC 3550 A.2)."""
    data = bytes(data)
    total = len(data)
    if total > MAX_RTCP_SIZE:
        raise RTCPError(f"{total} bytes exceed {MAX_RTCP_SIZE}", MAX_RTCP_SIZE)
    if total < 8:
        raise RTCPError(f"{total} bytes cannot hold an RTCP header and SSRC", 0)
    if total % 4:
        raise RTCPError(f"length {total} is not a multiple of 4", total)
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < total:
        if offset + 4 > total:
            raise RTCPError("truncated header", offset)
        first, ptype, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != 2:
            raise RTCPError(f"version {first >> 6}, not 2", offset)
        if not packets and ptype not in (SR, RR):
            raise RTCPError(f"a compound packet must start with SR or RR, not type {ptype}", offset)
        end = offset + 4 * (words + 1)
        if end > total:
            raise RTCPError(
                f"length field says {4 * (words + 1)} bytes, {total - offset} left", offset
            )
        if first & 0x20:
            if end != total:
                raise RTCPError("padding in a packet that is not the last", offset)
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise RTCPError(f"padding count {pad} is invalid", end - 1)
            body_end = end - pad
        else:
            body_end = end
        count = first & 0x1F
        body = offset + 4
        if ptype == SR:
            if body + 24 > body_end:
                raise RTCPError("SR too short for the sender info", offset)
            ssrc, ntp_hi, ntp_lo, rtp_ts, pkts, octets = struct.unpack_from("!IIIIII", data, body)
            info = SenderInfo((ntp_hi << 32) | ntp_lo, rtp_ts, pkts, octets)
            packets.append(SenderReport(ssrc, info, _blocks(data, body + 24, count, body_end)))
        elif ptype == RR:
            if body + 4 > body_end:
                raise RTCPError("RR too short for its SSRC", offset)
            (ssrc,) = struct.unpack_from("!I", data, body)
            packets.append(ReceiverReport(ssrc, _blocks(data, body + 4, count, body_end)))
        elif ptype == SDES:
            packets.append(_parse_sdes(data, body, count, body_end))
        elif ptype == BYE:
            if body + 4 * count > body_end:
                raise RTCPError(f"BYE lists {count} SSRCs that do not fit", offset)
            ssrcs = struct.unpack_from(f"!{count}I", data, body)
            at = body + 4 * count
            reason = None
            if at < body_end:
                length = data[at]
                if at + 1 + length > body_end:
                    raise RTCPError("BYE reason runs past the end", at)
                reason = data[at + 1 : at + 1 + length].decode("utf-8", "replace")
            packets.append(Bye(tuple(ssrcs), reason))
        else:
            packets.append(UnknownRtcp(ptype, count, data[body:body_end]))
        offset = end
    return packets


def _header(ptype: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError(f"RTCP body of {len(body)} bytes is not word aligned")
    return struct.pack("!BBH", 0x80 | count, ptype, len(body) // 4) + body


def _build_one(packet: RtcpPacket) -> bytes:
    if isinstance(packet, SenderReport | ReceiverReport):
        if len(packet.reports) > MAX_REPORT_BLOCKS:
            raise ValueError(f"at most {MAX_REPORT_BLOCKS} report blocks")
        blocks = b"".join(b.build() for b in packet.reports)
        if isinstance(packet, SenderReport):
            s = packet.sender
            body = struct.pack(
                "!IIIIII",
                packet.ssrc,
                (s.ntp_timestamp >> 32) & 0xFFFFFFFF,
                s.ntp_timestamp & 0xFFFFFFFF,
                s.rtp_timestamp & 0xFFFFFFFF,
                s.packet_count & 0xFFFFFFFF,
                s.octet_count & 0xFFFFFFFF,
            )
            return _header(SR, len(packet.reports), body + blocks)
        return _header(RR, len(packet.reports), struct.pack("!I", packet.ssrc) + blocks)
    if isinstance(packet, SourceDescription):
        body = b""
        for ssrc, items in packet.chunks:
            chunk = struct.pack("!I", ssrc)
            for kind, value in items:
                if len(value) > 255:
                    raise ValueError(f"SDES item of {len(value)} bytes exceeds 255")
                chunk += bytes([kind, len(value)]) + value
            chunk += b"\0" * (4 - len(chunk) % 4)  # null item + padding to a word
            body += chunk
        return _header(SDES, len(packet.chunks), body)
    if isinstance(packet, Bye):
        body = b"".join(struct.pack("!I", s) for s in packet.ssrcs)
        if packet.reason is not None:
            text = packet.reason.encode("utf-8")[:255]
            body += bytes([len(text)]) + text
            body += b"\0" * (-len(body) % 4)
        return _header(BYE, len(packet.ssrcs), body)
    return _header(packet.packet_type, packet.count, packet.body)


def build_compound(packets: list[RtcpPacket]) -> bytes:
    data = b"".join(_build_one(p) for p in packets)
    if len(data) > MAX_RTCP_SIZE:
        raise ValueError(f"compound RTCP of {len(data)} bytes exceeds {MAX_RTCP_SIZE}")
    return data


# ---------------------------------------------------------------------------
# One session's reports
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderSnapshot:
    """What we sent so far, and the RTP timestamp that corresponds to the report's wall clock."""

    packets: int
    octets: int
    rtp_timestamp: int


@dataclass
class _RemoteSR:
    lsr: int  # middle 32 bits of its NTP timestamp
    received_at: float  # our wall clock, seconds


@dataclass
class RtcpSession:
    """RTCP for one RTP session in which we are SSRC ``ssrc``."""

    ssrc: int
    cname: str
    min_interval: float = MIN_INTERVAL
    rng: random.Random = field(default_factory=random.Random)
    rtt: float | None = None
    #: The far end's latest report block about our stream (its view of our loss and jitter).
    remote_report: ReportBlock | None = None
    remote_ssrc: int | None = None
    reports_sent: int = 0
    reports_received: int = 0
    malformed: int = 0
    _next: float | None = None
    _remote_sr: _RemoteSR | None = None
    _prior: ReceptionSnapshot | None = None

    def start(self, now: float) -> None:
        """Schedule the first report: half the minimum interval, randomised (§6.2)."""
        self._next = now + self._interval(self.min_interval / 2)

    def _interval(self, base: float) -> float:
        return base * self.rng.uniform(0.5, 1.5) / _COMPENSATION

    def next_timer(self) -> float | None:
        return self._next

    def handle_timer(
        self,
        now: float,
        wallclock: float,
        sent: SenderSnapshot | None,
        received: ReceptionSnapshot | None,
    ) -> bytes | None:
        """The compound report due at ``now`` (None if none is due yet); schedules the next."""
        if self._next is None or now < self._next:
            return None
        self._next = now + self._interval(self.min_interval)
        return self.report(wallclock, sent, received)

    def report(
        self,
        wallclock: float,
        sent: SenderSnapshot | None,
        received: ReceptionSnapshot | None,
        *,
        bye: str | None = None,
    ) -> bytes:
        """SR (if we have sent anything) or RR, then SDES CNAME, and a BYE if ``bye`` is given."""
        blocks: tuple[ReportBlock, ...] = ()
        if received is not None and received.received > 0:
            fraction = int(received.fraction_lost_since(self._prior) * 256)
            lsr = dlsr = 0
            if self._remote_sr is not None:
                lsr = self._remote_sr.lsr
                dlsr = int(max(0.0, wallclock - self._remote_sr.received_at) * 65536)
            blocks = (
                ReportBlock(
                    received.ssrc,
                    min(255, fraction),
                    received.lost,
                    received.extended_max,
                    int(received.jitter),
                    lsr,
                    dlsr,
                ),
            )
            self._prior = received
        first: RtcpPacket
        if sent is not None and sent.packets > 0:
            info = SenderInfo(
                ntp_from_unix(wallclock), sent.rtp_timestamp, sent.packets, sent.octets
            )
            first = SenderReport(self.ssrc, info, blocks)
        else:
            first = ReceiverReport(self.ssrc, blocks)
        packets: list[RtcpPacket] = [
            first,
            SourceDescription(((self.ssrc, ((SDES_CNAME, self.cname.encode()[:255]),)),)),
        ]
        if bye is not None:
            packets.append(Bye((self.ssrc,), bye or None))
        self.reports_sent += 1
        return build_compound(packets)

    def receive(self, data: bytes, arrival_wallclock: float) -> list[RtcpPacket]:
        """A compound packet from the far end; malformed ones are counted and give []."""
        try:
            packets = parse_compound(data)
        except RTCPError:
            self.malformed += 1
            return []
        self.reports_received += 1
        for p in packets:
            if isinstance(p, SenderReport):
                self.remote_ssrc = p.ssrc
                self._remote_sr = _RemoteSR(ntp_middle(p.sender.ntp_timestamp), arrival_wallclock)
            elif isinstance(p, ReceiverReport):
                self.remote_ssrc = p.ssrc
            if isinstance(p, SenderReport | ReceiverReport):
                for block in p.reports:
                    if block.ssrc == self.ssrc:
                        self.remote_report = block
                        self._round_trip(block, arrival_wallclock)
        return packets

    def _round_trip(self, block: ReportBlock, arrival_wallclock: float) -> None:
        if block.lsr == 0:
            return  # the far end has not received an SR from us yet
        arrival = ntp_middle(ntp_from_unix(arrival_wallclock))
        delta = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
        if delta < 1 << 31:  # else the clocks or the report are inconsistent
            self.rtt = delta / 65536.0
