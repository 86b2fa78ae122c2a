"""Multipart bodies (RFC 2046 §5.1, RFC 5621): split them into parts and build them.

Carriers send SDP next to ISUP (SIP-I/SIP-T, multipart/mixed), and some UAs wrap it
in multipart/alternative; the engine only needs the application/sdp part, but a
call app may want the others. Splitting is one linear pass over the body.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from gosipd._sipparse import Headers, SIPParseError, parse_mime_part
from gosipd.sip.values import ContentType

__all__ = ["MAX_PARTS", "BodyPart", "find_part", "join_multipart", "split_multipart"]

#: The most parts one multipart body may have (nested bodies count separately).
MAX_PARTS = 64
#: How deep multipart bodies may nest when searching for a part.
MAX_NESTING = 4


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part of a multipart body: its header fields and its octets."""

    headers: Headers
    body: bytes

    @classmethod
    def of(cls, content_type: str | ContentType, body: bytes, **headers: str) -> BodyPart:
        """A part with a Content-Type (and more fields: ``content_disposition=...``)."""
        h = Headers([("Content-Type", str(content_type))])
        for name, value in headers.items():
            h.add(name.replace("_", "-"), value)
        return cls(h, body)

    @property
    def content_type(self) -> ContentType:
        """The part's media type; text/plain when the part does not say (RFC 2046 §5.1)."""
        found = self.headers.typed_one("content-type", ContentType.parse)
        return found if found is not None else _TEXT_PLAIN


_TEXT_PLAIN = ContentType("text", "plain")


def split_multipart(body: bytes, boundary: str) -> list[BodyPart]:
    """The parts of a multipart body delimited by ``boundary`` (preamble and epilogue
    are dropped). Raises SIPParseError when the delimiters are missing or broken."""
    if not boundary:
        raise SIPParseError("multipart Content-Type has no boundary parameter", 0)
    data = b"\r\n" + body
    marker = b"\r\n--" + boundary.encode("utf-8", "surrogateescape")
    pos = data.find(marker)
    if pos < 0:
        raise SIPParseError(f"multipart body never uses its boundary {boundary!r}", 0)
    parts: list[BodyPart] = []
    while True:
        after = pos + len(marker)
        if data.startswith(b"--", after):
            return parts
        eol = data.find(b"\n", after)
        if eol < 0 or data[after:eol].strip(b" \t\r"):
            raise SIPParseError(
                f"multipart boundary {boundary!r} is followed by text on its line", max(pos - 2, 0)
            )
        start = eol + 1
        nxt = data.find(marker, start)
        if nxt < 0:
            raise SIPParseError(f"multipart body has no closing boundary '--{boundary}--'", start)
        if len(parts) >= MAX_PARTS:
            raise SIPParseError(f"multipart body has more than {MAX_PARTS} parts", start)
        try:
            headers, part_body = parse_mime_part(data[start:nxt])
        except SIPParseError as exc:
            raise SIPParseError(f"multipart part {len(parts) + 1}: {exc.reason}", start) from None
        parts.append(BodyPart(headers, part_body))
        pos = nxt


def join_multipart(parts: Iterable[BodyPart], boundary: str | None = None) -> tuple[str, bytes]:
    """``(boundary, body)`` for a multipart body of ``parts`` (a random boundary when
    none is given). Use ``ContentType.of("multipart/mixed", boundary=boundary)``."""
    boundary = boundary or secrets.token_hex(12)
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in parts:
        if delimiter in part.body:
            raise ValueError(f"boundary {boundary!r} occurs inside a part; choose another")
        chunks.append(delimiter + b"\r\n")
        for name, value in part.headers:
            chunks.append(f"{name}: {value}\r\n".encode())
        chunks.append(b"\r\n" + part.body + b"\r\n")
    chunks.append(delimiter + b"--\r\n")
    return boundary, b"".join(chunks)


def find_part(content_type: ContentType, body: bytes, mime: str) -> bytes | None:
    """The body of the first part of type ``mime`` (searching nested multiparts), the
    whole body if it is itself of that type, or None."""
    return _find(content_type, body, mime.lower(), 0)


def _find(content_type: ContentType, body: bytes, mime: str, depth: int) -> bytes | None:
    if content_type.mime == mime:
        return body
    if content_type.type != "multipart" or depth >= MAX_NESTING:
        return None
    for part in split_multipart(body, content_type.boundary or ""):
        found = _find(part.content_type, part.body, mime, depth + 1)
        if found is not None:
            return found
    return None
