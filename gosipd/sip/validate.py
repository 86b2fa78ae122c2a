"""Which response a parsed request is owed before a UAS acts on it (RFC 3261 §8.2).

``parse`` only frames a message; header values are parsed when read. ``check`` reads
every header a UA understands, and then walks RFC 3261 §8.2 in order: malformed or
missing mandatory headers (400), method (405/501), Request-URI scheme (416), Require
(420), body type and encoding (415), Accept (406). It returns a ``Rejection`` that
carries the status, the reason phrase, the header fields the response needs (the
Unsupported list of a 420, the Accept of a 415, the Allow of a 405) and a sentence
for the log; ``validate`` returns just the status.

For a response, a non-None result means "malformed: discard it" (a UAC never answers
a response); only the headers a UAC acts on are checked in one (Via, From, To, Call-ID,
CSeq, Contact, Record-Route, Content-Type, Require, RSeq, Expires, Min-Expires,
Retry-After and the challenges). An ACK is never answered either: the caller drops an
ACK that fails.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gosipd._sipparse import SIPParseError
from gosipd.sip.message import Request, Response

__all__ = [
    "DEFAULT_ACCEPT",
    "KNOWN_METHODS",
    "MANDATORY_HEADERS",
    "Rejection",
    "check",
    "validate",
]

#: Body types a UA reads by default: SDP, alone or inside a multipart body.
DEFAULT_ACCEPT = ("application/sdp", "multipart/mixed", "multipart/alternative")
#: Methods defined by RFC 3261 and its extensions: an unknown one gets 501, a known but
#: disallowed one 405 (RFC 3261 §8.2.1, §21.5.2).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)
#: Every request carries these (RFC 3261 §8.1.1); Max-Forwards and Contact are not
#: required of a received request, for RFC 2543 peers (RFC 4475 §3.4.1).
MANDATORY_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

# typed headers read eagerly so that a malformed one is found here, not mid-call
_READERS = (
    "via",
    "from_",
    "to",
    "call_id",
    "cseq",
    "max_forwards",
    "contact",
    "route",
    "record_route",
    "content_type",
    "expires",
    "min_expires",
    "require",
    "proxy_require",
    "supported",
    "unsupported",
    "allow",
    "accept",
    "rseq",
    "rack",
    "retry_after",
    "date",
    "www_authenticate",
    "proxy_authenticate",
    "authorization",
    "proxy_authorization",
)
# read as raw fields (the typed reads already refuse a repeated From, CSeq, Max-Forwards...)
# A response is only refused for the headers a UAC acts on: a carrier's odd Date or
# Accept must not cost a call.
_RESPONSE_READERS = (
    "via",
    "from_",
    "to",
    "call_id",
    "cseq",
    "contact",
    "record_route",
    "content_type",
    "require",
    "rseq",
    "expires",
    "min_expires",
    "retry_after",
    "www_authenticate",
    "proxy_authenticate",
)
_SINGLE = ("Content-Length",)


@dataclass(frozen=True, slots=True)
class Rejection:
    """The response a request is owed: ``status``, ``reason`` phrase, the ``headers`` the
    response must carry, and ``detail`` (what exactly was wrong, for the log)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    detail: str = ""

    def response_to(self, request: Request, *, to_tag: str | None = None) -> Response:
        """The response itself (RFC 3261 §8.2.6), with this rejection's header fields."""
        response = Response.for_request(request, self.status, self.reason, to_tag=to_tag)
        for name, value in self.headers:
            response.headers.add(name, value)
        return response


def _bad(detail: str) -> Rejection:
    return Rejection(400, "Bad Request", (), detail)


def _syntax(message: Request | Response) -> Rejection | None:
    missing = [name for name in MANDATORY_HEADERS if name not in message.headers]
    if missing:
        names = ", ".join(repr(n) for n in missing)
        return _bad(f"missing mandatory header{'s' if len(missing) > 1 else ''} {names}")
    for name in _SINGLE:
        fields = message.headers.fields(name)
        if len(fields) > 1:
            return _bad(f"header {name!r} appears {len(fields)} times")
    try:
        for attribute in _READERS if isinstance(message, Request) else _RESPONSE_READERS:
            getattr(message, attribute)
        # the URIs inside From, To, Contact and the routes are checked when first used
        addresses = [message.from_, message.to, *message.contact, *message.record_route]
        if isinstance(message, Request):
            addresses += message.route
        for address in addresses:
            address.uri  # noqa: B018 - parsed for its errors
        for contact in message.contact:
            contact.q  # noqa: B018
            contact.expires  # noqa: B018
    except SIPParseError as exc:
        return _bad(exc.reason)
    if not message.via:
        return _bad("no Via hop")
    if message.body and message.content_type is None:
        return _bad("a body without Content-Type (RFC 3261 §20.15)")
    if isinstance(message, Request):
        cseq = message.cseq
        if cseq.method != message.method:
            where = message.headers.location("CSeq")
            line = f"line {where[0]}: " if where else ""
            return _bad(
                f"{line}header 'CSeq': method {cseq.method!r} does not match "
                f"request line {message.method!r}"
            )
        if message.contact_is_wildcard and (
            message.method != "REGISTER" or message.headers.count("Contact") > 1
        ):
            return _bad("Contact '*' is only allowed alone, in a REGISTER (RFC 3261 §10.2.2)")
    return None


def check(
    message: Request | Response,
    *,
    supported: Collection[str] = (),
    accept: Collection[str] = DEFAULT_ACCEPT,
    allow: Collection[str] | None = None,
    schemes: Collection[str] = ("sip", "sips", "tel"),
    produces: Collection[str] = ("application/sdp",),
) -> Rejection | None:
    """The rejection ``message`` is owed, or None when a UAS may process it.

    ``supported``: option tags this UA implements (Require beyond them: 420).
    ``accept``: body media types it reads (others: 415 with Accept).
    ``allow``: methods it handles (others: 405 with Allow, or 501 for an unknown
    method); None skips the method check. ``schemes``: Request-URI schemes it serves
    (others: 416). ``produces``: what its answer to an INVITE carries (an INVITE whose
    Accept excludes all of them: 406).
    """
    rejection = _syntax(message)
    if rejection is not None or isinstance(message, Response):
        return rejection
    method = message.method
    if allow is not None and method not in allow:
        if method in KNOWN_METHODS:
            return Rejection(
                405,
                "Method Not Allowed",
                (("Allow", ", ".join(allow)),),
                f"method {method} is not allowed here",
            )
        return Rejection(501, "Not Implemented", (), f"method {method!r} is not implemented")
    if message.uri.scheme not in schemes:
        return Rejection(
            416,
            "Unsupported URI Scheme",
            (),
            f"Request-URI scheme {message.uri.scheme!r} is not one of {', '.join(schemes)}",
        )
    if method not in ("ACK", "CANCEL"):
        known = {tag.lower() for tag in supported}
        unknown = [tag for tag in message.require if tag.lower() not in known]
        if unknown:
            return Rejection(
                420,
                "Bad Extension",
                (("Unsupported", ", ".join(unknown)),),
                f"Require lists unsupported option tag{'s' if len(unknown) > 1 else ''} "
                + ", ".join(unknown),
            )
    if message.body:
        content_type = message.content_type
        assert content_type is not None  # _syntax checked it
        readable = {mime.lower() for mime in accept}
        if content_type.mime not in readable:
            return Rejection(
                415,
                "Unsupported Media Type",
                (("Accept", ", ".join(accept)),),
                f"body type {content_type.mime} is not one of {', '.join(accept)}",
            )
        encodings = [
            e.strip().lower() for e in message.headers.get_all("Content-Encoding") if e.strip()
        ]
        if any(e != "identity" for e in encodings):
            return Rejection(
                415,
                "Unsupported Media Type",
                (("Accept-Encoding", "identity"),),
                f"Content-Encoding {', '.join(encodings)} is not supported",
            )
    if method == "INVITE" and "Accept" in message.headers:
        ranges = message.accept
        if not any(r.matches(mime) and r.q > 0 for r in ranges for mime in produces):
            return Rejection(
                406,
                "Not Acceptable",
                (),
                f"Accept does not include {', '.join(produces)}",
            )
    return None


def validate(
    message: Request | Response,
    *,
    supported: Collection[str] = (),
    accept: Collection[str] = DEFAULT_ACCEPT,
    allow: Collection[str] | None = None,
    schemes: Collection[str] = ("sip", "sips", "tel"),
    produces: Collection[str] = ("application/sdp",),
) -> int | None:
    """The status ``message`` is owed (400, 405, 406, 415, 416, 420, 501), or None.

    Same arguments as ``check``, which also gives the reason, header fields and detail.
    """
    rejection = check(
        message,
        supported=supported,
        accept=accept,
        allow=allow,
        schemes=schemes,
        produces=produces,
    )
    return None if rejection is None else rejection.status
