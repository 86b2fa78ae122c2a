"""What the SIP engine tells the call: small frozen dataclasses in the RFC's words.

The call (the trio glue) matches on their types; there are no callbacks.
SDP travels as bytes: ``gosipd.sip`` does not parse it (``gosipd.sdp`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gosipd.sip import URI, Request

__all__ = [
    "AckReceived",
    "AckTimedOut",
    "Answered",
    "AttemptFailed",
    "AuthChallenged",
    "AuthRefused",
    "CancelReceived",
    "EarlyMedia",
    "Ended",
    "Event",
    "Failed",
    "IncomingCall",
    "InfoReceived",
    "OfferAnswered",
    "OfferRejected",
    "RedirectRefused",
    "Redirected",
    "ReferReceived",
    "Registered",
    "RegistrationFailed",
    "RemoteOffer",
    "Ringing",
    "TransferAccepted",
    "TransferFailed",
    "TransferProgress",
    "TransferSucceeded",
    "Trying",
    "Unregistered",
]

Address = tuple[str, int]


@dataclass(frozen=True)
class Event:
    """Base class of everything the engine reports."""


# --- outbound (UAC) ---------------------------------------------------------


@dataclass(frozen=True)
class Trying(Event):
    """A 100 (or another provisional without a To tag): the target is alive."""

    status: int = 100
    destination: Address | None = None


@dataclass(frozen=True)
class Ringing(Event):
    """A 180-182 provisional, or 183 without SDP. ``reliable``: sent with 100rel."""

    status: int
    reason: str
    reliable: bool = False


@dataclass(frozen=True)
class EarlyMedia(Event):
    """A provisional (usually 183) carrying the far end's SDP answer: media flows now."""

    status: int
    sdp: bytes
    reliable: bool = False


@dataclass(frozen=True)
class Answered(Event):
    """The call is up: a 2xx to our INVITE was received and ACKed."""

    sdp: bytes | None
    status: int = 200


@dataclass(frozen=True)
class AuthChallenged(Event):
    """A 401/407 was answered with our credentials (the INVITE goes out again)."""

    status: int
    realms: tuple[str, ...]


@dataclass(frozen=True)
class AuthRefused(Event):
    """A 401/407 we did not answer, and why: ``not_trunk`` (the request went somewhere
    credentials may not go), ``realm_mismatch`` (a realm other than the configured one),
    ``refused`` (our answer was refused already, RFC 3261 §22.2). The request fails."""

    status: int
    realms: tuple[str, ...]
    reason: str
    method: str
    destination: Address


@dataclass(frozen=True)
class Redirected(Event):
    """A 3xx: the call should be retargeted to these Contacts, best q first (ties in the
    order given); ``retry`` with one of them, or ``give_up``. At most
    ``UAConfig.max_redirects`` are reported; the next 3xx fails the call."""

    status: int
    contacts: tuple[URI, ...]


@dataclass(frozen=True)
class RedirectRefused(Event):
    """A 3xx not followed because ``reason`` (the redirect limit); the call fails with it."""

    status: int
    contacts: tuple[URI, ...]
    reason: str


@dataclass(frozen=True)
class AttemptFailed(Event):
    """This destination did not take the INVITE; the caller may try another one.

    ``reason`` is ``"timeout"``, ``"transport"`` or ``"status"`` (with the
    status, e.g. 503, and the Retry-After seconds when given).
    """

    destination: Address
    reason: str
    status: int | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class Failed(Event):
    """The call attempt is over without an answer."""

    status: int
    reason: str
    retry_after: int | None = None


# --- inbound (UAS) ----------------------------------------------------------


@dataclass(frozen=True)
class IncomingCall(Event):
    """An INVITE for a new call (100 Trying already sent); go on with ``ring``, ``answer``
    or ``reject``."""

    request: Request
    sdp: bytes | None


@dataclass(frozen=True)
class CancelReceived(Event):
    """The caller cancelled before we answered (the INVITE got a 487)."""


@dataclass(frozen=True)
class AckReceived(Event):
    """The ACK for our 2xx arrived: the call is confirmed. ``sdp`` is a late answer."""

    sdp: bytes | None = None


@dataclass(frozen=True)
class AckTimedOut(Event):
    """No ACK for our 2xx in 64·T1 (§13.3.1.4): the engine has sent a BYE to end the
    session. The call is over for the app now; ``Ended(cause="ack_timeout")`` follows
    when the BYE's transaction completes. For the initial INVITE it means the caller
    never confirmed the call: the INVITE may have been forged, with another party's
    address in its SDP and Via."""


# --- either side, within the dialog -----------------------------------------


@dataclass(frozen=True)
class RemoteOffer(Event):
    """A re-INVITE or UPDATE with a new offer; answer it with ``answer_offer``.

    ``sdp`` is None for a re-INVITE without an offer: then ``answer_offer``
    must carry our offer, and the ACK will bring the answer (``OfferAnswered``).
    """

    sdp: bytes | None
    method: str = "INVITE"


@dataclass(frozen=True)
class OfferAnswered(Event):
    """Our re-INVITE was accepted; ``sdp`` is the far end's answer."""

    sdp: bytes | None


@dataclass(frozen=True)
class OfferRejected(Event):
    """Our re-INVITE was refused; the previous session stays as it was."""

    status: int
    reason: str


@dataclass(frozen=True)
class InfoReceived(Event):
    """An in-dialog INFO (e.g. application/dtmf-relay); answered 200 already."""

    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class TransferAccepted(Event):
    """The far end took our REFER (202): it is calling the target."""

    status: int


@dataclass(frozen=True)
class TransferProgress(Event):
    """A NOTIFY: the far end's call to the target got a provisional ``status``."""

    status: int
    reason: str


@dataclass(frozen=True)
class TransferSucceeded(Event):
    """The far end's call to the target was answered: our part is done (hang up)."""

    status: int


@dataclass(frozen=True)
class TransferFailed(Event):
    """The transfer did not happen: our REFER was refused (``status``), the far end's
    call failed (its ``status``), or no outcome came (``status`` None). The call goes on."""

    status: int | None
    reason: str


@dataclass(frozen=True)
class ReferReceived(Event):
    """The far end asks us to call ``target`` in its place (RFC 3515): answer it with
    ``accept_refer`` (then report the new call's progress with ``notify_refer``) or
    ``refuse_refer``. ``replaces``: the Replaces header the target's URI carried (RFC
    3891, an attended transfer); ``referred_by``: who asks (RFC 3892), as sent."""

    target: URI
    replaces: str | None
    referred_by: str | None


@dataclass(frozen=True)
class Ended(Event):
    """The call is over; nothing more will happen.

    ``cause``: ``local_hangup``, ``remote_hangup``, ``cancelled``, ``rejected``,
    ``busy`` (486/600), ``no_answer`` (408/480), ``failed`` (``give_up``),
    ``ack_timeout`` (no ACK for our 2xx in 64·T1: we sent BYE), ``prack_timeout`` (no
    PRACK for our reliable provisional: we sent 504), ``dialog_gone`` (481 to a request
    in the dialog). ``status``/``reason``: the final response that ended it, if any.
    """

    cause: str
    status: int | None = None
    reason: str = ""
    details: dict[str, object] = field(default_factory=dict, compare=False)


# --- registration (gosipd.sip.registration) -------------------------------------------


@dataclass(frozen=True)
class Registered(Event):
    """The registrar holds our binding for ``expires`` seconds (refreshed before then)."""

    expires: int
    status: int


@dataclass(frozen=True)
class RegistrationFailed(Event):
    """A REGISTER failed (``status`` None: no answer, or the registrar unreachable);
    another is sent in ``retry_in`` seconds."""

    status: int | None
    reason: str
    retry_in: float


@dataclass(frozen=True)
class Unregistered(Event):
    """Our binding is removed (or left to lapse); the registration is stopped."""
