"""Transfer (RFC 3515 REFER, RFC 3892 Referred-By, RFC 3891 Replaces), both roles: what
the far end's NOTIFYs say about the call it places for us, and what its REFER asks of us.

The transferee answers a REFER (202), places a call to the Refer-To target, and reports
its progress in NOTIFYs (``Event: refer``) whose body is a message/sipfrag status line
(``SIP/2.0 180 Ringing``, then the final ``SIP/2.0 200 OK``). The user agent keeps the
subscription in its dialog; this module reads a REFER and the NOTIFYs, and writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gosipd.sip import NameAddr, Request

__all__ = [
    "REFER_SUBSCRIPTION_S",
    "TRANSFER_TIMEOUT",
    "BadRefer",
    "Progress",
    "Referral",
    "notify_for",
    "read_notify",
    "read_refer",
]

#: How long the far end has to report the transfer's final outcome: its call may ring.
TRANSFER_TIMEOUT = 120.0

#: The refer subscription's lifetime we grant (RFC 3515 §2.4.6: our choice); the new call
#: ends it sooner, with its final status.
REFER_SUBSCRIPTION_S = 180

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


@dataclass(frozen=True)
class Referral:
    """What a REFER asks: call ``target`` (its URI headers dropped), replacing the dialog
    ``replaces`` names if it carried one (RFC 3891), at the word of ``referred_by``."""

    target: NameAddr
    replaces: str | None
    referred_by: str | None
    #: RFC 4488 ``Refer-Sub: false``: the transferor wants no NOTIFYs.
    subscribe: bool


@dataclass(frozen=True)
class BadRefer:
    """Why a REFER cannot be followed: the response it gets."""

    status: int
    reason: str


def read_refer(request: Request) -> Referral | BadRefer:
    """The REFER's target, or the 4xx for a REFER without exactly one usable Refer-To
    (RFC 3515 §2.4.1). Of the target URI's headers only Replaces is kept: the others
    would have us put what a stranger wrote into our INVITE."""
    values = request.headers.fields("Refer-To")  # the compact form "r" included
    if len(values) != 1:
        return BadRefer(400, "A REFER needs exactly one Refer-To")
    try:
        named = NameAddr.parse(values[0].strip())
    except ValueError:
        return BadRefer(400, "Bad Refer-To")
    uri = named.uri
    if uri.scheme not in ("sip", "sips"):
        return BadRefer(416, "Unsupported URI Scheme")
    if not uri.host:
        return BadRefer(400, "Bad Refer-To")
    replaces = uri.headers.get("Replaces")
    if replaces is not None and not replaces.strip():
        return BadRefer(400, "Bad Replaces in Refer-To")
    referred_by = request.headers.get("Referred-By")
    refer_sub = (request.headers.get("Refer-Sub") or "").strip().lower()
    return Referral(
        NameAddr(uri.replace(headers=()), named.display_name),
        replaces.strip() if replaces else None,
        referred_by.strip() if referred_by else None,
        subscribe=refer_sub != "false",
    )


def notify_for(
    event_id: int, status: int, reason: str, *, expires: int
) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and sipfrag body of a NOTIFY reporting ``status`` of our call for a
    REFER (whose CSeq number is ``event_id``); a final status ends the subscription."""
    state = f"active;expires={max(0, expires)}" if status < 200 else "terminated;reason=noresource"
    reason = "".join(ch for ch in reason if ch.isprintable())[:200]
    headers = [
        ("Event", f"refer;id={event_id}"),
        ("Subscription-State", state),
        ("Content-Type", "message/sipfrag;version=2.0"),
    ]
    return headers, f"SIP/2.0 {status} {reason}\r\n".encode()
