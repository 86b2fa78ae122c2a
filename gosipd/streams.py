"""Media streams, sans-I/O: a call's audio as WebSocket messages and back.

The ``stream`` app (``gosipd.apps.stream``) connects a call to a WebSocket server for
the rest of the call; this module is everything but the socket. A *profile* turns
what happens on the call (20 ms of far-end audio, a DTMF digit, a mark played out)
into the messages the server expects and the server's messages into ``Command``s:

- ``twilio``: the Twilio Media Streams JSON protocol, byte for byte what agent servers
  written for Twilio parse (``connected``, ``start``, ``media`` with base64 µ-law,
  ``dtmf``, ``mark``, ``stop``; from the server ``media``, ``mark``, ``clear``).
- ``binary``: L16 PCM (8 kHz, little-endian, 20 ms) as binary messages, JSON text
  messages for control, like mod_audio_fork.

``Player`` paces the server's audio onto the call: the server may send faster than
real time, so audio waits here (bounded: the oldest is dropped beyond ``queue_s``)
and is handed to the media loop a few frames ahead of the clock; a mark is
acknowledged when the audio queued before it has been sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gosipd import _dsp
from gosipd.config import STREAM_ON_ERROR
from gosipd.resample import Downsampler, Upsampler
from gosipd.rtp.dtmf import EVENT_OF_DIGIT

__all__ = [
    "PROFILES",
    "BinaryProfile",
    "Clear",
    "Command",
    "Hangup",
    "Mark",
    "Play",
    "Player",
    "SendDtmf",
    "StreamOptions",
    "StreamProtocolError",
    "TwilioProfile",
    "make_profile",
    "parse_stream_arg",
    "public_url",
]

PROFILES = ("twilio", "binary")
ON_ERROR = STREAM_ON_ERROR
RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
#: The longest a server's message may be (10 s of L16 at 8 kHz is 160 kB; base64 adds a third).
MAX_MESSAGE_BYTES = 1 << 20
MAX_PARAMETERS = 32


class StreamProtocolError(ValueError):
    """A server's message we cannot use, and why (it is reported, the stream goes on)."""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class StreamOptions:
    """``stream:URL [profile=twilio|binary] [rate=8000|16000] [on_error=hangup|continue]
    [queue_s=N] [param.NAME=VALUE ...]``: the app's argument, parsed. ``rate`` is the
    binary profile's L16 sample rate (Twilio's protocol is 8 kHz µ-law only)."""

    url: str
    profile: str = "twilio"
    rate: int = 8000
    on_error: str = "hangup"
    queue_s: float = 10.0
    parameters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rate != RATE and self.profile != "binary":
            raise ValueError("stream: rate=16000 needs profile=binary (Twilio's is 8 kHz µ-law)")

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


def parse_stream_arg(arg: str | None, *, on_error: str = "hangup") -> StreamOptions:
    """The options in ``arg``, or a ``ValueError`` naming what is wrong."""
    words = (arg or "").split()
    if not words:
        raise ValueError("the stream app needs a URL: stream:wss://host/path")
    url, options = words[0], words[1:]
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"stream: {public_url(url)!r} is not a ws:// or wss:// URL")
    values: dict[str, Any] = {"on_error": on_error}
    parameters: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"stream: {option!r} is not NAME=VALUE")
        if name.startswith("param."):
            if len(parameters) >= MAX_PARAMETERS:
                raise ValueError(f"stream: more than {MAX_PARAMETERS} parameters")
            parameters[name.removeprefix("param.")] = value
        elif name == "profile":
            if value not in PROFILES:
                raise ValueError(f"stream: profile must be one of {', '.join(PROFILES)}")
            values["profile"] = value
        elif name == "rate":
            if value not in ("8000", "16000"):
                raise ValueError("stream: rate must be 8000 or 16000")
            values["rate"] = int(value)
        elif name == "on_error":
            if value not in ON_ERROR:
                raise ValueError(f"stream: on_error must be one of {', '.join(ON_ERROR)}")
            values["on_error"] = value
        elif name == "queue_s":
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not 0.1 <= seconds <= 600:
                raise ValueError("stream: queue_s must be 0.1 to 600 seconds")
            values["queue_s"] = seconds
        else:
            raise ValueError(
                f"stream: unknown option {name!r} (profile, on_error, queue_s, param.NAME)"
            )
    return StreamOptions(url=url, parameters=parameters, **values)


def public_url(url: str) -> str:
    """``url`` fit for a log line: no user info, no query (tokens live there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Play:
    """Audio from the server: 8 kHz int16 PCM, native byte order."""

    pcm: bytes


@dataclass(frozen=True)
class Mark:
    """Acknowledge ``name`` once the audio sent before it has been played."""

    name: str


@dataclass(frozen=True)
class Clear:
    """Drop every queued frame at once (barge-in)."""


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class SendDtmf:
    digits: str


@dataclass(frozen=True)
class Transfer:
    """Ask the far end to call ``to`` (a SIP URI or a number for the trunk) instead."""

    to: str


Command = Play | Mark | Clear | Hangup | SendDtmf | Transfer


def _le16(pcm: bytes) -> bytes:
    """Native int16 to little-endian (a copy only on a big-endian host)."""
    if sys.byteorder == "little":
        return pcm
    import array

    samples = array.array("h", pcm)
    samples.byteswap()
    return samples.tobytes()


_from_le16 = _le16  # the same swap, the other way


def _json(message: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StreamProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StreamProtocolError("not a JSON object")
    return data


def _digits(value: Any) -> str:
    if not isinstance(value, str) or not value or not set(value) <= EVENT_OF_DIGIT.keys():
        raise StreamProtocolError(f"dtmf: {value!r} is not DTMF digits (0-9, *, #, A-D)")
    return value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise StreamProtocolError(f"{what}: a name is a string of 1 to 256 characters")
    return value


# --------------------------------------------------------------------------- profiles


class TwilioProfile:
    """Twilio Media Streams (bidirectional): what we send and how we read the server.

    Every message we send carries the next ``sequenceNumber``; ``media`` chunks count
    from 1 and their ``timestamp`` is milliseconds of far-end audio since the start.
    """

    name = "twilio"

    def __init__(self, call_sid: str, stream_sid: str, parameters: dict[str, str]) -> None:
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self._sid_json = json.dumps(stream_sid)
        self.parameters = dict(parameters)
        self._sequence = 0
        self._chunk = 0

    def _message(self, event: str, **body: Any) -> str:
        self._sequence += 1
        message: dict[str, Any] = {"event": event, "sequenceNumber": str(self._sequence)}
        message.update(body)
        message["streamSid"] = self.stream_sid
        return json.dumps(message, separators=(",", ":"))

    def opening(self) -> list[str]:
        connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = self._message(
            "start",
            start={
                "accountSid": "",
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": self.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            },
        )
        return [connected, start]

    def media(self, pcm: bytes) -> str:
        # 50 a second: written out rather than through json.dumps (the values are digits
        # and base64, the stream id encoded once): the same JSON
        self._chunk += 1
        self._sequence += 1
        payload = binascii.b2a_base64(_dsp.ulaw_encode(pcm), newline=False).decode()
        return (
            f'{{"event":"media","sequenceNumber":"{self._sequence}","media":{{"track":'
            f'"inbound","chunk":"{self._chunk}","timestamp":"{(self._chunk - 1) * 20}",'
            f'"payload":"{payload}"}},"streamSid":{self._sid_json}}}'
        )

    def dtmf(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def mark(self, name: str) -> str:
        return self._message("mark", mark={"name": name})

    def closing(self) -> str:
        return self._message("stop", stop={"accountSid": "", "callSid": self.call_sid})

    def receive(self, message: str | bytes) -> list[Command]:
        if isinstance(message, bytes):
            raise StreamProtocolError("the twilio profile takes text (JSON) messages only")
        data = _json(message)
        event = data.get("event")
        if event == "media":
            media = data.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                raise StreamProtocolError("media: no media.payload")
            try:
                ulaw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise StreamProtocolError("media: media.payload is not base64") from None
            return [Play(_dsp.ulaw_decode(ulaw))] if ulaw else []
        if event == "mark":
            mark = data.get("mark")
            return [Mark(_name(mark.get("name") if isinstance(mark, dict) else None, "mark"))]
        if event == "clear":
            return [Clear()]
        raise StreamProtocolError(f"unknown event {event!r} (media, mark, clear)")


class BinaryProfile:
    """L16 PCM frames as binary messages; JSON text messages for the rest.

    Ours: ``{"event": "start", "call": ..., "format": "L16", "rate": 8000, "channels": 1,
    "parameters": {...}}``, ``{"event": "dtmf", "digit": "5"}``, ``{"event": "mark",
    "name": ...}``, ``{"event": "stop"}``. The server's: binary audio, and
    ``{"event": "mark", "name": ...}``, ``{"event": "clear"}``, ``{"event": "hangup"}``,
    ``{"event": "dtmf", "digits": "123"}``, ``{"event": "transfer", "to": "sip:..."}``.
    """

    name = "binary"

    def __init__(
        self, call_sid: str, stream_sid: str, parameters: dict[str, str], rate: int = RATE
    ) -> None:
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.parameters = dict(parameters)
        self.rate = rate
        self._odd = b""  # half a sample left from the server's last binary message
        self._up: Upsampler | None = None
        self._down: Downsampler | None = None
        if rate != RATE:
            self._up, self._down = Upsampler(), Downsampler()

    def opening(self) -> list[str]:
        start = {
            "event": "start",
            "call": self.call_sid,
            "stream": self.stream_sid,
            "format": "L16",
            "rate": self.rate,
            "channels": 1,
            "parameters": self.parameters,
        }
        return [json.dumps(start)]

    def media(self, pcm: bytes) -> bytes:
        return self._up.process(pcm) if self._up is not None else _le16(pcm)

    def dtmf(self, digit: str) -> str:
        return json.dumps({"event": "dtmf", "digit": digit})

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "name": name})

    def closing(self) -> str:
        return json.dumps({"event": "stop"})

    def receive(self, message: str | bytes) -> list[Command]:
        if isinstance(message, bytes):
            data = self._odd + message
            cut = len(data) - len(data) % 2
            self._odd = data[cut:]
            if not cut:
                return []
            audio = data[:cut]
            return [Play(self._down.process(audio) if self._down else _from_le16(audio))]
        data_ = _json(message)
        event = data_.get("event")
        if event == "mark":
            return [Mark(_name(data_.get("name"), "mark"))]
        if event == "clear":
            return [Clear()]
        if event == "hangup":
            return [Hangup()]
        if event == "dtmf":
            return [SendDtmf(_digits(data_.get("digits")))]
        if event == "transfer":
            return [Transfer(_transfer_target(data_.get("to")))]
        raise StreamProtocolError(f"unknown event {event!r} (mark, clear, hangup, dtmf, transfer)")


def _transfer_target(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 256 or not value.isprintable():
        raise StreamProtocolError("transfer needs 'to': a SIP URI or a number")
    return value


Profile = TwilioProfile | BinaryProfile


def make_profile(
    name: str, call_sid: str, stream_sid: str, parameters: dict[str, str], rate: int = RATE
) -> Profile:
    if name == "binary":
        return BinaryProfile(call_sid, stream_sid, parameters, rate)
    return TwilioProfile(call_sid, stream_sid, parameters)


# --------------------------------------------------------------------------- pacing


class Player:
    """The server's audio and marks in order, handed to the call a little ahead of the
    media clock (sans-I/O: ``feed`` is told what the call still has queued).

    ``queue_s`` bounds what waits here: beyond it the oldest audio is dropped and
    ``dropped`` counts the samples. A mark is due when every sample queued before it
    has been sent: ``feed`` returns the marks that became due.
    """

    #: How far ahead of the clock audio goes to the media loop: enough for a late tick
    #: of this loop, little enough that ``clear`` leaves at most this much to drop there.
    LEAD_SAMPLES = 3 * FRAME_SAMPLES

    def __init__(self, queue_s: float = 10.0) -> None:
        self.limit = int(queue_s * RATE) * 2  # bytes
        self._items: deque[bytes | Mark] = deque()
        self._queued = 0  # bytes of audio in _items
        self._given = 0  # samples handed to the call, ever
        self._pending: deque[tuple[int, str]] = deque()  # (samples given before it, name)
        self.dropped = 0  # samples
        self.overflowed = False  # the last ``add`` dropped audio

    @property
    def queued_samples(self) -> int:
        return self._queued // 2

    def add(self, command: Play | Mark) -> None:
        if isinstance(command, Mark):
            self._items.append(command)
            return
        self._items.append(command.pcm)
        self._queued += len(command.pcm)
        self.overflowed = False
        while self._queued > self.limit:
            self.overflowed = True
            oldest = self._items[0]
            if isinstance(oldest, Mark):  # a mark with its audio gone: due at once
                self._items.popleft()
                self._pending.append((self._given, oldest.name))
                continue
            excess = self._queued - self.limit
            if len(oldest) <= excess:
                self._items.popleft()
                cut = len(oldest)
            else:
                cut = excess - excess % 2
                self._items[0] = oldest[cut:]
            self._queued -= cut
            self.dropped += cut // 2

    def feed(self, call_queued: int) -> tuple[bytes, list[str]]:
        """What to hand the call now (``call_queued``: samples it has not sent yet), and
        the marks now played out."""
        sent = self._given - call_queued  # what the call dropped on a clear counts as sent
        want = max(0, self.LEAD_SAMPLES - call_queued) * 2
        chunks: list[bytes] = []
        while self._items and (want > 0 or isinstance(self._items[0], Mark)):
            item = self._items[0]
            if isinstance(item, Mark):
                self._items.popleft()
                self._pending.append((self._given + sum(len(c) for c in chunks) // 2, item.name))
                continue
            take = item[:want]
            chunks.append(take)
            want -= len(take)
            self._queued -= len(take)
            if len(take) == len(item):
                self._items.popleft()
            else:
                self._items[0] = item[len(take) :]
        pcm = b"".join(chunks)
        self._given += len(pcm) // 2
        due = []
        while self._pending and self._pending[0][0] <= sent:
            due.append(self._pending.popleft()[1])
        return pcm, due

    def clear(self) -> list[str]:
        """Drop everything queued; every mark still pending is due now (as Twilio does)."""
        names = [name for _, name in self._pending]
        names += [item.name for item in self._items if isinstance(item, Mark)]
        self._items.clear()
        self._pending.clear()
        self._queued = 0
        return names
