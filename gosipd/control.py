"""The JSON-lines control protocol, shared by the supervisor, the call workers and gosipctl.

One JSON object per line, UTF-8, in both directions. A request carries an
``id`` (echoed back) and an ``op``; a response says ``"ok": true`` with the
op's result, or ``"ok": false`` with ``{"code", "message"}`` naming what was
wrong (and the ``field`` when one field was). Events stream as objects with
an ``event`` name, the ``call`` id and a ``ts``. See docs/control-protocol.md.

This module is sans-I/O: ``LineBuffer`` frames bytes into lines with a
limit, ``parse_request`` validates one line into a ``ControlRequest``, and
``encode`` writes one message. Sockets live in the supervisor and worker.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gosipd.apps import FILE_APPS
from gosipd.files import ForbiddenPath, check_name
from gosipd.passthrough import RESERVED
from gosipd.sdp import SRTP_POLICIES
from gosipd.streams import ON_ERROR, PROFILES

__all__ = [
    "MAX_LINE",
    "OPS",
    "ControlError",
    "ControlRequest",
    "LineBuffer",
    "encode",
    "error_reply",
    "ok_reply",
    "parse_request",
    "request_id_of",
]

#: The longest request line accepted; longer ones are refused and skipped to the next newline.
MAX_LINE = 64 * 1024
#: The most headers a dial may add, and the longest one.
MAX_EXTRA_HEADERS = 20
MAX_HEADER_LENGTH = 1024

DTMF_DIGITS = re.compile(r"^[0-9*#A-Da-d]{1,64}$")
HEADER_LINE = re.compile(r"^[A-Za-z0-9!%'*+\-.^_`|~]{1,64}:[ \t]*[^\r\n]{0,1000}$")


class ControlError(Exception):
    """A request we refuse; ``code`` is stable for programs, ``message`` is for people."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, str]:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return error


@dataclass(frozen=True)
class ControlRequest:
    id: Any
    op: str
    args: dict[str, Any] = field(default_factory=dict)


# --- field validators --------------------------------------------------------

Validator = Callable[[str, Any], Any]


def _string(max_length: int = 1024) -> Validator:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise ControlError(
                "bad_field", f"'{name}' must be a string, not {_json_type(value)}", field=name
            )
        if not value.strip():
            raise ControlError("bad_field", f"'{name}' must not be empty", field=name)
        if len(value) > max_length:
            raise ControlError(
                "bad_field", f"'{name}' is longer than {max_length} characters", field=name
            )
        return value

    return check


def _number(minimum: float, maximum: float) -> Validator:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ControlError(
                "bad_field", f"'{name}' must be a number, not {_json_type(value)}", field=name
            )
        if not math.isfinite(value) or not (minimum <= value <= maximum):
            raise ControlError(
                "bad_field", f"'{name}' must be between {minimum:g} and {maximum:g}", field=name
            )
        return float(value)

    return check


def _boolean(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ControlError(
            "bad_field", f"'{name}' must be true or false, not {_json_type(value)}", field=name
        )
    return value


def _digits(name: str, value: Any) -> Any:
    _string(64)(name, value)
    if not DTMF_DIGITS.match(value):
        raise ControlError(
            "bad_field", f"'{name}' must be DTMF digits (0-9 * # A-D), got {value!r}", field=name
        )
    return value.upper()


def _target(name: str, value: Any) -> Any:
    _string(512)(name, value)
    text = value.strip()
    if any(c.isspace() for c in text):
        raise ControlError("bad_field", f"'{name}' must not contain spaces", field=name)
    if not (text.startswith(("sip:", "sips:", "tel:")) or re.fullmatch(r"\+?[0-9*#]{1,32}", text)):
        raise ControlError(
            "bad_field",
            f"'{name}' must be a sip:/sips:/tel: URI or a phone number, got {text!r}",
            field=name,
        )
    return text


def _headers(name: str, value: Any) -> Any:
    if not isinstance(value, list):
        raise ControlError(
            "bad_field", f"'{name}' must be a list of \"Name: value\" strings", field=name
        )
    if len(value) > MAX_EXTRA_HEADERS:
        raise ControlError(
            "bad_field", f"'{name}' may hold at most {MAX_EXTRA_HEADERS} headers", field=name
        )
    parsed = []
    for item in value:
        if not isinstance(item, str) or not HEADER_LINE.match(item):
            raise ControlError(
                "bad_field",
                f"'{name}' entry {item!r} is not a single 'Name: value' header line",
                field=name,
            )
        header, _, text = item.partition(":")
        if header.strip().lower() in RESERVED:
            raise ControlError(
                "bad_field", f"'{name}' may not set {header.strip()}: gosipd owns it", field=name
            )
        parsed.append((header.strip(), text.strip()))
    return parsed


def _app(name: str, value: Any) -> Any:
    """``NAME[:ARG]``; a built-in that takes a file must name one inside the files
    directory (checked again, against the file system, where the file is opened)."""
    _string(1024)(name, value)
    head, _, arg = value.strip().partition(":")
    if head in FILE_APPS and arg:
        try:
            check_name(arg)
        except ForbiddenPath as exc:
            raise ControlError("forbidden_path", f"{name}: {head}: {exc}", field=name) from None
    return value


def _file(op: str) -> Validator:
    """A path relative to the files directory (the worker checks it again, and the links
    in it, against the file system when it opens the file)."""

    def check(name: str, value: Any) -> Any:
        _string(4096)(name, value)
        try:
            check_name(value)
        except ForbiddenPath as exc:
            raise ControlError("forbidden_path", f"{op}: {exc}", field=name) from None
        return value

    return check


def _choice(*choices: str) -> Validator:
    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise ControlError(
                "bad_field", f"'{name}' must be one of {', '.join(choices)}", field=name
            )
        return value

    return check


def _stream_url(name: str, value: Any) -> Any:
    _string(2048)(name, value)
    if not value.startswith(("ws://", "wss://")) or any(c.isspace() for c in value):
        raise ControlError("bad_field", f"'{name}' must be a ws:// or wss:// URL", field=name)
    return value


def _parameters(name: str, value: Any) -> Any:
    if not isinstance(value, dict) or len(value) > 32:
        raise ControlError(
            "bad_field", f"'{name}' must be an object of at most 32 strings", field=name
        )
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 256 or len(item) > 1024:
            raise ControlError(
                "bad_field", f"'{name}.{key}' must be a string (at most 1024)", field=name
            )
        if any(c.isspace() for c in key + item):
            raise ControlError("bad_field", f"'{name}.{key}' must not contain spaces", field=name)
    return value


def _rate(name: str, value: Any) -> Any:
    if value not in (8000, 16000) or isinstance(value, bool):
        raise ControlError("bad_field", f"'{name}' must be 8000 or 16000", field=name)
    return value


def _call_id(name: str, value: Any) -> Any:
    _string(128)(name, value)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", value):
        raise ControlError("bad_field", f"'{name}' is not a call id: {value!r}", field=name)
    return value


Schema = Mapping[str, tuple[Validator, bool]]  # field -> (validator, required)

OPS: dict[str, Schema] = {
    "dial": {
        "to": (_target, True),
        "from": (_string(512), False),
        "app": (_app, False),
        "ring_timeout": (_number(1, 600), False),
        "max_duration": (_number(0.1, 86_400), False),
        "headers": (_headers, False),
        "srtp": (_choice(*SRTP_POLICIES), False),
        "wait": (_boolean, False),
    },
    "hangup": {"call": (_call_id, True)},
    "transfer": {"call": (_call_id, True), "to": (_target, False), "replaces": (_call_id, False)},
    "dtmf": {
        "call": (_call_id, True),
        "digits": (_digits, True),
        "duration_ms": (_number(40, 2000), False),
    },
    "play": {"call": (_call_id, True), "file": (_file("play"), True)},
    "record": {
        "call": (_call_id, True),
        "file": (_file("record"), True),
        "stereo": (_boolean, False),
    },
    "stream": {
        "call": (_call_id, True),
        "url": (_stream_url, True),
        "profile": (_choice(*PROFILES), False),
        "rate": (_rate, False),
        "on_error": (_choice(*ON_ERROR), False),
        "queue_s": (_number(0.1, 600), False),
        "parameters": (_parameters, False),
    },
    "calls": {},
    "show": {"call": (_call_id, True)},
    "subscribe": {"call": (_call_id, False)},
    "status": {},
    "drain": {"deadline": (_number(0, 86_400), False), "wait": (_boolean, False)},
    "undrain": {},
    "upgrade": {},
    "dialog": {},  # a worker's published dialog state (the supervisor's BYE-on-crash source)
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def parse_request(line: bytes | str, *, ops: Mapping[str, Schema] = OPS) -> ControlRequest:
    """Validate one request line; raises ``ControlError`` naming what is wrong."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError("bad_json", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ControlError("bad_json", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ControlError("bad_request", f"a request is a JSON object, not {_json_type(data)}")
    request_id = data.get("id")
    op = data.get("op")
    if not isinstance(op, str):
        raise ControlError("bad_request", "'op' is missing or not a string", field="op")
    if op not in ops:
        raise ControlError(
            "unknown_op", f"unknown op {op!r}; known: {', '.join(sorted(ops))}", field="op"
        )
    schema = ops[op]
    args: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("id", "op"):
            continue
        if name not in schema:
            raise ControlError("bad_field", f"'{name}' is not a field of {op!r}", field=name)
        validator, _ = schema[name]
        args[name] = validator(name, value)
    for name, (_, required) in schema.items():
        if required and name not in args:
            raise ControlError("bad_field", f"{op!r} needs '{name}'", field=name)
    if op == "transfer" and "to" not in args and "replaces" not in args:
        raise ControlError("bad_field", "'transfer' needs 'to' or 'replaces'", field="to")
    return ControlRequest(request_id, op, args)


def request_id_of(line: bytes | str) -> Any:
    """The ``id`` of a request line that failed validation, so the refusal carries it."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data.get("id") if isinstance(data, dict) else None


def encode(message: Mapping[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def ok_reply(request_id: Any, **result: Any) -> bytes:
    return encode({"id": request_id, "ok": True, **result})


def error_reply(request_id: Any, error: ControlError) -> bytes:
    return encode({"id": request_id, "ok": False, "error": error.as_dict()})


class LineBuffer:
    """Frames a byte stream into lines of at most ``limit`` bytes.

    An over-long line yields a ``ControlError`` in its place (once), and the
    rest of it is skipped up to the next newline, so one bad client cannot
    make us buffer without bound.
    """

    def __init__(
        self, limit: int = MAX_LINE, *, unread: bytes = b"", skipping: bool = False
    ) -> None:
        """``unread`` and ``skipping`` restore a buffer's state (see ``unread``)."""
        self.limit = limit
        self._buffer = bytearray(unread)
        self._skipping = skipping

    @property
    def unread(self) -> tuple[bytes, bool]:
        """The bytes of a line not yet complete, and whether they are being skipped."""
        return bytes(self._buffer), self._skipping

    def feed(self, data: bytes) -> list[bytes | ControlError]:
        out: list[bytes | ControlError] = []
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > self.limit:
                    if not self._skipping:
                        out.append(self._too_long())
                        self._skipping = True
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.limit:
                out.append(self._too_long())
                continue
            if line.strip():
                out.append(line.rstrip(b"\r"))

    def _too_long(self) -> ControlError:
        return ControlError("too_long", f"request line longer than {self.limit} bytes")
