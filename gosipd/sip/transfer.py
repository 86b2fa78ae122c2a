"""Blind transfer as the transferor (RFC 3515 REFER, RFC 3892 Referred-By): what the
far end's NOTIFYs say about the call it places for us.

The far end answers our REFER (202), places a call to the Refer-To target, and reports
its progress in NOTIFYs (``Event: refer``) whose body is a message/sipfrag status line
(``SIP/2.0 180 Ringing``, then the final ``SIP/2.0 200 OK``). The user agent keeps the
subscription in its dialog; this module reads the NOTIFYs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gosipd.sip.message import Request

__all__ = ["TRANSFER_TIMEOUT", "Progress", "read_notify"]

#: How long the far end has to report the transfer's final outcome: its call may ring.
TRANSFER_TIMEOUT = 120.0

_STATUS_LINE = re.compile(rb"^SIP/2\.0 ([1-6][0-9][0-9])(?: ([^\r\n]{0,200}))?")


@dataclass(frozen=True)
class Progress:
    """One NOTIFY of the refer subscription: the status of the far end's new call (None
    when the body says nothing we read) and whether the subscription ended."""

    status: int | None
    reason: str
    terminated: bool
    #: Subscription-State's reason when it ended (``noresource``, ``timeout``, ...).
    ended_because: str = ""


def read_notify(request: Request) -> Progress | None:
    """The progress a NOTIFY reports, or None if it is not about a refer (a 489 then)."""
    event = (request.headers.get("Event") or request.headers.get("o") or "").strip()
    if event.split(";", 1)[0].strip().lower() != "refer":
        return None
    state = (request.headers.get("Subscription-State") or "").strip()
    kind, *params = (part.strip() for part in state.split(";"))
    ended_because = ""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "reason":
            ended_because = value.strip()
    status: int | None = None
    reason = ""
    content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type == "message/sipfrag":
        match = _STATUS_LINE.match(request.body.lstrip())
        if match:
            status = int(match.group(1))
            reason = (match.group(2) or b"").decode("utf-8", "replace").strip()
    return Progress(status, reason, kind.lower() == "terminated", ended_because)
