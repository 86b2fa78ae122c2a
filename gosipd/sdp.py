"""SDP (RFC 4566) parse and format, and the RFC 3264 offer/answer rules for one audio stream.

Sans-I/O: text in, text out, no sockets, no clock, no DNS. Randomness (the
``o=`` session id) comes from ``secrets`` unless the caller passes one.

Parsing is faithful: session and media sections keep their ``c=``, ``b=``
and ``a=`` lines in order, lines this module does not interpret (``i=``,
``u=``, ``e=``, ``p=``, ``r=``, ``z=``, ``k=`` and unknown letters) are kept
and written back in their RFC 4566 place, so ``parse(text).format()`` gives
back well-formed input unchanged. Bad SDP raises ``SDPParseError`` naming the
line number, the line and what is wrong with it.

Offer/answer (RFC 3264) for the media gosipd does: G.711 PCMU (PT 0) and PCMA
(PT 8), RFC 4733 ``telephone-event`` (dynamic PT, events 0-15), optionally CN
(PT 13, RFC 3389):

- ``make_offer`` builds an offer; ``negotiate`` reads the answer to it.
- ``answer`` answers a far end's offer, choosing the first codec of the
  offer that we support, reusing the offerer's dynamic payload type numbers,
  rejecting (port 0) every other media stream, and raising
  ``NegotiationError`` (``sip_status`` 488) when nothing is usable.
- ``hold`` / ``resume`` make the re-offers for hold (``sendonly``, or
  ``inactive`` when the far end already holds us; optionally the RFC 2543
  ``c=0.0.0.0`` form) and resume; an offer that holds *us* in either form
  is understood by ``answer``.
- ``o=`` version rules (RFC 3264 §8): pass the previous local description
  as ``previous`` and the new one keeps its username and session id, and
  its version goes up by exactly one if (and only if) anything else changed.

SRTP keys (RFC 4568 SDES, parsed in ``gosipd.sdes``): ``make_offer(crypto=...)``
adds ``a=crypto`` lines, with ``RTP/SAVP`` when SRTP is required or ``RTP/AVP``
when it is only offered (best effort, as Asterisk, FreeSWITCH and baresip's
``srtp`` do); ``answer(srtp=...)`` accepts a secure stream by answering the
first offered line we support with a key of ours, and ``negotiate`` reads
the one line the answer must carry. ``NegotiatedMedia.srtp`` is the outcome.

Directions are always *ours*: ``NegotiatedMedia.direction == "sendonly"``
means we send and do not receive.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from gosipd.sdes import DEFAULT_SUITES, Crypto, CryptoError, SrtpKeys, acceptable

__all__ = [
    "CODECS",
    "DIRECTIONS",
    "MAX_MEDIA",
    "MAX_SDP_LENGTH",
    "SRTP_POLICIES",
    "SUPPORTED_PTIMES",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "NegotiatedMedia",
    "NegotiationError",
    "Origin",
    "SDPError",
    "SDPParseError",
    "SessionDescription",
    "SrtpPolicy",
    "SrtpRefused",
    "answer",
    "hold",
    "make_offer",
    "negotiate",
    "resume",
]

#: The largest SDP body accepted, in characters (real ones are under 2 KB).
MAX_SDP_LENGTH = 65_536
#: The most ``m=`` sections accepted in one description.
MAX_MEDIA = 32
#: The most lines accepted in one description.
MAX_LINES = 2_000
#: Packet times (ms) the media loop can send at; others are rounded to the nearest one.
SUPPORTED_PTIMES = (10, 20, 30, 40)
#: The default packet time, and the one we ask for.
DEFAULT_PTIME = 20
#: The dynamic payload type we offer for telephone-event when we choose.
DEFAULT_TELEPHONE_EVENT_PT = 101

Codec = Literal["PCMU", "PCMA"]
Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")

#: Codec name -> its static RTP payload type (RFC 3551).
CODECS: dict[str, int] = {"PCMU": 0, "PCMA": 8}
_STATIC_NAMES = {0: "PCMU", 8: "PCMA", 13: "CN"}
CN_PT = 13
_RTP_PROTOS = ("RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF")
_SECURE_PROTOS = ("RTP/SAVP", "RTP/SAVPF")
SrtpPolicy = Literal["off", "offer", "required"]
#: ``off``: plain RTP only; ``offer``: SRTP when the far end takes it (an RTP/AVP
#: offer with a=crypto), else plain; ``required``: SRTP or no call (RTP/SAVP).
SRTP_POLICIES: tuple[SrtpPolicy, ...] = ("off", "offer", "required")

_REVERSE: dict[Direction, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class SDPError(ValueError):
    """Base of every SDP error."""


class SDPParseError(SDPError):
    """The text is not valid SDP; ``line_number`` is 1-based (0 when no single line is at fault)."""

    def __init__(self, reason: str, line_number: int = 0, line: str = "") -> None:
        self.reason = reason
        self.line_number = line_number
        self.line = line
        where = f"SDP line {line_number} {line!r}: " if line_number else "SDP: "
        super().__init__(where + reason)


class NegotiationError(SDPError):
    """Offer/answer failed; a UAS answers the INVITE with ``sip_status`` (488)."""

    sip_status = 488

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not acceptable here: {reason}")


class SrtpRefused(NegotiationError):
    """Offer/answer failed on SRTP: required and missing, unusable keys, not offered."""


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


@dataclass
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def format(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (multicast ``/ttl/n`` kept in address)."""

    nettype: str
    addrtype: str
    address: str

    @property
    def is_hold(self) -> bool:
        """The RFC 2543 hold form: an all-zero address."""
        return self.address in ("0.0.0.0", "::")

    def format(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass
class Attribute:
    """``a=<name>`` (``value`` None) or ``a=<name>:<value>``."""

    name: str
    value: str | None = None

    def format(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        if self.name == "crypto":  # an SRTP key: never in a repr, a log, a traceback
            return "Attribute(name='crypto', value=<hidden>)"
        return f"Attribute(name={self.name!r}, value={self.value!r})"


# Where uninterpreted lines go back when formatting, per RFC 4566 §5 order.
_SESSION_BEFORE_C = ("i", "u", "e", "p")
_SESSION_AFTER_T = ("r", "z", "k")
_MEDIA_BEFORE_C = ("i",)
_MEDIA_AFTER_B = ("k",)


@dataclass
class MediaDescription:
    """One ``m=`` section and its lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    #: Lines this module does not interpret, as (letter, value), in input order.
    other: list[tuple[str, str]] = field(default_factory=list)

    # --- attribute helpers ---------------------------------------------------

    def get(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (or ``""`` for a flag), else None."""
        for a in self.attributes:
            if a.name == name:
                return "" if a.value is None else a.value
        return None

    def get_all(self, name: str) -> list[str]:
        return [a.value or "" for a in self.attributes if a.name == name]

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def direction_attribute(self) -> Direction | None:
        for a in self.attributes:
            if a.name in DIRECTIONS and a.value is None:
                return a.name
        return None

    def set_direction(self, direction: Direction) -> None:
        """Replace any direction attribute with ``direction`` (kept in place, else appended)."""
        kept: list[Attribute] = []
        placed = False
        for a in self.attributes:
            if a.name in DIRECTIONS and a.value is None:
                if not placed:
                    kept.append(Attribute(direction))
                    placed = True
                continue
            kept.append(a)
        if not placed:
            kept.append(Attribute(direction))
        self.attributes = kept

    def rtpmap(self) -> dict[int, tuple[str, int, int]]:
        """Payload type -> (encoding name, clock rate, channels), static types filled in."""
        found: dict[int, tuple[str, int, int]] = {}
        for fmt in self.formats:
            if fmt.isdigit() and int(fmt) in _STATIC_NAMES:
                found[int(fmt)] = (_STATIC_NAMES[int(fmt)], 8000, 1)
        for value in self.get_all("rtpmap"):
            pt_text, _, rest = value.partition(" ")
            parts = rest.strip().split("/")
            if not pt_text.isdigit() or len(parts) < 2 or not parts[1].isdigit():
                continue  # checked at parse time; tolerate edits
            channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
            found[int(pt_text)] = (parts[0], int(parts[1]), channels)
        return found

    def fmtp(self, payload_type: int) -> str | None:
        for value in self.get_all("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text == str(payload_type):
                return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        value = self.get("ptime")
        if value is None:
            return None
        try:
            return round(float(value))
        except ValueError:
            return None

    def format_lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        lines = [f"m={self.media} {port} {' '.join([self.proto, *self.formats])}"]
        lines += [f"{k}={v}" for k, v in self.other if k in _MEDIA_BEFORE_C]
        if self.connection is not None:
            lines.append(f"c={self.connection.format()}")
        lines += [f"b={t}:{v}" for t, v in self.bandwidths]
        lines += [f"{k}={v}" for k, v in self.other if k in _MEDIA_AFTER_B]
        lines += [f"a={a.format()}" for a in self.attributes]
        known = _MEDIA_BEFORE_C + _MEDIA_AFTER_B
        lines += [f"{k}={v}" for k, v in self.other if k not in known]
        return lines


@dataclass
class SessionDescription:
    """A whole SDP body. ``parse`` reads one, ``format`` writes it (CRLF line ends)."""

    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = field(default_factory=list)
    times: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    version: int = 0

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        return _parse(text)

    def format(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin.format()}", f"s={self.name}"]
        lines += [f"{k}={v}" for k, v in self.other if k in _SESSION_BEFORE_C]
        if self.connection is not None:
            lines.append(f"c={self.connection.format()}")
        lines += [f"b={t}:{v}" for t, v in self.bandwidths]
        for start, stop in self.times:
            lines.append(f"t={start} {stop}")
        lines += [f"{k}={v}" for k, v in self.other if k in _SESSION_AFTER_T]
        lines += [f"a={a.format()}" for a in self.attributes]
        known = _SESSION_BEFORE_C + _SESSION_AFTER_T
        lines += [f"{k}={v}" for k, v in self.other if k not in known]
        for m in self.media:
            lines += m.format_lines()
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return self.format().encode("utf-8")

    def session_attribute(self, name: str) -> str | None:
        for a in self.attributes:
            if a.name == name:
                return "" if a.value is None else a.value
        return None

    def connection_for(self, m: MediaDescription) -> Connection | None:
        """The media-level ``c=``, else the session-level one."""
        return m.connection if m.connection is not None else self.connection

    def direction_of(self, m: MediaDescription) -> Direction:
        """The stream's direction as its writer states it (media, then session, else sendrecv)."""
        found = m.direction_attribute
        if found is not None:
            return found
        for a in self.attributes:
            if a.name in DIRECTIONS and a.value is None:
                return a.name
        return "sendrecv"

    def effective_direction_of(self, m: MediaDescription) -> Direction:
        """``direction_of``, with the RFC 2543 ``c=0.0.0.0`` hold meaning "do not send to me"."""
        direction = self.direction_of(m)
        conn = self.connection_for(m)
        if conn is not None and conn.is_hold:
            return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)  # type: ignore[return-value]
        return direction

    def same_content(self, other: SessionDescription) -> bool:
        """Equal in everything but the ``o=`` version (the RFC 3264 "unchanged" test)."""
        a = replace(self, origin=replace(self.origin, session_version=0))
        b = replace(other, origin=replace(other.origin, session_version=0))
        return a.format() == b.format()


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_SESSION_ORDER = "vosiuepcbtrzkam"


def _int_field(text: str, what: str, n: int, line: str, low: int = 0, high: int = 2**64) -> int:
    if not text.isdigit():
        raise SDPParseError(f"{what} must be a decimal number, got {text!r}", n, line)
    value = int(text)
    if not low <= value <= high:
        raise SDPParseError(f"{what} {value} is out of range {low}..{high}", n, line)
    return value


def _check_address(addrtype: str, address: str, n: int, line: str) -> None:
    host = address.split("/", 1)[0]
    if addrtype == "IP4":
        try:
            ipaddress.IPv4Address(host)
            return
        except ValueError:
            pass
    elif addrtype == "IP6":
        try:
            ipaddress.IPv6Address(host)
            return
        except ValueError:
            pass
    else:
        return  # other address types are carried, not checked
    # RFC 4566 allows an FQDN; anything else is an error that names the line.
    labels = host.split(".")
    is_name = host and all(lab and all(c.isalnum() or c == "-" for c in lab) for lab in labels)
    if is_name and not host.replace(".", "").isdigit():
        return
    raise SDPParseError(f"{host!r} is not an {addrtype} address or a host name", n, line)


def _connection(value: str, n: int, line: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SDPParseError("c= needs <nettype> <addrtype> <address>", n, line)
    _check_address(parts[1], parts[2], n, line)
    return Connection(parts[0], parts[1], parts[2])


def _bandwidth(value: str, n: int, line: str) -> tuple[str, str]:
    kind, sep, amount = value.partition(":")
    if not sep or not kind or not amount.strip().isdigit():
        raise SDPParseError("b= needs <bwtype>:<bandwidth>", n, line)
    return kind, amount.strip()


def _attribute(value: str, n: int, line: str, *, strict: bool = True) -> Attribute:
    """One a= line. ``strict=False`` (a stream we never use, so always reject) checks only
    the name: an odd value there (RFC 4475's ``a=rtpmap:31 LPC``) must not cost the call."""
    name, sep, rest = value.partition(":")
    if not name or any(c.isspace() for c in name):
        raise SDPParseError("a= attribute name is empty or contains spaces", n, line)
    if not strict:
        pass
    elif name == "rtpmap":
        pt_text, _, enc = rest.partition(" ")
        parts = enc.strip().split("/")
        if not pt_text.isdigit() or len(parts) < 2 or not parts[0] or not parts[1].isdigit():
            raise SDPParseError(
                "a=rtpmap needs <payload type> <encoding name>/<clock rate>", n, line
            )
        _int_field(pt_text, "payload type", n, line, 0, 127)
    elif name == "ptime" or name == "maxptime":
        try:
            if float(rest) <= 0:
                raise ValueError
        except ValueError:
            raise SDPParseError(f"a={name} needs a positive number of ms", n, line) from None
    elif name == "rtcp":
        port_text = rest.split()[0] if rest.split() else ""
        _int_field(port_text, "a=rtcp port", n, line, 0, 65535)
    return Attribute(name, rest if sep else None)


def _media(value: str, n: int, line: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SDPParseError("m= needs <media> <port> <proto> [<fmt> ...]", n, line)
    port_text, _, count_text = parts[1].partition("/")
    port = _int_field(port_text, "port", n, line, 0, 65535)
    count = _int_field(count_text, "port count", n, line, 1, 65535) if count_text else None
    proto = parts[2]
    if proto.startswith("RTP/") and not all(f.isdigit() and int(f) <= 127 for f in parts[3:]):
        raise SDPParseError(f"{proto} formats must be payload types 0-127", n, line)
    return MediaDescription(parts[0], port, proto, parts[3:], port_count=count)


def _parse(text: str | bytes) -> SessionDescription:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SDPParseError(f"not UTF-8 at byte {exc.start}") from None
    if len(text) > MAX_SDP_LENGTH:
        raise SDPParseError(f"body of {len(text)} characters exceeds {MAX_SDP_LENGTH}")
    raw_lines = text.replace("\r\n", "\n").split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    if len(raw_lines) > MAX_LINES:
        raise SDPParseError(f"{len(raw_lines)} lines exceed the limit of {MAX_LINES}")
    if not raw_lines:
        raise SDPParseError("empty body")

    version: int | None = None
    origin: Origin | None = None
    name: str | None = None
    session = SessionDescription(origin=Origin("-", "0", 0, "IN", "IP4", "0.0.0.0"), times=[])
    current: MediaDescription | None = None
    position = 0  # index into _SESSION_ORDER, for the session part
    for n, line in enumerate(raw_lines, start=1):
        line = line.rstrip("\r")
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SDPParseError("not a <type>=<value> line", n, line)
        kind, value = line[0], line[2:]
        if n == 1 and kind != "v":
            raise SDPParseError("the first line must be v=", n, line)
        if kind == "m":
            if len(session.media) >= MAX_MEDIA:
                raise SDPParseError(f"more than {MAX_MEDIA} media sections", n, line)
            current = _media(value, n, line)
            session.media.append(current)
            continue
        if current is not None:
            if kind == "c":
                current.connection = _connection(value, n, line)
            elif kind == "b":
                current.bandwidths.append(_bandwidth(value, n, line))
            elif kind == "a":
                strict = current.media == "audio" and current.port != 0
                current.attributes.append(_attribute(value, n, line, strict=strict))
            elif kind in "vostrz":
                raise SDPParseError(f"{kind}= is not allowed inside a media section", n, line)
            else:
                current.other.append((kind, value))
            continue
        if kind in _SESSION_ORDER:
            at = _SESSION_ORDER.index(kind)
            if at < position and not (kind == "t" and position <= _SESSION_ORDER.index("r")):
                raise SDPParseError(f"{kind}= is out of the RFC 4566 order", n, line)
            position = at
        if kind == "v":
            if version is not None:
                raise SDPParseError("a second v= line", n, line)
            version = _int_field(value.strip(), "protocol version", n, line)
            if version != 0:
                raise SDPParseError(f"unsupported SDP version {version}", n, line)
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SDPParseError(
                    "o= needs <username> <sess-id> <sess-version> <nettype> <addrtype> <address>",
                    n,
                    line,
                )
            _int_field(parts[1], "sess-id", n, line)
            ver = _int_field(parts[2], "sess-version", n, line)
            _check_address(parts[4], parts[5], n, line)
            origin = Origin(parts[0], parts[1], ver, parts[3], parts[4], parts[5])
        elif kind == "s":
            name = value
        elif kind == "c":
            session.connection = _connection(value, n, line)
        elif kind == "b":
            session.bandwidths.append(_bandwidth(value, n, line))
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2:
                raise SDPParseError("t= needs <start-time> <stop-time>", n, line)
            session.times.append(
                (
                    _int_field(parts[0], "start time", n, line),
                    _int_field(parts[1], "stop time", n, line),
                )
            )
        elif kind == "a":
            session.attributes.append(_attribute(value, n, line))
        else:
            session.other.append((kind, value))
    if origin is None:
        raise SDPParseError("no o= line")
    if name is None:
        raise SDPParseError("no s= line")
    if not session.times:
        raise SDPParseError("no t= line")
    session.origin = origin
    session.name = name
    for m in session.media:
        if session.connection is None and m.connection is None and m.port != 0:
            raise SDPParseError(f"the {m.media} stream on port {m.port} has no c= line")
    return session


# ---------------------------------------------------------------------------
# Offer / answer
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NegotiatedMedia:
    """What the media loop needs from one completed offer/answer exchange.

    ``payload_type`` and ``telephone_event_pt`` are the numbers to *send*
    (the far end's numbering); ``receive_payload_types`` maps every payload
    type we accept to its codec, and ``receive_telephone_event_pt`` is the
    number the far end will use for events (ours, or theirs if they differ).
    ``direction`` is ours: ``"sendonly"`` means we send and do not receive.
    ``remote_address`` is what the SDP says: usually an IP literal, but
    RFC 4566 allows a host name, which the caller must resolve before
    handing the media to ``gosipd.media`` (this module does no DNS).
    """

    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    rtcp_mux: bool
    codec: Codec
    payload_type: int
    telephone_event_pt: int | None
    receive_telephone_event_pt: int | None
    receive_payload_types: tuple[tuple[int, Codec], ...]
    ptime: int
    direction: Direction
    comfort_noise_pt: int | None = None
    #: The SRTP suite and keys, or None for plain RTP.
    srtp: SrtpKeys | None = None

    @property
    def remote(self) -> tuple[str, int]:
        return (self.remote_address, self.remote_port)

    @property
    def remote_rtcp(self) -> tuple[str, int]:
        return (self.remote_rtcp_address, self.remote_rtcp_port)

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receiving(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def _addrtype(address: str) -> Literal["IP4", "IP6"]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"local address {address!r} is not an IP literal") from None
    return "IP6" if ip.version == 6 else "IP4"


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"RTP port must be within 1..65535, got {port}")


def _nearest_ptime(ptime: int | None) -> int:
    if ptime is None:
        return DEFAULT_PTIME
    return min(SUPPORTED_PTIMES, key=lambda p: (abs(p - ptime), p))


def _audio_attributes(
    formats: list[tuple[int, str]],
    telephone_event_pt: int | None,
    ptime: int,
    direction: Direction,
    rtcp_mux: bool,
    crypto: Sequence[Crypto] = (),
) -> list[Attribute]:
    attrs = [Attribute("crypto", c.format()) for c in crypto]
    attrs += [Attribute("rtpmap", f"{pt} {name}/8000") for pt, name in formats]
    if telephone_event_pt is not None:
        attrs.append(Attribute("rtpmap", f"{telephone_event_pt} telephone-event/8000"))
        attrs.append(Attribute("fmtp", f"{telephone_event_pt} 0-15"))
    attrs.append(Attribute("ptime", str(ptime)))
    if rtcp_mux:
        attrs.append(Attribute("rtcp-mux"))
    attrs.append(Attribute(direction))
    return attrs


def _validate_codecs(codecs: Sequence[str]) -> list[str]:
    out = []
    for c in codecs:
        name = c.upper()
        if name not in CODECS:
            raise ValueError(f"codec {c!r} is not supported; use PCMU and/or PCMA")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("at least one codec (PCMU or PCMA) is needed")
    return out


def _versioned(new: SessionDescription, previous: SessionDescription | None) -> SessionDescription:
    """Apply the RFC 3264 §8 ``o=`` rules relative to our previous description."""
    if previous is None:
        return new
    new.origin = replace(
        new.origin,
        username=previous.origin.username,
        session_id=previous.origin.session_id,
        session_version=previous.origin.session_version,
    )
    if not new.same_content(previous):
        new.origin.session_version = previous.origin.session_version + 1
    return new


def _new_origin(
    address: str, session_id: int | None, session_version: int | None, username: str
) -> Origin:
    sid = session_id if session_id is not None else secrets.randbelow(2**62) + 1
    version = session_version if session_version is not None else sid
    return Origin(username, str(sid), version, "IN", _addrtype(address), address)


def make_offer(
    local_addr: str,
    rtp_port: int,
    *,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    cn: bool = False,
    ptime: int = DEFAULT_PTIME,
    direction: Direction = "sendrecv",
    rtcp_mux: bool = False,
    session_id: int | None = None,
    session_version: int | None = None,
    username: str = "gosipd",
    previous: SessionDescription | None = None,
    telephone_event_pt: int = DEFAULT_TELEPHONE_EVENT_PT,
    crypto: Sequence[Crypto] = (),
    srtp: SrtpPolicy = "off",
) -> SessionDescription:
    """An offer of one audio stream at ``local_addr:rtp_port``.

    ``previous`` (our last description in this session) makes this a
    re-offer: same username and session id, version + 1 if anything changed.
    ``crypto`` (``sdes.offer_lines()``) offers SRTP: as ``RTP/SAVP`` when
    ``srtp`` is ``required``, else as ``RTP/AVP`` that a peer without SRTP
    answers in plain RTP.
    """
    _check_port(rtp_port)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not 96 <= telephone_event_pt <= 127:
        raise ValueError(f"telephone-event PT must be dynamic (96-127), got {telephone_event_pt}")
    names = _validate_codecs(codecs)
    formats = [(CODECS[n], n) for n in names]
    if cn:
        formats.append((CN_PT, "CN"))
    te = telephone_event_pt if dtmf else None
    addrtype = _addrtype(local_addr)
    if srtp not in SRTP_POLICIES:
        raise ValueError(f"srtp must be one of {', '.join(SRTP_POLICIES)}, got {srtp!r}")
    if (srtp == "off") != (not crypto):
        raise ValueError("an SRTP offer needs its a=crypto lines, and only an SRTP offer has them")
    media = MediaDescription(
        "audio",
        rtp_port,
        "RTP/SAVP" if srtp == "required" else "RTP/AVP",
        [str(pt) for pt, _ in formats] + ([str(te)] if te is not None else []),
        attributes=_audio_attributes(
            formats, te, _nearest_ptime(ptime), direction, rtcp_mux, crypto
        ),
    )
    sdp = SessionDescription(
        origin=_new_origin(local_addr, session_id, session_version, username),
        name="gosipd",
        connection=Connection("IN", addrtype, local_addr),
        media=[media],
    )
    return _versioned(sdp, previous)


def _first_audio(sdp: SessionDescription) -> int | None:
    for i, m in enumerate(sdp.media):
        if m.media == "audio" and m.port != 0 and m.proto in _RTP_PROTOS:
            return i
    return None


def _telephone_event_pt(m: MediaDescription) -> int | None:
    for pt, (name, rate, _) in m.rtpmap().items():
        if name.lower() == "telephone-event" and rate == 8000 and str(pt) in m.formats:
            return pt
    return None


def _g711_in_order(m: MediaDescription, allowed: Iterable[str]) -> list[tuple[int, Codec]]:
    allowed_set = {a.upper() for a in allowed}
    mapping = m.rtpmap()
    found: list[tuple[int, Codec]] = []
    for fmt in m.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        name, rate, channels = mapping.get(pt, ("", 0, 0))
        if name.upper() in allowed_set and rate == 8000 and channels == 1:
            found.append((pt, name.upper()))  # type: ignore[arg-type]
    return found


def _remote_rtcp(
    sdp: SessionDescription, m: MediaDescription, address: str, mux: bool
) -> tuple[str, int]:
    if mux:
        return address, m.port
    value = m.get("rtcp")
    if value:
        parts = value.split()
        port = int(parts[0])
        if len(parts) >= 4:
            return parts[3], port
        return address, port
    return address, m.port + 1


def _media_result(
    remote: SessionDescription,
    m: MediaDescription,
    chosen: tuple[int, Codec],
    receive: list[tuple[int, Codec]],
    send_te: int | None,
    receive_te: int | None,
    direction: Direction,
    mux: bool,
    cn_pt: int | None,
    srtp: SrtpKeys | None,
) -> NegotiatedMedia:
    conn = remote.connection_for(m)
    assert conn is not None  # parse() guarantees a c= for every non-rejected stream
    address = conn.address.split("/", 1)[0]
    rtcp_address, rtcp_port = _remote_rtcp(remote, m, address, mux)
    return NegotiatedMedia(
        remote_address=address,
        remote_port=m.port,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        rtcp_mux=mux,
        codec=chosen[1],
        payload_type=chosen[0],
        telephone_event_pt=send_te,
        receive_telephone_event_pt=receive_te,
        receive_payload_types=tuple(receive),
        ptime=_nearest_ptime(m.ptime),
        direction=direction,
        comfort_noise_pt=cn_pt,
        srtp=srtp,
    )


def _secure_choice(
    m: MediaDescription, srtp: SrtpPolicy, suites: Sequence[str]
) -> tuple[bool, Crypto | None, str]:
    """Whether we can take stream ``m`` under ``srtp``, with which of its crypto lines."""
    secure = m.proto in _SECURE_PROTOS
    lines = m.get_all("crypto")
    if srtp == "off":
        if secure:
            return False, None, f"{m.proto} needs SRTP, which is off here ([rtp] srtp)"
        return True, None, ""
    if not lines and not secure:
        if srtp == "required":
            return False, None, "SRTP is required here ([rtp] srtp) and the offer has no a=crypto"
        return True, None, ""
    crypto, why = acceptable(lines, suites)
    if crypto is None:
        if srtp == "offer" and not secure:
            return True, None, ""  # best effort: an SRTP offer we cannot take stays plain
        return False, None, f"no usable SRTP key: {why}"
    return True, crypto, ""


def answer(
    offer: SessionDescription,
    local_addr: str,
    rtp_port: int,
    *,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    cn: bool = False,
    direction: Direction = "sendrecv",
    rtcp_mux: bool = True,
    ptime: int = DEFAULT_PTIME,
    previous: SessionDescription | None = None,
    session_id: int | None = None,
    username: str = "gosipd",
    srtp: SrtpPolicy = "off",
    srtp_suites: Sequence[str] = DEFAULT_SUITES,
    keygen: Callable[[int], bytes] = secrets.token_bytes,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer ``offer``: accept its first usable audio stream, reject every other one.

    ``direction`` is what we want (sendrecv, or sendonly to hold the far
    end); it is narrowed by what the offer allows. ``rtcp_mux`` accepts
    RTCP multiplexing when offered. ``previous`` is our last description in
    this dialog, for the ``o=`` version rules. Raises ``NegotiationError``
    (488) when no audio stream with PCMU or PCMA is offered.

    ``srtp`` and ``srtp_suites`` say which streams we can take (see
    ``SRTP_POLICIES``). Our key for a secure answer is new, unless
    ``previous`` answered the same suite: then it is kept, so that a re-INVITE
    does not restart the SRTP context of the stream we are sending.
    """
    _check_port(rtp_port)
    allowed = _validate_codecs(codecs)
    addrtype = _addrtype(local_addr)
    index = None
    usable: list[tuple[int, Codec]] = []
    their_crypto: Crypto | None = None
    refusal = ""
    for i, m in enumerate(offer.media):
        if m.media == "audio" and m.port != 0 and m.proto in _RTP_PROTOS:
            usable = _g711_in_order(m, allowed)
            if not usable:
                continue
            ok, their_crypto, why = _secure_choice(m, srtp, srtp_suites)
            if ok:
                index = i
                break
            refusal = refusal or why
            usable = []
    if index is None and refusal:
        raise SrtpRefused(refusal)
    if index is None:
        audio = [m for m in offer.media if m.media == "audio"]
        if not audio:
            raise NegotiationError("the offer has no audio stream")
        if all(m.port == 0 for m in audio):
            raise NegotiationError("every audio stream in the offer is disabled (port 0)")
        if all(m.proto not in _RTP_PROTOS for m in audio):
            protos = ", ".join(sorted({m.proto for m in audio}))
            raise NegotiationError(f"no audio stream uses RTP/AVP (offered: {protos})")
        listed = ", ".join(
            f"{pt} {n}" for m in audio for pt, (n, _r, _c) in sorted(m.rtpmap().items())
        )
        raise NegotiationError(f"no offered codec is one of {', '.join(allowed)} ({listed})")

    offered = offer.media[index]
    chosen = usable[0]
    te = _telephone_event_pt(offered) if dtmf else None
    offered_cn = any(pt == CN_PT for pt, _ in _g711_in_order(offered, ())) or (
        str(CN_PT) in offered.formats
    )
    cn_pt = CN_PT if (cn and offered_cn) else None
    their_direction = offer.effective_direction_of(offered)
    ours = _narrow(direction, _REVERSE[their_direction])
    mux = rtcp_mux and offered.has("rtcp-mux")
    our_crypto: list[Crypto] = []
    keys: SrtpKeys | None = None
    if their_crypto is not None:
        kept = _our_key(previous, their_crypto.suite)
        mine = (
            Crypto(their_crypto.tag, their_crypto.suite, kept)
            if kept is not None
            else their_crypto.with_new_key(keygen)
        )
        our_crypto = [mine]
        keys = SrtpKeys(their_crypto.suite, mine.key, their_crypto.key)

    answer_media: list[MediaDescription] = []
    for i, m in enumerate(offer.media):
        if i != index:
            # RFC 3264 §6: a rejected stream keeps its media, proto and formats, with port 0.
            answer_media.append(MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"]))
            continue
        formats: list[tuple[int, str]] = [chosen]
        if cn_pt is not None:
            formats.append((CN_PT, "CN"))
        fmt_list = [str(pt) for pt, _ in formats] + ([str(te)] if te is not None else [])
        answer_media.append(
            MediaDescription(
                "audio",
                rtp_port,
                offered.proto if offered.proto in _RTP_PROTOS else "RTP/AVP",
                fmt_list,
                attributes=_audio_attributes(
                    formats, te, _nearest_ptime(ptime), ours, mux, our_crypto
                ),
            )
        )
    sdp = SessionDescription(
        origin=_new_origin(local_addr, session_id, None, username),
        name="gosipd",
        connection=Connection("IN", addrtype, local_addr),
        media=answer_media,
    )
    sdp = _versioned(sdp, previous)
    negotiated = _media_result(
        offer,
        offered,
        chosen,
        usable,
        te,
        te,
        ours,
        mux,
        cn_pt,
        keys,
    )
    return sdp, negotiated


def _our_key(previous: SessionDescription | None, suite: str) -> bytes | None:
    """Our key for ``suite`` in our last description, to keep across a re-answer."""
    if previous is None or (index := _first_audio(previous)) is None:
        return None
    for value in previous.media[index].get_all("crypto"):
        with contextlib.suppress(CryptoError):
            crypto = Crypto.parse(value)
            if crypto.suite == suite:
                return crypto.key
    return None


def _answered_srtp(ours: MediaDescription, theirs: MediaDescription) -> SrtpKeys | None:
    """RFC 4568 §7.1.3: the answer carries exactly one line, with a tag we offered."""
    offered = {}
    for value in ours.get_all("crypto"):
        crypto = Crypto.parse(value)
        offered[crypto.tag] = crypto
    lines = theirs.get_all("crypto")
    required = ours.proto in _SECURE_PROTOS
    if not offered:
        if lines or theirs.proto in _SECURE_PROTOS:
            raise SrtpRefused("the answer asks for SRTP, which we did not offer")
        return None
    if not lines:
        if required or theirs.proto in _SECURE_PROTOS:
            raise SrtpRefused("SRTP was required and the answer has no a=crypto")
        return None  # our best-effort SRTP offer was answered in plain RTP
    if len(lines) != 1:
        raise SrtpRefused(f"the answer has {len(lines)} a=crypto lines, not one")
    try:
        answered = Crypto.parse(lines[0])
    except CryptoError as exc:
        raise SrtpRefused(f"the answer's a=crypto: {exc}") from None
    mine = offered.get(answered.tag)
    if mine is None or mine.suite != answered.suite:
        raise SrtpRefused(
            f"the answer's a=crypto (tag {answered.tag}, {answered.suite}) is not one we offered"
        )
    return SrtpKeys(answered.suite, mine.key, answered.key)


def _narrow(want: Direction, allowed: Direction) -> Direction:
    send = want in ("sendrecv", "sendonly") and allowed in ("sendrecv", "sendonly")
    recv = want in ("sendrecv", "recvonly") and allowed in ("sendrecv", "recvonly")
    return {
        (True, True): "sendrecv",
        (True, False): "sendonly",
        (False, True): "recvonly",
        (False, False): "inactive",
    }[(send, recv)]  # type: ignore[return-value]


def negotiate(offer: SessionDescription, answer_received: SessionDescription) -> NegotiatedMedia:
    """Read the far end's answer to our ``offer``.

    The answer must have as many ``m=`` lines as the offer (RFC 3264 §6);
    our audio stream must not be rejected and must name a codec we offered.
    Raises ``NegotiationError`` otherwise (a UAC then ends the call: ACK and BYE).
    """
    index = _first_audio(offer)
    if index is None:
        raise ValueError("the offer has no enabled RTP audio stream")
    if len(answer_received.media) != len(offer.media):
        raise NegotiationError(
            f"the answer has {len(answer_received.media)} media streams, "
            f"the offer had {len(offer.media)}"
        )
    ours = offer.media[index]
    theirs = answer_received.media[index]
    if theirs.media != "audio":
        raise NegotiationError(f"the answer's stream {index + 1} is {theirs.media}, not audio")
    if theirs.port == 0:
        raise NegotiationError("the answer rejected the audio stream (port 0)")
    offered_codecs = [name for _pt, name in _g711_in_order(ours, CODECS)]
    usable = _g711_in_order(theirs, offered_codecs)
    if not usable:
        listed = ", ".join(f"{pt} {n}" for pt, (n, _r, _c) in sorted(theirs.rtpmap().items()))
        raise NegotiationError(f"the answer names no codec we offered ({listed or 'none'})")
    chosen = usable[0]
    ours_te = _telephone_event_pt(ours)
    theirs_te = _telephone_event_pt(theirs) if ours_te is not None else None
    offered_cn = str(CN_PT) in ours.formats
    cn_pt = CN_PT if offered_cn and str(CN_PT) in theirs.formats else None
    our_direction = offer.direction_of(ours)
    allowed = _REVERSE[answer_received.effective_direction_of(theirs)]
    mux = ours.has("rtcp-mux") and theirs.has("rtcp-mux")
    keys = _answered_srtp(ours, theirs)
    receive = [(pt, name) for pt, name in _g711_in_order(ours, offered_codecs)]
    return _media_result(
        answer_received,
        theirs,
        chosen,
        receive,
        theirs_te,
        ours_te if theirs_te is not None else None,
        _narrow(our_direction, allowed),
        mux,
        cn_pt,
        keys,
    )


def hold(previous: SessionDescription, *, legacy: bool = False) -> SessionDescription:
    """The re-offer that puts the far end on hold, from our last description.

    ``sendonly`` (we may still send music on hold), or ``inactive`` if our
    last description was ``recvonly`` or ``inactive`` (the far end holds us
    too). ``legacy=True`` also writes the RFC 2543 ``c=0.0.0.0`` form, for
    peers that predate RFC 3264.
    """
    new = _copy(previous)
    index = _first_audio(new)
    if index is None:
        raise ValueError("the description has no enabled RTP audio stream to hold")
    m = new.media[index]
    current = previous.direction_of(previous.media[index])
    m.set_direction("inactive" if current in ("recvonly", "inactive") else "sendonly")
    if legacy:
        conn = new.connection_for(m)
        assert conn is not None  # parse() guarantees a c= for every enabled stream
        held = replace(conn, address="::" if conn.addrtype == "IP6" else "0.0.0.0")
        if m.connection is not None:
            m.connection = held
        else:
            new.connection = held
    return _versioned(new, previous)


def resume(previous: SessionDescription, local_addr: str) -> SessionDescription:
    """The re-offer that takes the far end off hold (``sendrecv`` and a real ``c=``)."""
    new = _copy(previous)
    index = _first_audio(new)
    if index is None:
        raise ValueError("the description has no enabled RTP audio stream to resume")
    m = new.media[index]
    m.set_direction("sendrecv")
    conn = Connection("IN", _addrtype(local_addr), local_addr)
    if m.connection is not None:
        m.connection = conn
    else:
        new.connection = conn
    return _versioned(new, previous)


def _copy(sdp: SessionDescription) -> SessionDescription:
    return SessionDescription.parse(sdp.format())
