"""REGISTER as a UA (RFC 3261 §10): one binding of our Contact to the trunk's address
of record, kept alive, for trunks that send inbound calls only to a registered contact.

A machine you feed, like the call's user agent: ``start`` and ``stop`` act, ``receive``
takes a response, ``handle_timer`` the time; what to send comes out of
``datagrams_to_send`` and what happened out of ``events``. The supervisor owns one per
host and drives it from its inbound socket, so the registrar sees the very address the
INVITEs must come back to.

- Digest challenges (401/407) are answered with the trunk's credentials, once per
  nonce (``DigestSession``); a second refusal is a failure, not a loop.
- 423 Interval Too Brief: the same request again asking for the registrar's
  Min-Expires (§10.2.8).
- The binding is refreshed before it lapses: at half its lifetime, or 32 s before the
  end, whichever is later (the registrar may grant less than we asked for).
- A failure (a 4xx-6xx, a timeout, an unreachable registrar) retries after the
  RFC 5626 §4.5 backoff: min(max, base · 2^failures), 50-100 % of it at random; a
  Retry-After the registrar gives is honoured when longer.
- ``stop`` sends Expires: 0 so the registrar stops sending calls to a host going away.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from gosipd.sip import URI, NameAddr, Request, Response, Via
from gosipd.sip import events as ev
from gosipd.sip.digest import Credentials, DigestSession, challenges_in, credentials_in
from gosipd.sip.timers import Timers
from gosipd.sip.transaction import (
    MAGIC_COOKIE,
    ClientNonInvite,
    ResponseReceived,
    TransactionEvent,
    TransactionTimeout,
    TransportFailure,
)

__all__ = [
    "Registration",
    "RegistrationConfig",
    "RegistrationState",
]

Address = tuple[str, int]

#: RFC 5626 §4.5's backoff: base (when every flow failed) and ceiling, seconds.
RETRY_BASE = 30.0
RETRY_MAX = 1800.0
#: The longest Min-Expires a 423 may ask us for (a day).
MAX_EXPIRES = 86_400
#: Challenges answered in one round (a registration or refresh and its retries).
MAX_ANSWERS = 3


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # waiting to try again
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RegistrationConfig:
    aor: URI  # sip:user@trunk: To and From
    registrar: URI  # the Request-URI: sip:trunk (§10.2)
    contact: URI  # where calls for the AOR must come: our inbound listener
    local_address: Address  # for Via
    credentials: Credentials | None = None
    expires: int = 3600
    user_agent: str = ""
    retry_base: float = RETRY_BASE
    retry_max: float = RETRY_MAX


class Registration:
    """One binding's lifecycle; ``state`` says where it is."""

    def __init__(
        self, config: RegistrationConfig, *, timers: Timers | None = None, rng: random.Random
    ) -> None:
        self.config = config
        self.timers = timers or Timers()
        self.rng = rng
        self.state = RegistrationState.UNREGISTERED
        self.call_id = f"{rng.getrandbits(96):024x}@gosipd"
        #: Where REGISTERs go; the owner sets it (located per RFC 3263) before ``start``.
        self.destination: Address | None = None
        self.expires = config.expires  # what we ask for (raised by a 423)
        #: What the registrar granted, and when the binding lapses, while registered.
        self.granted: int | None = None
        self.expires_at: float | None = None
        self.failures = 0
        self.last_status: int | None = None
        self.last_reason = ""
        self._cseq = 0
        self._digest = (
            DigestSession(config.credentials, cnonce_source=lambda: f"{rng.getrandbits(64):016x}")
            if config.credentials
            else None
        )
        self._tx: ClientNonInvite | None = None
        self._answers = 0  # challenges answered this round
        self._next_at: float | None = None  # the refresh or the retry
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: list[ev.Event] = []

    # --- the sans-I/O surface ---------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def events(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        deadlines = [t for t in (self._next_at, self._tx.next_timer() if self._tx else None) if t]
        return min(deadlines, default=None)

    def owns(self, response: Response) -> bool:
        """Whether ``response`` belongs to our registration (by Call-ID)."""
        return response.call_id == self.call_id

    def start(self, now: float) -> None:
        """Register (again, at once, whatever the state but stopped)."""
        if self.state in (RegistrationState.STOPPED, RegistrationState.UNREGISTERING):
            return
        self._next_at = None
        self._answers = 0
        self._send(now, self.expires)

    def stop(self, now: float) -> None:
        """Remove the binding (Expires: 0) if there is one; no more retries."""
        self._next_at = None
        if self.state is RegistrationState.REGISTERED and self.destination is not None:
            self.state = RegistrationState.UNREGISTERING
            self._answers = 0
            self._send(now, 0)
        else:
            self._abandon()
            self.state = RegistrationState.STOPPED

    def handle_timer(self, now: float) -> None:
        if self._tx is not None:
            tx = self._tx
            self._on_tx_events(tx, tx.handle_timer(now), now)
        if self._next_at is not None and now >= self._next_at:
            self._next_at = None
            self._answers = 0
            self._send(now, self.expires)

    def transport_error(self, destination: Address, now: float, reason: str) -> None:
        tx = self._tx
        if tx is not None and tx.destination == destination:
            self._on_tx_events(tx, tx.transport_error(now, reason), now)

    def receive(self, response: Response, now: float) -> None:
        tx = self._tx
        if tx is None or not self.owns(response):
            return
        via = response.top_via
        if via is None or via.branch != tx.request.via[0].branch:
            return  # a stale transaction's retransmitted answer
        self._on_tx_events(tx, tx.receive(response, now), now)

    # --- internals --------------------------------------------------------------------

    def _send(self, now: float, expires: int) -> None:
        if self.destination is None:
            raise ValueError("the registration has no destination yet")
        self._abandon()
        self._cseq += 1
        config = self.config
        via = Via("UDP", *config.local_address, branch=f"{MAGIC_COOKIE}{self._token()}", rport=True)
        headers = [("Expires", str(expires)), ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]
        if config.user_agent:
            headers.append(("User-Agent", config.user_agent))
        request = Request.create(
            "REGISTER",
            config.registrar,
            from_=NameAddr(config.aor).with_tag(self._token()),
            to=NameAddr(config.aor),
            call_id=self.call_id,
            cseq=self._cseq,
            via=via,
            contact=NameAddr(config.contact),
            headers=headers,
        )
        if self._digest is not None:
            for name, value in self._digest.headers_for(
                method="REGISTER", uri=str(config.registrar)
            ):
                request.headers.add(name, value)
        if self.state not in (RegistrationState.UNREGISTERING, RegistrationState.REGISTERED):
            self.state = RegistrationState.REGISTERING
        self._tx = ClientNonInvite(request, self.destination, self.timers, self._outbox, now)

    def _abandon(self) -> None:
        self._tx = None

    def _token(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _on_tx_events(
        self, tx: ClientNonInvite, events: list[TransactionEvent], now: float
    ) -> None:
        for event in events:
            if isinstance(event, ResponseReceived):
                if event.response.status >= 200:
                    self._tx = None
                    self._on_final(tx.request, event.response, now)
            elif isinstance(event, TransactionTimeout | TransportFailure):
                self._tx = None
                reason = "timeout" if isinstance(event, TransactionTimeout) else "unreachable"
                self._failed(None, reason, now)

    def _on_final(self, request: Request, response: Response, now: float) -> None:
        status = response.status
        self.last_status, self.last_reason = status, response.reason
        unregistering = self.state is RegistrationState.UNREGISTERING
        if 200 <= status < 300:
            if unregistering:
                self._stopped()
                return
            self._registered(response, now)
        elif status in (401, 407) and self._answer(request, response):
            self._send(now, 0 if unregistering else self.expires)
        elif status == 423 and not unregistering and self._raise_expires(response):
            self._send(now, self.expires)
        elif unregistering:
            self._stopped()  # nothing more to do: the binding lapses on its own
        else:
            retry_after = response.retry_after.seconds if response.retry_after else None
            self._failed(status, response.reason, now, retry_after=retry_after)

    def _answer(self, request: Request, response: Response) -> bool:
        """Answer a challenge: the first of a round always (a refresh replays the last
        nonce, which the registrar may have retired without saying ``stale``), later ones
        only as ``DigestSession`` allows (credentials refused: give up), at most
        MAX_ANSWERS a round."""
        if self._digest is None or self._answers >= MAX_ANSWERS:
            return False
        sent = credentials_in(request) if self._answers else ()
        if not self._digest.accept(challenges_in(response), sent=sent):
            return False
        self._answers += 1
        return True

    def _raise_expires(self, response: Response) -> bool:
        minimum = response.min_expires
        if minimum is None or minimum <= self.expires or minimum > MAX_EXPIRES:
            return False
        self.expires = minimum
        return True

    def _registered(self, response: Response, now: float) -> None:
        granted = self._granted(response)
        if granted <= 0:
            self._failed(response.status, "the registrar kept no binding for our Contact", now)
            return
        self.state = RegistrationState.REGISTERED
        self.failures = 0
        self.granted = granted
        self.expires_at = now + granted
        self._next_at = now + max(granted / 2, granted - 32)
        self._events.append(ev.Registered(granted, response.status))

    def _granted(self, response: Response) -> int:
        """The lifetime of our binding: its Contact's expires, else the Expires header,
        else what we asked (§10.2.4)."""
        ours = self.config.contact
        for contact in response.contact:
            uri = contact.uri
            if (uri.user, uri.host.lower(), uri.port or 5060) == (
                ours.user,
                ours.host.lower(),
                ours.port or 5060,
            ):
                if contact.expires is not None:
                    return contact.expires
                break
        else:
            if response.contact:
                return 0  # the registrar listed bindings, and ours is not among them
        return response.expires if response.expires is not None else self.expires

    def _failed(
        self, status: int | None, reason: str, now: float, *, retry_after: int | None = None
    ) -> None:
        self.failures += 1
        self.last_status, self.last_reason = status, reason
        if self.state is RegistrationState.UNREGISTERING:
            self._stopped()
            return
        self.state = RegistrationState.FAILED
        self.granted = self.expires_at = None
        window = min(self.config.retry_max, self.config.retry_base * 2 ** (self.failures - 1))
        wait = self.rng.uniform(window / 2, window)
        if retry_after is not None:
            wait = max(wait, float(retry_after))
        self._next_at = now + wait
        self._events.append(ev.RegistrationFailed(status, reason, wait))

    def _stopped(self) -> None:
        self.state = RegistrationState.STOPPED
        self.granted = self.expires_at = None
        self._next_at = None
        self._events.append(ev.Unregistered())
