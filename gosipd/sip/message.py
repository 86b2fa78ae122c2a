"""SIP requests and responses: parse them from a datagram, read and change their typed
headers, build them, and write them back to bytes.

``parse(data)`` frames a datagram with the Cython parser and wraps it; typed headers
(``msg.via``, ``msg.cseq``...) are parsed the first time they are read and cached
until that header changes. Changing a typed header (``msg.to = msg.to.with_tag(t)``,
``msg.push_via(v)``) writes its canonical text into the header list, so ``bytes(msg)``
always reflects what the properties say. Headers nobody changed are written back
exactly as they were received (folding joined, compact names expanded), and
Content-Length is always recomputed from the body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Self, cast

from gosipd._sipparse import (
    URI,
    CSeq,
    Headers,
    MessageCore,
    NameAddr,
    RequestCore,
    ResponseCore,
    SIPParseError,
    Via,
    _register_message_types,
    is_token,
    parse_message,
)
from gosipd.sip.multipart import BodyPart, find_part, split_multipart
from gosipd.sip.values import (
    Challenge,
    ContentType,
    Credentials,
    RAck,
    RetryAfter,
    parse_date,
    parse_delta_seconds,
    parse_method,
    parse_option_tag,
    parse_rseq,
)

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "DIALOG_CREATING_METHODS",
    "REASON_PHRASES",
    "Message",
    "Request",
    "Response",
    "parse",
]

#: Max-Forwards a UAC puts in a new request (RFC 3261 §8.1.1.6).
DEFAULT_MAX_FORWARDS = 70
#: Requests whose 101-299 responses copy Record-Route (RFC 3261 §12.1.1, RFC 6665, 3515).
DIALOG_CREATING_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})

#: The reason phrases of RFC 3261 §21 and the extensions a UA meets.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}


def _reason(status: int) -> str:
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return {1: "Trying", 2: "OK", 3: "Redirect", 4: "Request Failure", 5: "Server Failure"}.get(
        status // 100, "Global Failure"
    )


class Message(MessageCore):
    """What requests and responses share, beyond the hot typed headers of
    ``MessageCore`` (Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route,
    Max-Forwards): extensions, authentication, numbers, the body and its parts.

    Typed reads return fresh lists (changing the list does not change the message);
    change a message through the setters.
    """

    __slots__ = ()

    def copy(self) -> Self:
        """An independent copy (headers copied; typed values are immutable)."""
        other = type(self).__new__(type(self))
        for attribute in _COPIED:
            if hasattr(self, attribute):
                setattr(other, attribute, getattr(self, attribute))
        other.headers = self.headers.copy()
        return other

    # -- numbers

    @property
    def expires(self) -> int | None:
        return self.headers.typed_one("expires", parse_delta_seconds)

    @expires.setter
    def expires(self, value: int | None) -> None:
        self._set_number("Expires", value, 2**32 - 1)

    @property
    def min_expires(self) -> int | None:
        return self.headers.typed_one("min-expires", parse_delta_seconds)

    @property
    def rseq(self) -> int | None:
        return self.headers.typed_one("rseq", parse_rseq)

    @rseq.setter
    def rseq(self, value: int | None) -> None:
        if value == 0:
            raise ValueError("RSeq starts at 1")
        self._set_number("RSeq", value, 2**32 - 1)

    @property
    def rack(self) -> RAck | None:
        return self.headers.typed_one("rack", RAck.parse)

    @rack.setter
    def rack(self, value: RAck | None) -> None:
        self._set_value("RAck", value)

    @property
    def retry_after(self) -> RetryAfter | None:
        return self.headers.typed_one("retry-after", RetryAfter.parse)

    @retry_after.setter
    def retry_after(self, value: RetryAfter | int | None) -> None:
        self._set_value("Retry-After", RetryAfter(value) if isinstance(value, int) else value)

    @property
    def date(self) -> datetime | None:
        return self.headers.typed_one("date", parse_date)

    def _set_number(self, name: str, value: int | None, maximum: int) -> None:
        if value is None:
            self.headers.remove(name)
            return
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
            raise ValueError(f"{name} must be an integer in 0..{maximum}, not {value!r}")
        self.headers.set_typed_one(name, value)

    def _set_value(self, name: str, value: object | None) -> None:
        if value is None:
            self.headers.remove(name)
        else:
            self.headers.set_typed_one(name, value)

    # -- extensions (option tags) and methods

    @property
    def require(self) -> list[str]:
        return _tags(self.headers.typed_all("require", _option_tag))

    @require.setter
    def require(self, tags: Iterable[str]) -> None:
        self.headers.set_typed("Require", _check_tags(tags))

    @property
    def proxy_require(self) -> list[str]:
        return _tags(self.headers.typed_all("proxy-require", _option_tag))

    @property
    def supported(self) -> list[str]:
        return _tags(self.headers.typed_all("supported", _option_tag))

    @supported.setter
    def supported(self, tags: Iterable[str]) -> None:
        self.headers.set_typed("Supported", _check_tags(tags))

    @property
    def unsupported(self) -> list[str]:
        return _tags(self.headers.typed_all("unsupported", _option_tag))

    @unsupported.setter
    def unsupported(self, tags: Iterable[str]) -> None:
        self.headers.set_typed("Unsupported", _check_tags(tags))

    @property
    def allow(self) -> list[str]:
        return _tags(self.headers.typed_all("allow", _method))

    @allow.setter
    def allow(self, methods: Iterable[str]) -> None:
        self.headers.set_typed("Allow", _check_tags(methods))

    @property
    def accept(self) -> list[ContentType]:
        """The Accept media ranges (empty when absent)."""
        return [c for c in self.headers.typed_all("accept", _media_range) if c is not None]

    # -- authentication

    @property
    def www_authenticate(self) -> list[Challenge]:
        return list(self.headers.typed_all("www-authenticate", Challenge.parse))

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        return list(self.headers.typed_all("proxy-authenticate", Challenge.parse))

    @property
    def authorization(self) -> list[Credentials]:
        return list(self.headers.typed_all("authorization", Credentials.parse))

    @property
    def proxy_authorization(self) -> list[Credentials]:
        return list(self.headers.typed_all("proxy-authorization", Credentials.parse))

    # -- the body

    @property
    def content_type(self) -> ContentType | None:
        return self.headers.typed_one("content-type", ContentType.parse)

    @content_type.setter
    def content_type(self, value: ContentType | str | None) -> None:
        if isinstance(value, str):
            value = ContentType.parse(value)
        self._set_value("Content-Type", value)

    def set_body(self, body: bytes, content_type: ContentType | str | None) -> None:
        """Replace the body and its Content-Type (None with an empty body removes it)."""
        if not isinstance(body, bytes | bytearray):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        if body and content_type is None:
            raise ValueError("a non-empty body needs a Content-Type (RFC 3261 §20.15)")
        self.body = bytes(body)
        self.content_type = content_type

    @property
    def sdp(self) -> bytes | None:
        """The application/sdp body, or the first application/sdp part of a multipart
        body, or None."""
        content_type = self.content_type
        if content_type is None or not self.body:
            return None
        return find_part(content_type, self.body, "application/sdp")

    @property
    def parts(self) -> list[BodyPart]:
        """The parts of a multipart body (empty for any other body)."""
        content_type = self.content_type
        if content_type is None or content_type.type != "multipart":
            return []
        return split_multipart(self.body, content_type.boundary or "")


_COPIED = ("body", "method", "uri", "status", "reason")


def _option_tag(text: str) -> str | None:
    return None if text == "" else parse_option_tag(text)


def _method(text: str) -> str | None:
    return None if text == "" else parse_method(text)


def _media_range(text: str) -> ContentType | None:
    return None if text == "" else ContentType.parse(text)


def _tags(values: tuple[str | None, ...]) -> list[str]:
    return [v for v in values if v is not None]


def _check_tags(tags: Iterable[str]) -> list[str]:
    out = list(tags)
    for tag in out:
        if not isinstance(tag, str) or not is_token(tag):
            raise ValueError(f"{tag!r} is not a token")
    return out


class Request(RequestCore, Message):
    """A SIP request: ``method``, ``uri`` (the Request-URI), ``headers``, ``body``."""

    __slots__ = ()

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if not isinstance(method, str) or not is_token(method):
            raise ValueError(f"method {method!r} is not a token")
        if isinstance(uri, str):
            uri = URI.parse(uri)
        if not isinstance(uri, URI):
            raise TypeError(f"uri must be a URI or str, not {type(uri).__name__}")
        self.method = method
        self.uri = uri
        self.headers = _headers(headers)
        self.body = _body(body)

    @classmethod
    def create(
        cls,
        method: str,
        uri: URI | str,
        *,
        from_: NameAddr,
        to: NameAddr,
        call_id: str,
        cseq: int,
        via: Via | Iterable[Via] = (),
        contact: NameAddr | Iterable[NameAddr] | None = None,
        route: Iterable[NameAddr] = (),
        max_forwards: int = DEFAULT_MAX_FORWARDS,
        body: bytes = b"",
        content_type: ContentType | str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A new request with the header fields RFC 3261 §8.1.1 requires, in the usual
        order: Via, Max-Forwards, Route, From, To, Call-ID, CSeq (``cseq`` number with
        this method), Contact, then ``headers``, Content-Type; Content-Length is written
        when the request is serialised."""
        request = cls(method, uri)
        hops = [via] if isinstance(via, Via) else list(via)
        if hops:
            request.via = hops
        request.max_forwards = max_forwards
        routes = list(route)
        if routes:
            request.route = routes
        request.from_ = from_
        request.to = to
        request.call_id = call_id
        request.cseq = CSeq(cseq, method)
        if contact is not None:
            request.contact = [contact] if isinstance(contact, NameAddr) else list(contact)
        for name, value in headers:
            request.headers.add(name, value)
        if body or content_type is not None:
            request.set_body(body, content_type)
        return request

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(ResponseCore, Message):
    """A SIP response: ``status``, ``reason`` (the Reason-Phrase), ``headers``, ``body``."""

    __slots__ = ()

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 699:
            raise ValueError(f"status {status!r} is not a SIP status code (100..699)")
        if reason is None:
            reason = _reason(status)
        if "\r" in reason or "\n" in reason:
            raise ValueError(f"reason phrase must not contain CR or LF: {reason!r}")
        self.status = status
        self.reason = reason
        self.headers = _headers(headers)
        self.body = _body(body)

    @classmethod
    def for_request(
        cls,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
    ) -> Response:
        """The response a UAS builds for ``request`` (RFC 3261 §8.2.6): Via (all hops),
        From, To, Call-ID and CSeq copied as received; Timestamp copied into a 100;
        Record-Route copied into a 101-299 response to INVITE, SUBSCRIBE or REFER
        (§12.1.1). ``to_tag`` is added to a To that has no tag (the dialog layer picks
        it; a To that already has one keeps it). Works on raw values, so it also answers
        a request whose headers fail typed parsing (e.g. with 400)."""
        return cls._for_headers(
            request.headers, status, reason, to_tag=to_tag, method=request.method
        )

    @classmethod
    def for_malformed(cls, error: SIPParseError, *, to_tag: str | None = None) -> Response | None:
        """The 400 (or 505) owed to a request that ``parse`` refused, when enough of it
        was framed to answer: Via, From, To, Call-ID and CSeq present, not an ACK. None
        when nothing can be sent (the datagram is then dropped)."""
        headers = error.headers
        if not error.is_request or not isinstance(headers, Headers):
            return None
        if error.status not in (400, 505):
            return None
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            if name not in headers:
                return None
        cseq = headers.get("CSeq") or ""
        if cseq.split()[-1:] == ["ACK"]:
            return None
        return cls._for_headers(headers, error.status, None, to_tag=to_tag, method=None)

    @classmethod
    def _for_headers(
        cls,
        source: Headers,
        status: int,
        reason: str | None,
        *,
        to_tag: str | None,
        method: str | None,
    ) -> Response:
        response = cls(status, reason)
        headers = response.headers
        for value in source.fields("Via"):
            headers.add("Via", value)
        for name in ("From", "To", "Call-ID", "CSeq"):
            for value in source.fields(name)[:1]:
                headers.add(name, value)
        if status == 100:
            for value in source.fields("Timestamp")[:1]:
                headers.add("Timestamp", value)
        elif to_tag is not None:
            if not is_token(to_tag):
                raise ValueError(f"To tag {to_tag!r} is not a token")
            to_text = headers.get("To")
            try:
                to = NameAddr.parse(to_text) if to_text is not None else None
            except SIPParseError:
                to = None  # a malformed To is echoed unchanged
            if to is not None and to.tag is None:
                response.to = to.with_tag(to_tag)
        if method in DIALOG_CREATING_METHODS and 100 < status < 300:
            for value in source.fields("Record-Route"):
                headers.add("Record-Route", value)
        return response

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_final(self) -> bool:
        return self.status >= 200

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _headers(headers: Headers | Iterable[tuple[str, str]] | None) -> Headers:
    if headers is None:
        return Headers()
    if isinstance(headers, Headers):
        return headers
    return Headers(headers)


def _body(body: bytes) -> bytes:
    if not isinstance(body, bytes | bytearray):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    return bytes(body)


_register_message_types(Request, Response)


#: Parse one datagram into a Request or Response (``gosipd._sipparse.parse_message``):
#: framing (Content-Length, with trailing octets ignored; no Content-Length means the
#: rest of the datagram, as over UDP), the start line and the header names; header values
#: are parsed when first read. Raises SIPParseError, whose ``headers`` (when set) let
#: ``Response.for_malformed`` answer a broken request.
parse = cast("Callable[[bytes | bytearray | memoryview], Request | Response]", parse_message)
