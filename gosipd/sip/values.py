"""Typed values of the SIP headers that are not on the per-message hot path.

URI, NameAddr, Via, CSeq and Params live in the Cython parser because every message
is read through them; the headers here (Content-Type and Accept, RAck, the digest
challenge and credential headers, Retry-After, Date, option-tag lists, plain numbers)
are read now and then, so they are plain Python over the parser's helpers. Each type
is immutable, parses with ``parse(text)``, raises ``SIPParseError`` naming what is
wrong, and writes its canonical form with ``str()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gosipd._sipparse import (
    Params,
    SIPParseError,
    is_token,
    parse_params,
    parse_uint,
    quote,
    unquote,
)

__all__ = [
    "MAX_DELTA_SECONDS",
    "MAX_FORWARDS_LIMIT",
    "Challenge",
    "ContentType",
    "Credentials",
    "RAck",
    "RetryAfter",
    "parse_date",
    "parse_delta_seconds",
    "parse_max_forwards",
    "parse_option_tag",
    "parse_rseq",
]

#: delta-seconds (Expires, Retry-After, expires=) must fit in 32 bits.
MAX_DELTA_SECONDS = 2**32 - 1
#: Max-Forwards is an 8-bit hop count (RFC 3261 §8.1.1.6).
MAX_FORWARDS_LIMIT = 255
#: RSeq and the RAck response number run from 1 to 2**32-1 (RFC 3262 §7.1).
MAX_RSEQ = 2**32 - 1

_TOKEN = r"[!%'*+\-.0-9A-Z_`a-z~]+"
_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'


def parse_delta_seconds(text: str) -> int:
    """delta-seconds: 1*DIGIT, at most 2**32-1."""
    return int(parse_uint(text, MAX_DELTA_SECONDS, "delta-seconds"))


def parse_max_forwards(text: str) -> int:
    """Max-Forwards: 1*DIGIT in 0..255."""
    return int(parse_uint(text, MAX_FORWARDS_LIMIT, "Max-Forwards"))


def parse_rseq(text: str) -> int:
    """RSeq: 1*DIGIT in 1..2**32-1."""
    value = int(parse_uint(text, MAX_RSEQ, "RSeq"))
    if value == 0:
        raise SIPParseError("RSeq must be at least 1 (RFC 3262 §7.1)", 0)
    return value


def parse_option_tag(text: str) -> str:
    """One option-tag (Require, Supported, Unsupported, Proxy-Require): a token."""
    if not is_token(text):
        raise SIPParseError(f"option tag {text!r} is not a token", 0)
    return text


def parse_method(text: str) -> str:
    """One Method (Allow): a token."""
    if not is_token(text):
        raise SIPParseError(f"method {text!r} is not a token", 0)
    return text


# --------------------------------------------------------------------------- Content-Type


@dataclass(frozen=True, slots=True)
class ContentType:
    """A media type with parameters: Content-Type, or one media-range of Accept.

    ``type`` and ``subtype`` are lower case (``*`` in an Accept range); ``params``
    keep their values as written (``param()`` unquotes).
    """

    type: str
    subtype: str
    params: Params = field(default_factory=Params)

    def __post_init__(self) -> None:
        for part in (self.type, self.subtype):
            if not is_token(part):
                raise ValueError(f"media type part {part!r} is not a token")
        object.__setattr__(self, "type", self.type.lower())
        object.__setattr__(self, "subtype", self.subtype.lower())
        if not isinstance(self.params, Params):
            object.__setattr__(self, "params", Params(self.params))

    @classmethod
    def parse(cls, text: str) -> ContentType:
        """``type/subtype *(;name=value)``, LWS allowed around ``/``, ``;`` and ``=``."""
        match = _MEDIA_TYPE.match(text)
        if match is None:
            raise SIPParseError(f"{text!r} is not a media type like application/sdp", 0)
        params = parse_params(text[match.end() :])
        return cls(match.group(1), match.group(2), params)

    @classmethod
    def of(cls, mime: str, **params: str) -> ContentType:
        """``ContentType.of("multipart/mixed", boundary="b1")``."""
        parsed = cls.parse(mime)
        if params:
            return cls(parsed.type, parsed.subtype, Params(params))
        return parsed

    @property
    def mime(self) -> str:
        """``type/subtype`` in lower case, without parameters."""
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        """A parameter's value with quotes removed, or None."""
        value = self.params.get(name)
        return None if value is None else unquote(value)

    @property
    def boundary(self) -> str | None:
        return self.param("boundary")

    @property
    def charset(self) -> str | None:
        return self.param("charset")

    @property
    def q(self) -> float:
        """An Accept range's ``q`` weight (1.0 when absent)."""
        value = self.params.get("q")
        if value is None:
            return 1.0
        try:
            q = float(value)
        except ValueError:
            raise SIPParseError(f"q value {value!r} is not a number", 0) from None
        if not 0.0 <= q <= 1.0:
            raise SIPParseError(f"q value {value!r} is outside 0..1", 0)
        return q

    def matches(self, mime: str) -> bool:
        """Whether this (Accept) range covers ``mime`` (``*/*``, ``type/*``, exact)."""
        kind, _, sub = mime.lower().partition("/")
        if self.type == "*":
            return True
        return self.type == kind and self.subtype in ("*", sub)

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{self.params}"


_MEDIA_TYPE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})")


# --------------------------------------------------------------------------- RAck


@dataclass(frozen=True, slots=True)
class RAck:
    """RAck (RFC 3262 §7.2): the RSeq and CSeq of the reliable provisional acknowledged."""

    rseq: int
    cseq: int
    method: str

    def __post_init__(self) -> None:
        if not 1 <= self.rseq <= MAX_RSEQ:
            raise ValueError(f"RAck response number {self.rseq} is outside 1..2**32-1")
        if not 0 <= self.cseq < 2**31:
            raise ValueError(f"RAck CSeq number {self.cseq} is outside 0..2**31-1")
        if not is_token(self.method):
            raise ValueError(f"RAck method {self.method!r} is not a token")

    @classmethod
    def parse(cls, text: str) -> RAck:
        parts = text.split()
        if len(parts) != 3:
            raise SIPParseError(
                f"RAck {text!r} must be 'response-num CSeq-num Method' (RFC 3262 §7.2)", 0
            )
        rseq = parse_rseq(parts[0])
        cseq = int(parse_uint(parts[1], 2**31 - 1, "RAck CSeq number"))
        if not is_token(parts[2]):
            raise SIPParseError(f"RAck method {parts[2]!r} is not a token", 0)
        return cls(rseq, cseq, parts[2])

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


# --------------------------------------------------------------------------- authentication

_AUTH_SCHEME = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+|$)")
_AUTH_PARAM = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_QUOTED}|{_TOKEN})[ \t]*(,|$)")

# Digest parameters written as quoted-string (RFC 3261 §25.1; qop is quoted in a
# challenge, a bare token in credentials).
_QUOTED_CHALLENGE = frozenset({"realm", "domain", "nonce", "opaque", "qop"})
_QUOTED_CREDENTIALS = frozenset(
    {"username", "realm", "nonce", "uri", "response", "cnonce", "opaque", "auth-param"}
)


def _parse_auth(text: str, what: str) -> tuple[str, Params]:
    match = _AUTH_SCHEME.match(text)
    if match is None:
        raise SIPParseError(f"{what} {text!r} does not start with an auth scheme", 0)
    scheme = match.group(1)
    pos = match.end()
    items: list[tuple[str, str | None]] = []
    end = len(text)
    while pos < end:
        param = _AUTH_PARAM.match(text, pos)
        if param is None:
            raise SIPParseError(
                f"{what}: expected name=value at {text[pos : pos + 40]!r}"
                " (values are tokens or quoted strings, separated by commas)",
                pos,
            )
        items.append((param.group(1), param.group(2)))
        pos = param.end()
        if param.group(3) == "," and pos >= end:
            raise SIPParseError(f"{what}: trailing comma", pos)
    return scheme, Params(items)


def _auth_text(scheme: str, params: Params) -> str:
    if not params:
        return scheme
    return scheme + " " + ", ".join(f"{name}={value}" for name, value in params.items())


def _build_params(values: dict[str, object], quoted: frozenset[str]) -> Params:
    items: list[tuple[str, str | None]] = []
    for name, value in values.items():
        if value is None:
            continue
        text = ",".join(value) if isinstance(value, tuple | list) else str(value)
        if name in quoted:
            items.append((name, quote(text)))
        else:
            if not is_token(text):
                raise ValueError(f"{name}={text!r} must be a token")
            items.append((name, text))
    return Params(items)


@dataclass(frozen=True, slots=True)
class Challenge:
    """A WWW-Authenticate or Proxy-Authenticate value: ``scheme`` and its parameters
    (values as written; the properties unquote them)."""

    scheme: str
    params: Params

    @classmethod
    def parse(cls, text: str) -> Challenge:
        scheme, params = _parse_auth(text, "challenge")
        return cls(scheme, params)

    @classmethod
    def digest(
        cls,
        realm: str,
        nonce: str,
        *,
        opaque: str | None = None,
        algorithm: str | None = "MD5",
        qop: tuple[str, ...] | None = ("auth",),
        stale: bool = False,
        domain: str | None = None,
    ) -> Challenge:
        """A Digest challenge with the parameters quoted as RFC 3261 §25.1 writes them."""
        values: dict[str, object] = {
            "realm": realm,
            "domain": domain,
            "nonce": nonce,
            "opaque": opaque,
            "stale": "true" if stale else None,
            "algorithm": algorithm,
            "qop": qop,
        }
        return cls("Digest", _build_params(values, _QUOTED_CHALLENGE))

    def param(self, name: str) -> str | None:
        value = self.params.get(name)
        return None if value is None else unquote(value)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def realm(self) -> str | None:
        return self.param("realm")

    @property
    def nonce(self) -> str | None:
        return self.param("nonce")

    @property
    def opaque(self) -> str | None:
        return self.param("opaque")

    @property
    def algorithm(self) -> str | None:
        return self.param("algorithm")

    @property
    def qop(self) -> tuple[str, ...]:
        """The offered qop values (``("auth", "auth-int")``), empty when none."""
        value = self.param("qop")
        if not value:
            return ()
        return tuple(v.strip() for v in value.split(",") if v.strip())

    @property
    def stale(self) -> bool:
        value = self.param("stale")
        return value is not None and value.lower() == "true"

    def __str__(self) -> str:
        return _auth_text(self.scheme, self.params)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An Authorization or Proxy-Authorization value: ``scheme`` and its parameters."""

    scheme: str
    params: Params

    @classmethod
    def parse(cls, text: str) -> Credentials:
        scheme, params = _parse_auth(text, "credentials")
        return cls(scheme, params)

    @classmethod
    def digest(
        cls,
        *,
        username: str,
        realm: str,
        nonce: str,
        uri: str,
        response: str,
        algorithm: str | None = None,
        cnonce: str | None = None,
        opaque: str | None = None,
        qop: str | None = None,
        nc: str | None = None,
    ) -> Credentials:
        """Digest credentials quoted as RFC 3261 §25.1 writes them (``nc`` and ``qop``
        bare); the response itself is computed by the digest module."""
        values: dict[str, object] = {
            "username": username,
            "realm": realm,
            "nonce": nonce,
            "uri": uri,
            "response": response,
            "algorithm": algorithm,
            "cnonce": cnonce,
            "opaque": opaque,
            "qop": qop,
            "nc": nc,
        }
        return cls("Digest", _build_params(values, _QUOTED_CREDENTIALS))

    def param(self, name: str) -> str | None:
        value = self.params.get(name)
        return None if value is None else unquote(value)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def username(self) -> str | None:
        return self.param("username")

    @property
    def realm(self) -> str | None:
        return self.param("realm")

    @property
    def nonce(self) -> str | None:
        return self.param("nonce")

    @property
    def uri(self) -> str | None:
        return self.param("uri")

    @property
    def response(self) -> str | None:
        return self.param("response")

    @property
    def algorithm(self) -> str | None:
        return self.param("algorithm")

    @property
    def cnonce(self) -> str | None:
        return self.param("cnonce")

    @property
    def opaque(self) -> str | None:
        return self.param("opaque")

    @property
    def qop(self) -> str | None:
        return self.param("qop")

    @property
    def nc(self) -> str | None:
        return self.param("nc")

    def __str__(self) -> str:
        return _auth_text(self.scheme, self.params)

    def __repr__(self) -> str:
        # never let a digest response reach a log through repr()
        shown = ", ".join(
            f"{name}={'<redacted>' if name.lower() == 'response' else value}"
            for name, value in self.params.items()
        )
        return f"Credentials({self.scheme} {shown})"


# --------------------------------------------------------------------------- Retry-After


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Retry-After: ``seconds``, an optional ``comment`` and parameters (``duration``)."""

    seconds: int
    comment: str | None = None
    params: Params = field(default_factory=Params)

    @classmethod
    def parse(cls, text: str) -> RetryAfter:
        match = _DIGITS.match(text)
        if match is None:
            raise SIPParseError(f"Retry-After {text!r} does not start with delta-seconds", 0)
        seconds = parse_delta_seconds(match.group(1))
        pos = match.end()
        comment = None
        if pos < len(text) and text[pos] == "(":
            end = _comment_end(text, pos)
            comment = text[pos + 1 : end - 1]
            pos = end
        params = parse_params(text[pos:])
        if "duration" in params:
            parse_delta_seconds(params["duration"] or "")
        return cls(seconds, comment, params)

    @property
    def duration(self) -> int | None:
        value = self.params.get("duration")
        return None if value is None else parse_delta_seconds(value)

    def __str__(self) -> str:
        comment = f" ({self.comment})" if self.comment is not None else ""
        return f"{self.seconds}{comment}{self.params}"


_DIGITS = re.compile(r"[ \t]*([0-9]+)[ \t]*")


def _comment_end(text: str, pos: int) -> int:
    """Index after the comment starting at text[pos] == '(' (comments nest)."""
    depth = 0
    i = pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise SIPParseError(f"unterminated comment in {text!r}", pos)


# --------------------------------------------------------------------------- Date

_DATE = re.compile(
    r"[ \t]*(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT[ \t]*\Z"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_date(text: str) -> datetime:
    """An RFC 1123 date in GMT, as SIP's Date header requires (RFC 3261 §20.17)."""
    match = _DATE.match(text)
    if match is None:
        raise SIPParseError(
            f"Date {text!r} is not an RFC 1123 date in GMT like 'Sat, 13 Nov 2010 23:29:00 GMT'",
            0,
        )
    _, day, month, year, hour, minute, second = match.groups()
    try:
        return datetime(
            int(year),
            _MONTHS.index(month) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise SIPParseError(f"Date {text!r}: {exc}", 0) from None


def format_date(when: datetime) -> str:
    """``when`` as a SIP Date value (RFC 1123, GMT)."""
    when = when.astimezone(UTC)
    return when.strftime("%a, %d ") + _MONTHS[when.month - 1] + when.strftime(" %Y %H:%M:%S GMT")
