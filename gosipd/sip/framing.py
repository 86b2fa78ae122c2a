"""SIP message framing on stream transports (RFC 3261 §18.3), sans-I/O.

TCP and TLS carry a byte stream: messages are delimited by the end of the
header section and the Content-Length, which is mandatory there. ``Framer``
takes bytes as they arrive and hands back whole messages, and RFC 5626 §3.5.1
keepalives: a double CRLF between messages is a ping (answer it with a single
CRLF, ``PONG``); a single CRLF is a pong, or the empty lines RFC 3261 §7.5 lets
a sender put before a message.

Limits, because the peer may be hostile: a header section longer than
``max_header`` without its end, a Content-Length that is missing, malformed or
larger than ``max_body``, or a message larger than the parser takes
(``max_message``), raise ``FramingError``; the connection must then be
closed (there is no way to find the next message in the stream). A peer that
stops mid-message is the caller's to time out: ``pending`` says a message is
incomplete.
"""

from __future__ import annotations

import re

from gosipd._sipparse import MAX_MESSAGE_SIZE

__all__ = ["PING", "PONG", "Framer", "FramingError", "Keepalive"]

#: The keepalive ping a client sends, and the pong a server answers it with.
PING = b"\r\n\r\n"
PONG = b"\r\n"

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*\r?$", re.I | re.M)


class FramingError(Exception):
    """The stream cannot be read as SIP any more: close the connection."""


class Keepalive:
    """A double-CRLF ping from the peer: answer ``PONG``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Keepalive()"


KEEPALIVE = Keepalive()


class Framer:
    """Bytes in (``feed``), complete messages and keepalives out."""

    def __init__(
        self,
        *,
        max_header: int = 16_384,
        max_body: int = 65_536,
        max_message: int = MAX_MESSAGE_SIZE,
    ) -> None:
        """``max_message``: header and body together, what the parser takes."""
        self.max_header = max_header
        self.max_body = max_body
        self.max_message = max_message
        self._buffer = bytearray()
        self._body_needed: int | None = None  # header section done: its end + body length

    @property
    def pending(self) -> bool:
        """Whether part of a message has arrived and the rest has not."""
        return bool(self._buffer.strip(b"\r\n")) or self._body_needed is not None

    def feed(self, data: bytes) -> list[bytes | Keepalive]:
        self._buffer += data
        out: list[bytes | Keepalive] = []
        while True:
            if self._body_needed is None:
                # between messages: CRLFs are keepalives (pings answered, pongs dropped)
                while self._buffer.startswith(b"\r\n"):
                    if self._buffer.startswith(PING):
                        del self._buffer[:4]
                        out.append(KEEPALIVE)
                    elif len(self._buffer) >= 4 or bytes(self._buffer[2:3]) not in (b"", b"\r"):
                        del self._buffer[:2]  # a pong, or an empty line before a message
                    else:
                        return out  # a pong, or the start of a ping: wait for more
                if not self._buffer:
                    return out
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > self.max_header:
                        raise FramingError(
                            f"no end of the header section in {len(self._buffer)} octets"
                        )
                    return out
                if end > self.max_header:
                    raise FramingError(
                        f"a header section of {end} octets (limit {self.max_header})"
                    )
                size = end + 4 + self._content_length(bytes(self._buffer[:end]))
                if size > self.max_message:
                    raise FramingError(f"a message of {size} octets (limit {self.max_message})")
                self._body_needed = size
            if len(self._buffer) < self._body_needed:
                return out
            message = bytes(self._buffer[: self._body_needed])
            del self._buffer[: self._body_needed]
            self._body_needed = None
            out.append(message)

    def _content_length(self, header: bytes) -> int:
        values = _CONTENT_LENGTH.findall(header)
        if not values:
            raise FramingError("no Content-Length (mandatory on stream transports, §18.3)")
        if len(set(values)) > 1 or not values[0].isdigit():
            raise FramingError("a malformed Content-Length")
        length = int(values[0])
        if length > self.max_body:
            raise FramingError(f"a body of {length} octets (limit {self.max_body})")
        return length
