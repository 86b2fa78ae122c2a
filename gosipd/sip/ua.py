"""The user agent core for one call, sans-I/O: the protocol brain of a gosipd worker.

``UserAgent`` composes transactions (``transaction.py``) and a dialog
(``dialog.py``) the way h2 composes streams under a connection. Datagrams and
the current time go in (``receive``, ``handle_timer``, ``transport_error``);
datagrams to send (``datagrams_to_send``) and events (``events``) come out,
and ``next_timer`` says when to wake it. It never reads a clock, opens a
socket or sleeps; tags, branches and Call-IDs come from an injectable random
source so tests are repeatable.

One worker process handles one call, so one ``UserAgent`` is one call: the
caller side (``invite``) or the called side (an incoming INVITE). The call
as a whole is a state machine whose transitions are the ``CALL_TABLE``
below. Server location and failover stay outside: an INVITE that a
destination did not take is reported as ``AttemptFailed`` and the caller
decides whether to ``retry`` elsewhere (RFC 3263 §4.3) or ``give_up``.

Addresses: requests go to the next hop's numeric address, to an address the
caller registered for its host name (``known_hosts``), to the outbound proxy,
or else back to where the far end's messages came from. Responses go where
RFC 3261 §18.2.2 and RFC 3581 (rport) say.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gosipd import __version__
from gosipd.sip import events as ev
from gosipd.sip.dialog import Dialog, DialogState
from gosipd.sip.digest import Credentials, DigestChallenge, DigestError, DigestSession
from gosipd.sip.requests import ack_for_2xx, cancel_for, with_headers
from gosipd.sip import (
    URI,
    CSeq,
    NameAddr,
    Request,
    Response,
    SIPParseError,
    Via,
    check,
    parse,
)
from gosipd.sip.timers import Timers
from gosipd.sip.transaction import (
    MAGIC_COOKIE,
    ClientInvite,
    ClientNonInvite,
    ClientTransaction,
    ProtocolError,
    ResponseReceived,
    ServerInvite,
    ServerNonInvite,
    ServerTransaction,
    TransactionEvent,
    TransactionTimeout,
    TransportFailure,
    client_key,
    server_key,
)

__all__ = ["CallState", "UAConfig", "UserAgent"]

Address = tuple[str, int]

#: Methods we know but do not serve (answered 405 with Allow); anything else unknown is 501.
KNOWN_UNSERVED = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER"}
)
#: Statuses of an unanswered INVITE that mean "this server, not the call": try another.
FAILOVER_STATUSES = frozenset({408, 500, 502, 503, 504})
#: How many 3xx responses one call follows before it gives up (loops are real).
MAX_REDIRECTS = 5
#: How long a UAS keeps the call's 2xx going out unanswered by ACK (RFC 3261 §13.3.1.4: 64·T1).
DEFAULT_RETRY_AFTER = 60


class CallState(enum.Enum):
    IDLE = "idle"
    CALLING = "calling"  # INVITE sent, nothing heard
    PROCEEDING = "proceeding"  # a provisional arrived
    WAITING = "waiting"  # an attempt failed or was redirected; the caller decides
    CANCELLING = "cancelling"
    INCOMING = "incoming"  # INVITE received, 100 sent
    EARLY = "early"  # we sent a provisional with a tag
    ANSWERED = "answered"  # we sent 2xx, waiting for the ACK
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"  # BYE sent
    TERMINATED = "terminated"


class CallInput(enum.Enum):
    INVITE = "send INVITE"
    RETRY = "retry INVITE elsewhere"
    GIVE_UP = "give up"
    CANCEL = "cancel"
    PROVISIONAL = "provisional received"
    SUCCESS = "2xx received"
    FAILURE = "final failure received"
    ATTEMPT_FAILED = "attempt failed"
    INVITE_RECEIVED = "INVITE received"
    RING = "send provisional"
    ANSWER = "send 2xx"
    REJECT = "send final failure"
    CANCEL_RECEIVED = "CANCEL received"
    ACK_RECEIVED = "ACK received"
    ACK_TIMEOUT = "no ACK for 2xx"
    BYE = "send BYE"
    BYE_RECEIVED = "BYE received"
    BYE_DONE = "BYE answered"


C, K = CallState, CallInput
#: Every transition of the call as a whole. Network inputs the table lacks are
#: answered by the protocol (481, 500, ...) without changing the call.
CALL_TABLE: dict[tuple[CallState, CallInput], CallState] = {
    (C.IDLE, K.INVITE): C.CALLING,
    (C.IDLE, K.INVITE_RECEIVED): C.INCOMING,
    (C.CALLING, K.PROVISIONAL): C.PROCEEDING,
    (C.CALLING, K.SUCCESS): C.CONFIRMED,
    (C.CALLING, K.FAILURE): C.TERMINATED,
    (C.CALLING, K.ATTEMPT_FAILED): C.WAITING,
    (C.CALLING, K.RETRY): C.CALLING,  # auth challenge answered, or failover mid-attempt
    (C.CALLING, K.CANCEL): C.CANCELLING,
    (C.CALLING, K.GIVE_UP): C.TERMINATED,
    (C.PROCEEDING, K.PROVISIONAL): C.PROCEEDING,
    (C.PROCEEDING, K.SUCCESS): C.CONFIRMED,
    (C.PROCEEDING, K.FAILURE): C.TERMINATED,
    (C.PROCEEDING, K.ATTEMPT_FAILED): C.WAITING,
    (C.PROCEEDING, K.RETRY): C.CALLING,
    (C.PROCEEDING, K.CANCEL): C.CANCELLING,
    (C.WAITING, K.RETRY): C.CALLING,
    (C.WAITING, K.GIVE_UP): C.TERMINATED,
    (C.WAITING, K.CANCEL): C.TERMINATED,
    (C.CANCELLING, K.PROVISIONAL): C.CANCELLING,
    (C.CANCELLING, K.SUCCESS): C.TERMINATING,  # the 2xx raced the CANCEL: ACK, then BYE
    (C.CANCELLING, K.FAILURE): C.TERMINATED,
    (C.CANCELLING, K.ATTEMPT_FAILED): C.TERMINATED,
    (C.INCOMING, K.RING): C.EARLY,
    (C.INCOMING, K.ANSWER): C.ANSWERED,
    (C.INCOMING, K.REJECT): C.TERMINATED,
    (C.INCOMING, K.CANCEL_RECEIVED): C.TERMINATED,
    (C.EARLY, K.RING): C.EARLY,
    (C.EARLY, K.ANSWER): C.ANSWERED,
    (C.EARLY, K.REJECT): C.TERMINATED,
    (C.EARLY, K.CANCEL_RECEIVED): C.TERMINATED,
    (C.ANSWERED, K.ACK_RECEIVED): C.CONFIRMED,
    (C.ANSWERED, K.ACK_TIMEOUT): C.TERMINATING,
    (C.ANSWERED, K.BYE_RECEIVED): C.TERMINATED,
    (C.CONFIRMED, K.BYE): C.TERMINATING,
    (C.CONFIRMED, K.BYE_RECEIVED): C.TERMINATED,
    (C.CONFIRMED, K.SUCCESS): C.CONFIRMED,  # a retransmitted or forked 2xx
    (C.TERMINATING, K.BYE_DONE): C.TERMINATED,
    (C.TERMINATING, K.BYE_RECEIVED): C.TERMINATED,
    (C.TERMINATING, K.SUCCESS): C.TERMINATING,
    (C.TERMINATING, K.ACK_RECEIVED): C.TERMINATING,
}
del C, K


@dataclass(frozen=True)
class UAConfig:
    """What one call's user agent needs to know about itself."""

    local_address: Address
    contact_user: str = "gosipd"
    user_agent: str = f"gosipd/{__version__}"
    timers: Timers = field(default_factory=Timers)
    credentials: Credentials | None = None
    outbound_proxy: Address | None = None
    #: Option tags we support (sent in Supported; a Require outside this set gets 420).
    supported: tuple[str, ...] = ("100rel", "timer")
    allow: tuple[str, ...] = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "PRACK", "UPDATE", "INFO")
    accept: tuple[str, ...] = ("application/sdp",)
    #: Send reliable provisionals (RFC 3262) when the caller supports 100rel.
    reliable_provisionals: bool = True
    max_redirects: int = MAX_REDIRECTS


def _token(rng: random.Random, bits: int = 64) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass
class _ReliableProvisional:
    """A provisional we send with 100rel, retransmitted until PRACKed (RFC 3262 §3)."""

    response: Response
    rseq: int
    carries_sdp: bool
    interval: float
    deadline: float
    give_up_at: float


@dataclass
class _PendingSuccess:
    """Our 2xx to an INVITE, retransmitted by the TU until the ACK (§13.3.1.4)."""

    response: Response
    cseq: int
    interval: float
    deadline: float
    give_up_at: float
    wire: bytes = b""


class UserAgent:
    """One call's SIP engine. See the module docstring for the shape of it."""

    def __init__(
        self,
        config: UAConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.timers = config.timers
        self.rng = rng if rng is not None else random.SystemRandom()
        self.state = CallState.IDLE
        self.known_hosts: dict[str, str] = {}
        #: Our address as the far end saw it (received/rport on our Via), for Contact.
        self.public_address: Address = config.local_address
        self.draining = False
        self.malformed = 0
        self.call_id = ""
        self.dialog: Dialog | None = None
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: list[ev.Event] = []
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[object, ...], ServerTransaction] = {}
        self._digest = (
            DigestSession(config.credentials, cnonce_source=lambda: _token(self.rng))
            if config.credentials
            else None
        )
        # caller side
        self._invite: Request | None = None
        self._invite_tx: ClientInvite | None = None
        self._destination: Address | None = None
        self._attempt_heard = False
        self._cancel_pending = False
        self._redirects = 0
        self._early: dict[str, Dialog] = {}
        self._acks: dict[str, bytes] = {}  # ACK bytes per To tag, for 2xx retransmissions
        self._last_failure: tuple[int, str, int | None] | None = None
        self._peer: Address | None = None
        # called side
        self._incoming: Request | None = None
        self._incoming_tx: ServerInvite | None = None
        self._local_tag = ""
        self._rseq = 0
        self._reliable: _ReliableProvisional | None = None
        self._queued_provisionals: list[tuple[Response, bool]] = []
        self._held_success: Response | None = None
        self._success: _PendingSuccess | None = None
        self._hangup_after_ack = False
        # re-INVITE (either side)
        self._reinvite_tx: ClientInvite | None = None
        self._reinvite_sdp: bytes | None = None
        self._glare_retry_at: float | None = None
        self._remote_offer_tx: ServerTransaction | None = None
        self._bye_tx: ClientNonInvite | None = None
        self._end_cause = ""

    # ======================================================================
    # the sans-I/O surface
    # ======================================================================

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = list(self._outbox)
        self._outbox.clear()  # the transactions hold this very list
        return out

    def events(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        deadlines = [
            t
            for t in (
                *(tx.next_timer() for tx in self._clients.values()),
                *(tx.next_timer() for tx in self._servers.values()),
                self._reliable.deadline if self._reliable else None,
                self._success.deadline if self._success else None,
                self._glare_retry_at,
            )
            if t is not None
        ]
        return min(deadlines, default=None)

    @property
    def finished(self) -> bool:
        """The call ended and no transaction still absorbs retransmissions."""
        return self.state is CallState.TERMINATED and not self._clients and not self._servers

    def handle_timer(self, now: float) -> None:
        for key, client in list(self._clients.items()):
            self._on_client_events(client, client.handle_timer(now), now)
            if client.terminated:
                self._clients.pop(key, None)
        for skey, server in list(self._servers.items()):
            self._on_server_events(server, server.handle_timer(now), now)
            if server.terminated:
                self._servers.pop(skey, None)
        self._reliable_timer(now)
        self._success_timer(now)
        if self._glare_retry_at is not None and now >= self._glare_retry_at:
            self._glare_retry_at = None
            if self._reinvite_sdp is not None and self.state is CallState.CONFIRMED:
                self._send_reinvite(self._reinvite_sdp, now)

    def transport_error(self, destination: Address, now: float, reason: str) -> None:
        """The transport could not reach ``destination`` (ICMP unreachable, say)."""
        for key, client in list(self._clients.items()):
            if client.destination == destination and not client.terminated:
                self._on_client_events(client, client.transport_error(now, reason), now)
                if client.terminated:
                    self._clients.pop(key, None)

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """One datagram from ``source``."""
        try:
            message = parse(data)
        except SIPParseError as exc:
            self.malformed += 1
            reply = Response.for_malformed(exc, to_tag=_token(self.rng))
            if reply is not None:
                via = reply.top_via
                self._outbox.append((bytes(reply), self._via_reply_address(via, source)))
            return
        if isinstance(message, Response):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, now)

    # ======================================================================
    # caller side: INVITE, retry, cancel
    # ======================================================================

    def invite(
        self,
        request_uri: URI,
        *,
        destination: Address,
        from_: NameAddr,
        now: float,
        to: NameAddr | None = None,
        sdp: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        call_id: str | None = None,
    ) -> Request:
        """Start the call: send an INVITE to ``destination``."""
        self._transition(CallInput.INVITE)
        self.call_id = call_id or f"{_token(self.rng, 128)}@gosipd"
        self._local_tag = _token(self.rng)
        header_list: list[tuple[str, str]] = [
            ("Max-Forwards", "70"),
            ("From", str(from_.with_tag(self._local_tag))),
            ("To", str(to if to is not None else NameAddr(request_uri))),
            ("Call-ID", self.call_id),
            ("CSeq", str(CSeq(1, "INVITE"))),
            ("Contact", str(self._contact())),
            ("Allow", ", ".join(self.config.allow)),
            ("Supported", ", ".join(self.config.supported)),
            ("User-Agent", self.config.user_agent),
            *headers,
        ]
        if sdp is not None:
            header_list.append(("Content-Type", "application/sdp"))
        self._invite = Request("INVITE", request_uri, header_list, sdp or b"")
        self._send_invite_attempt(destination, now)
        return self._invite

    def retry(self, destination: Address, now: float, *, request_uri: URI | None = None) -> None:
        """Send the INVITE again, to another destination or Request-URI (failover, 3xx).

        A new client transaction with a new branch and the next CSeq, as a
        new attempt of the same call (RFC 3263 §4.3, RFC 3261 §8.1.3.4).
        """
        self._transition(CallInput.RETRY)
        assert self._invite is not None
        if self._invite_tx is not None:
            self._invite_tx.terminate()
        request = self._invite.copy()
        if request_uri is not None:
            request.uri = request_uri
        request.cseq = CSeq(request.cseq.number + 1, "INVITE")
        self._invite = request
        self._send_invite_attempt(destination, now)

    def give_up(self, now: float, *, cause: str = "failed") -> None:
        """Stop trying after ``AttemptFailed`` or ``Redirected``: the call fails."""
        self._transition(CallInput.GIVE_UP)
        if self._invite_tx is not None:
            self._invite_tx.terminate()
        status, reason, retry_after = self._last_failure or (408, "Request Timeout", None)
        self._events.append(ev.Failed(status, reason, retry_after))
        self._end(cause, status, reason)

    def cancel(self, now: float) -> None:
        """Abandon an unanswered INVITE (RFC 3261 §9.1: CANCEL only after a provisional)."""
        if self.state is CallState.WAITING:
            self._transition(CallInput.CANCEL)
            self._events.append(ev.Failed(487, "Request Terminated"))
            self._end("cancelled", 487, "Request Terminated")
            return
        heard = self.state is CallState.PROCEEDING
        self._transition(CallInput.CANCEL)
        if heard:
            self._send_cancel(now)
        else:
            self._cancel_pending = True

    def _send_invite_attempt(self, destination: Address, now: float) -> None:
        assert self._invite is not None
        self._destination = destination
        self._attempt_heard = False
        request = self._invite.copy()
        request.via = [self._via()]
        for name in ("Authorization", "Proxy-Authorization"):
            request.headers.remove(name)
        if self._digest is not None:
            for name, value in self._digest.headers_for(
                method="INVITE", uri=str(request.uri), body=request.body
            ):
                request.headers.add(name, value)
        self._invite = request
        tx = ClientInvite(request, destination, self.timers, self._outbox, now)
        self._invite_tx = tx
        self._clients[tx.key] = tx

    def _send_cancel(self, now: float) -> None:
        assert self._invite is not None and self._invite_tx is not None
        cancel = cancel_for(self._invite)
        tx = ClientNonInvite(cancel, self._invite_tx.destination, self.timers, self._outbox, now)
        self._clients[tx.key] = tx
        self._cancel_pending = False

    def _on_invite_response(self, response: Response, source: Address, now: float) -> None:
        status = response.status
        self._peer = source
        self._learn_public_address(response)
        if status < 200:
            self._on_invite_provisional(response, now)
        elif status < 300:
            self._on_invite_success(response, now)
        else:
            self._on_invite_failure(response, now)

    def _on_invite_provisional(self, response: Response, now: float) -> None:
        if self.state is CallState.WAITING:
            return
        first = not self._attempt_heard
        self._attempt_heard = True
        if self.state in (CallState.CALLING, CallState.PROCEEDING, CallState.CANCELLING):
            self._transition(CallInput.PROVISIONAL)
        if self._cancel_pending:
            self._send_cancel(now)
        if response.status == 100 or response.to.tag is None:
            if first or response.status == 100:
                self._events.append(ev.Trying(response.status, self._destination))
            return
        dialog = self._early_dialog(response)
        reliable = "100rel" in response.require and response.rseq is not None
        if reliable:
            if not self._prack(dialog, response, now):
                return  # a retransmission, or out of order: not news
        if self.state is CallState.CANCELLING:
            return
        sdp = response.sdp
        if sdp:
            self._events.append(ev.EarlyMedia(response.status, sdp, reliable))
        else:
            self._events.append(ev.Ringing(response.status, response.reason, reliable))

    def _early_dialog(self, response: Response) -> Dialog:
        assert self._invite is not None and response.to.tag is not None
        dialog = self._early.get(response.to.tag)
        if dialog is None:
            dialog = Dialog.for_uac(self._invite, response)
            self._early[response.to.tag] = dialog
        else:
            dialog.refresh_target(response)
        return dialog

    def _prack(self, dialog: Dialog, response: Response, now: float) -> bool:
        """Acknowledge a reliable provisional in order (RFC 3262 §4); True if it is new."""
        rseq = response.rseq
        assert rseq is not None
        if dialog.last_rseq is not None and rseq != dialog.last_rseq + 1:
            return False
        dialog.last_rseq = rseq
        rack = f"{rseq} {response.cseq.number} {response.cseq.method}"  # RFC 3262 §7.2
        self._send_in_dialog(dialog, "PRACK", now, headers=[("RAck", rack)])
        return True

    def _on_invite_success(self, response: Response, now: float) -> None:
        tag = response.to.tag or ""
        if tag in self._acks:
            # a retransmitted 2xx: its ACK was lost (RFC 3261 §13.2.2.4)
            assert self._peer is not None
            dialog = self.dialog if self.dialog and self.dialog.remote_tag == tag else None
            self._outbox.append((self._acks[tag], self._hop_address(dialog)))
            return
        assert self._invite is not None
        dialog = self._early.pop(tag, None) or Dialog.for_uac(self._invite, response)
        dialog.state = DialogState.CONFIRMED
        dialog.remote_target = (
            response.contact[0].uri if response.contact else dialog.remote_target
        )
        dialog.route_set = tuple(reversed(response.record_route))
        dialog.local_seq = max(dialog.local_seq, self._invite.cseq.number)
        self._send_ack(dialog, response, now)
        if self.state in (CallState.CONFIRMED, CallState.TERMINATING):
            # another fork answered too: we keep one call, so hang this one up
            self._send_in_dialog(dialog, "BYE", now)
            return
        if self.state is CallState.CANCELLING:
            self._transition(CallInput.SUCCESS)
            self.dialog = dialog
            self._send_bye(now)
            self._end_cause = "cancelled"
            return
        self._transition(CallInput.SUCCESS)
        self.dialog = dialog
        self._early.clear()
        self._events.append(ev.Answered(response.sdp, response.status))

    def _send_ack(self, dialog: Dialog, response: Response, now: float) -> None:
        """ACK for a 2xx: a new transaction of its own, sent by the TU (§13.2.2.4)."""
        assert self._invite is not None
        ack = ack_for_2xx(dialog, self._invite.cseq.number, self._via(), invite=self._invite)
        wire = bytes(ack)
        self._acks[response.to.tag or ""] = wire
        self._outbox.append((wire, self._hop_address(dialog)))

    def _on_invite_failure(self, response: Response, now: float) -> None:
        status = response.status
        retry_after = response.retry_after.seconds if response.retry_after else None
        self._last_failure = (status, response.reason, retry_after)
        if self.state is CallState.CANCELLING:
            self._transition(CallInput.FAILURE)
            self._events.append(ev.Failed(status, response.reason))
            self._end("cancelled", status, response.reason)
            return
        if status in (401, 407) and self._answer_challenge(response, now):
            return
        if 300 <= status < 400 and response.contact:
            self._redirects += 1
            if self._redirects <= self.config.max_redirects:
                contacts = tuple(c.uri for c in sorted(response.contact, key=_q_order))  # noqa: F841
                self._transition(CallInput.ATTEMPT_FAILED)
                self._events.append(ev.Redirected(status, contacts))
                return
        if status in FAILOVER_STATUSES and not self._attempt_heard_provisional():
            assert self._destination is not None
            self._transition(CallInput.ATTEMPT_FAILED)
            self._events.append(
                ev.AttemptFailed(self._destination, "status", status, retry_after)
            )
            return
        self._transition(CallInput.FAILURE)
        self._events.append(ev.Failed(status, response.reason, retry_after))
        self._end(_cause_of(status), status, response.reason)

    def _attempt_heard_provisional(self) -> bool:
        return self.state is CallState.PROCEEDING

    def _answer_challenge(self, response: Response, now: float) -> bool:
        if self._digest is None or self._invite is None:
            return False
        challenges = []
        for proxy, values in (
            (False, response.www_authenticate),
            (True, response.proxy_authenticate),
        ):
            for challenge in values:
                try:
                    challenges.append(
                        DigestChallenge.from_params(challenge.scheme, challenge.params, proxy=proxy)
                    )
                except DigestError:
                    continue
        request = self._invite
        answer = self._digest.answer(
            challenges, method="INVITE", uri=str(request.uri), body=request.body
        )
        if answer is None:
            return False
        self._events.append(
            ev.AuthChallenged(response.status, tuple(sorted({c.realm for c in challenges})))
        )
        assert self._destination is not None
        # the attempt adds the answered credentials (headers_for) to a fresh copy
        self._transition(CallInput.RETRY)
        request = request.copy()
        request.cseq = CSeq(request.cseq.number + 1, "INVITE")
        self._invite = request
        self._send_invite_attempt(self._destination, now)
        return True

    # ======================================================================
    # called side: ring, answer, reject
    # ======================================================================

    def ring(self, now: float, *, status: int = 180, sdp: bytes | None = None,
             reliable: bool | None = None) -> None:
        """Send a provisional (180 Ringing, or 183 with early-media SDP)."""
        if not 101 <= status <= 199:
            raise ValueError(f"a provisional status is 101-199, got {status}")
        self._transition(CallInput.RING)
        assert self._incoming is not None
        wants_reliable = (
            self.config.reliable_provisionals
            and (
                "100rel" in self._incoming.supported or "100rel" in self._incoming.require
            )
        )
        if reliable is None:
            reliable = wants_reliable or "100rel" in self._incoming.require
        response = self._response(self._incoming, status, sdp=sdp)
        if reliable:
            if self._reliable is not None:
                self._queued_provisionals.append((response, True))
                return
            self._send_reliable(response, now)
        else:
            self._respond_invite(response, now)

    def answer(self, now: float, *, sdp: bytes | None) -> None:
        """Accept the call with a 2xx (held until the PRACK of an offer-carrying 1xx)."""
        self._transition(CallInput.ANSWER)
        assert self._incoming is not None
        response = self._response(self._incoming, 200, sdp=sdp)
        if self._reliable is not None and self._reliable.carries_sdp:
            self._held_success = response
            return
        self._send_success(response, now)

    def reject(self, now: float, status: int = 486, reason: str | None = None, *,
               retry_after: int | None = None) -> None:
        """Refuse the call with a final 3xx-6xx."""
        if not 300 <= status <= 699:
            raise ValueError(f"a rejection status is 300-699, got {status}")
        self._transition(CallInput.REJECT)
        assert self._incoming is not None
        response = self._response(self._incoming, status, reason)
        if retry_after is not None:
            response.headers.set("Retry-After", str(retry_after))
        self._reliable = None
        self._respond_invite(response, now)
        self._events.append(ev.Failed(status, response.reason))
        self._end("rejected", status, response.reason)

    def _incoming_invite(self, request: Request, source: Address, now: float) -> None:
        reply_to = self._reply_address(request, source)
        if self.state is not CallState.IDLE:
            self._server_reply(request, reply_to, now, 486, "Busy Here")
            return
        if self.draining:
            self._server_reply(
                request, reply_to, now, 503, "Service Unavailable",
                headers=[("Retry-After", str(DEFAULT_RETRY_AFTER))],
            )
            return
        self._transition(CallInput.INVITE_RECEIVED)
        self._peer = source
        self.call_id = request.call_id
        self._local_tag = _token(self.rng)
        self._incoming = request
        tx = ServerInvite(request, reply_to, self.timers, self._outbox, now)
        self._incoming_tx = tx
        self._servers[tx.key] = tx
        tx.respond(Response.for_request(request, 100), now)
        self._events.append(ev.IncomingCall(request, request.sdp))

    def _response(self, request: Request, status: int, reason: str | None = None, *,
                  sdp: bytes | None = None) -> Response:
        headers: list[tuple[str, str]] = []
        if status > 100:
            headers.append(("Contact", str(self._contact())))
        if 200 <= status < 300 or status in (405, 501):
            headers.append(("Allow", ", ".join(self.config.allow)))
        if 200 <= status < 300:
            headers.append(("Supported", ", ".join(self.config.supported)))
        headers.append(("Server", self.config.user_agent))
        tag = self._local_tag if status > 100 else None
        response = Response.for_request(request, status, reason, to_tag=tag)
        with_headers(response, headers)
        if sdp is not None:
            response.set_body(sdp, "application/sdp")
        return response

    def _respond_invite(self, response: Response, now: float) -> None:
        assert self._incoming_tx is not None
        if self.dialog is None and 100 < response.status < 300:
            assert self._incoming is not None
            self.dialog = Dialog.for_uas(self._incoming, self._local_tag, self._contact())
        self._incoming_tx.respond(response, now)

    def _send_reliable(self, response: Response, now: float) -> None:
        self._rseq = self._rseq + 1 if self._rseq else self.rng.randint(1, 2**31 - 1)
        response = response.copy()
        with_headers(response, [("Require", "100rel"), ("RSeq", str(self._rseq))])
        self._reliable = _ReliableProvisional(
            response,
            self._rseq,
            carries_sdp=bool(response.body),
            interval=self.timers.t1,
            deadline=now + self.timers.t1,
            give_up_at=now + 64 * self.timers.t1,
        )
        self._respond_invite(response, now)

    def _reliable_timer(self, now: float) -> None:
        pending = self._reliable
        if pending is None or now < pending.deadline:
            return
        if now >= pending.give_up_at:
            # RFC 3262 §3: no PRACK in 64·T1, reject the INVITE with a 5xx
            self._reliable = None
            self._held_success = None
            if self.state in (CallState.EARLY, CallState.ANSWERED):
                self.state = CallState.EARLY
                self.reject(now, 504, "No PRACK Received")
            return
        pending.interval *= 2
        pending.deadline = now + pending.interval
        assert self._incoming_tx is not None
        self._outbox.append((bytes(pending.response), self._incoming_tx.reply_to))

    def _on_prack(self, request: Request, tx: ServerTransaction, now: float) -> None:
        pending = self._reliable
        rack = request.rack
        if (
            pending is None
            or rack is None
            or (rack.rseq, rack.cseq, rack.method)
            != (pending.rseq, self._incoming.cseq.number if self._incoming else -1, "INVITE")
        ):
            tx.respond(self._response(request, 481, "No Matching Provisional"), now)
            return
        self._reliable = None
        tx.respond(self._response(request, 200), now)
        if self._queued_provisionals:
            response, _ = self._queued_provisionals.pop(0)
            self._send_reliable(response, now)
        elif self._held_success is not None:
            held, self._held_success = self._held_success, None
            self._send_success(held, now)

    def _send_success(self, response: Response, now: float) -> None:
        # a final response ends the retransmission of reliable provisionals (RFC 3262 §3)
        self._reliable = None
        self._queued_provisionals.clear()
        self._respond_invite(response, now)
        if self.dialog is not None:
            self.dialog.state = DialogState.CONFIRMED
        self._success = _PendingSuccess(
            response,
            response.cseq.number,
            interval=self.timers.t1,
            deadline=now + self.timers.t1,
            give_up_at=now + 64 * self.timers.t1,
            wire=bytes(response),
        )

    def _success_timer(self, now: float) -> None:
        pending = self._success
        if pending is None or now < pending.deadline:
            return
        if now >= pending.give_up_at:
            self._success = None
            if self.state is CallState.ANSWERED:
                self._transition(CallInput.ACK_TIMEOUT)
                self._send_bye(now, already_terminating=True)
                self._end_cause = "ack_timeout"
            elif self.state is CallState.CONFIRMED and self._remote_offer_tx is not None:
                self._remote_offer_tx = None
                self.hangup(now)
            return
        pending.interval = min(pending.interval * 2, self.timers.t2)
        pending.deadline = now + pending.interval
        reply_to = (
            self._incoming_tx.reply_to if self._incoming_tx is not None else self._peer
        )
        assert reply_to is not None
        self._outbox.append((pending.wire, reply_to))

    def _on_ack(self, request: Request, now: float) -> None:
        pending = self._success
        if pending is None or request.cseq.number != pending.cseq:
            return
        self._success = None
        if self.state is CallState.ANSWERED:
            self._transition(CallInput.ACK_RECEIVED)
            self._events.append(ev.AckReceived(request.sdp))
            if self._hangup_after_ack:
                self.hangup(now)
        elif self._remote_offer_tx is not None:
            self._remote_offer_tx = None
            if request.sdp:
                self._events.append(ev.OfferAnswered(request.sdp))

    # ======================================================================
    # the dialog: BYE, re-INVITE, INFO, ...
    # ======================================================================

    def hangup(self, now: float) -> None:
        """End the call whatever its state: CANCEL, reject, or BYE as the state needs."""
        match self.state:
            case CallState.CALLING | CallState.PROCEEDING | CallState.WAITING:
                self.cancel(now)
            case CallState.INCOMING | CallState.EARLY:
                self.reject(now, 480, "Temporarily Unavailable")
            case CallState.ANSWERED:
                self._hangup_after_ack = True
            case CallState.CONFIRMED:
                self._transition(CallInput.BYE)
                self._send_bye(now, already_terminating=True)
                self._end_cause = "local_hangup"
            case _:
                pass

    def reinvite(self, sdp: bytes, now: float) -> None:
        """Offer new SDP in the dialog (hold, resume, a new media address)."""
        if self.state is not CallState.CONFIRMED or self.dialog is None:
            raise ProtocolError(f"cannot re-INVITE in state {self.state.value}")
        if self._reinvite_tx is not None or self._remote_offer_tx is not None:
            raise ProtocolError("an offer/answer exchange is already in progress")
        self._reinvite_sdp = sdp
        self._send_reinvite(sdp, now)

    def _send_reinvite(self, sdp: bytes, now: float) -> None:
        assert self.dialog is not None
        tx = self._send_in_dialog(
            self.dialog,
            "INVITE",
            now,
            headers=[("Content-Type", "application/sdp")],
            body=sdp,
        )
        assert isinstance(tx, ClientInvite)
        self._reinvite_tx = tx

    def answer_offer(self, sdp: bytes | None, now: float) -> None:
        """Answer the far end's re-INVITE or UPDATE (``RemoteOffer``) with 200 and our SDP."""
        tx = self._remote_offer_tx
        if tx is None:
            raise ProtocolError("there is no remote offer to answer")
        response = self._response(tx.request, 200, sdp=sdp)
        if tx.request.method == "INVITE":
            tx.respond(response, now)
            self._success = _PendingSuccess(
                response,
                response.cseq.number,
                interval=self.timers.t1,
                deadline=now + self.timers.t1,
                give_up_at=now + 64 * self.timers.t1,
                wire=bytes(response),
            )
        else:
            tx.respond(response, now)
            self._remote_offer_tx = None

    def reject_offer(self, now: float, status: int = 488) -> None:
        """Refuse the far end's new offer; the session stays as it was."""
        tx = self._remote_offer_tx
        if tx is None:
            raise ProtocolError("there is no remote offer to reject")
        self._remote_offer_tx = None
        tx.respond(self._response(tx.request, status), now)

    def _send_bye(self, now: float, *, already_terminating: bool = False) -> None:
        assert self.dialog is not None
        tx = self._send_in_dialog(self.dialog, "BYE", now)
        assert isinstance(tx, ClientNonInvite)
        self._bye_tx = tx

    def _send_in_dialog(
        self,
        dialog: Dialog,
        method: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> ClientTransaction:
        """Build and send a request within ``dialog`` (§12.2.1.1)."""
        request_uri, routes = dialog.request_uri_and_route()
        header_list: list[tuple[str, str]] = [
            ("Via", str(self._via())),
            ("Max-Forwards", "70"),
            ("From", str(dialog.local_party)),
            ("To", str(dialog.remote_party.with_tag(dialog.remote_tag))),
            ("Call-ID", dialog.call_id),
            ("CSeq", str(CSeq(dialog.next_cseq(), method))),
            *(("Route", str(route)) for route in routes),
        ]
        if method in ("INVITE", "UPDATE"):
            header_list += [
                ("Contact", str(self._contact())),
                ("Allow", ", ".join(self.config.allow)),
                ("Supported", ", ".join(self.config.supported)),
            ]
        header_list += [("User-Agent", self.config.user_agent), *headers]
        if self._digest is not None:
            header_list += self._digest.headers_for(method=method, uri=str(request_uri), body=body)
        request = Request(method, request_uri, header_list, body)
        destination = self._hop_address(dialog)
        tx: ClientTransaction
        if method == "INVITE":
            tx = ClientInvite(request, destination, self.timers, self._outbox, now)
        else:
            tx = ClientNonInvite(request, destination, self.timers, self._outbox, now)
        self._clients[tx.key] = tx
        return tx

    def _on_in_dialog_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        method = tx.request.method
        self._learn_public_address(response)
        if response.status < 200:
            return
        if method == "BYE" and tx is self._bye_tx:
            if response.status in (401, 407) and self._retry_bye_with_auth(response, now):
                return
            self._bye_done()
        elif method == "INVITE" and tx is self._reinvite_tx:
            self._on_reinvite_response(response, now)

    def _retry_bye_with_auth(self, response: Response, now: float) -> bool:
        if self._digest is None or self.dialog is None:
            return False
        challenges = [
            DigestChallenge.from_params(challenge.scheme, challenge.params, proxy=proxy)
            for proxy, values in (
                (False, response.www_authenticate),
                (True, response.proxy_authenticate),
            )
            for challenge in values
            if challenge.scheme.lower() == "digest"
        ]
        request_uri, _ = self.dialog.request_uri_and_route()
        if self._digest.answer(challenges, method="BYE", uri=str(request_uri)) is None:
            return False
        self._send_bye(now)
        return True

    def _bye_done(self) -> None:
        self._bye_tx = None
        if self.state is CallState.TERMINATING:
            self._transition(CallInput.BYE_DONE)
            self._end(self._end_cause or "local_hangup", None, "")

    def _on_reinvite_response(self, response: Response, now: float) -> None:
        assert self.dialog is not None
        status = response.status
        if 200 <= status < 300:
            tag = response.to.tag or ""
            self._acks.pop(tag, None)
            self.dialog.refresh_target(response)
            self._send_ack_reinvite(response, now)
            self._reinvite_tx = None
            self._reinvite_sdp = None
            self._events.append(ev.OfferAnswered(response.sdp))
            return
        self._reinvite_tx = None
        if status == 491:
            # glare (§14.1): the Call-ID owner waits 2.1-4 s, the other 0-2 s
            owner = self._invite is not None
            wait = self.rng.uniform(2.1, 4.0) if owner else self.rng.uniform(0.0, 2.0)
            self._glare_retry_at = now + wait
            return
        self._reinvite_sdp = None
        if status in (408, 481):
            self._events.append(ev.OfferRejected(status, response.reason))
            self.hangup(now)
            return
        self._events.append(ev.OfferRejected(status, response.reason))

    def _send_ack_reinvite(self, response: Response, now: float) -> None:
        assert self.dialog is not None
        wire = bytes(ack_for_2xx(self.dialog, response.cseq.number, self._via()))
        self._acks[response.to.tag or ""] = wire
        self._outbox.append((wire, self._hop_address(self.dialog)))

    # ======================================================================
    # receiving
    # ======================================================================

    def _receive_response(self, response: Response, source: Address, now: float) -> None:
        if not response.via:
            self.malformed += 1
            return
        key = client_key(response.via[0].branch or "", response.cseq.method)
        tx = self._clients.get(key)
        if tx is None:
            self._stray_response(response, source, now)
            return
        self._on_client_events(tx, tx.receive(response, now), now, source)
        if tx.terminated:
            self._clients.pop(key, None)

    def _stray_response(self, response: Response, source: Address, now: float) -> None:
        """A response no transaction wants: re-ACK a 2xx of ours, drop anything else."""
        if (
            200 <= response.status < 300
            and response.cseq.method == "INVITE"
            and response.call_id == self.call_id
            and (response.to.tag or "") in self._acks
        ):
            self._outbox.append((self._acks[response.to.tag or ""], self._hop_address(self.dialog)))

    def _on_client_events(
        self,
        tx: ClientTransaction,
        events: list[TransactionEvent],
        now: float,
        source: Address | None = None,
    ) -> None:
        for event in events:
            if isinstance(event, ResponseReceived):
                if tx is self._invite_tx:
                    self._on_invite_response(event.response, source or tx.destination, now)
                else:
                    self._on_in_dialog_response(tx, event.response, now)
            elif isinstance(event, TransactionTimeout | TransportFailure):
                self._on_client_failure(tx, event, now)

    def _on_client_failure(self, tx: ClientTransaction, event: TransactionEvent, now: float) -> None:
        reason = "timeout" if isinstance(event, TransactionTimeout) else "transport"
        if tx is self._invite_tx:
            if self.state is CallState.CANCELLING:
                self._transition(CallInput.ATTEMPT_FAILED)
                self._events.append(ev.Failed(487, "Request Terminated"))
                self._end("cancelled", 487, "Request Terminated")
            elif self.state in (CallState.CALLING, CallState.PROCEEDING):
                self._last_failure = (408, "Request Timeout", None) if reason == "timeout" else (
                    503, "Service Unavailable", None
                )
                self._transition(CallInput.ATTEMPT_FAILED)
                self._events.append(ev.AttemptFailed(tx.destination, reason))
        elif tx is self._bye_tx:
            self._bye_done()
        elif tx is self._reinvite_tx:
            self._reinvite_tx = None
            self._events.append(ev.OfferRejected(408, "Request Timeout"))
            self.hangup(now)

    def _on_server_events(
        self, tx: ServerTransaction, events: list[TransactionEvent], now: float
    ) -> None:
        for event in events:
            if isinstance(event, TransactionTimeout) and tx is self._incoming_tx:
                # Timer H: our failure response was never ACKed; the call is over anyway
                continue

    def _receive_request(self, request: Request, source: Address, now: float) -> None:
        rejection = check(request, supported=self.config.supported, accept=self.config.accept)
        if rejection is not None:
            self.malformed += 1
            if request.method != "ACK" and request.top_via is not None:
                reply_to = self._reply_address(request, source)
                self._server_reply(
                    request, reply_to, now, rejection.status, rejection.reason,
                    headers=rejection.headers,
                )
            return
        request = self._stamp_via(request, source)
        reply_to = self._reply_address(request, source)
        key = server_key(request)
        tx = self._servers.get(key)
        if tx is not None:
            if request.method == "ACK" and key[0] == "2543" and tx.to_tag != request.to.tag:
                tx = None
            else:
                self._on_server_events(tx, tx.receive_request(request, now), now)
                if tx.terminated:
                    self._servers.pop(key, None)
                return
        match request.method:
            case "ACK":
                if self.dialog is not None and self._in_dialog(request):
                    self._on_ack(request, now)
            case "CANCEL":
                self._on_cancel(request, reply_to, now)
            case _ if request.to.tag is not None:
                self._in_dialog_request(request, reply_to, now)
            case "INVITE":
                if self._merged(request):
                    self._server_reply(request, reply_to, now, 482, "Loop Detected")
                else:
                    self._incoming_invite(request, source, now)
            case "OPTIONS":
                if self.draining:
                    self._server_reply(
                        request, reply_to, now, 503, "Service Unavailable",
                        headers=[("Retry-After", str(DEFAULT_RETRY_AFTER))],
                    )
                else:
                    self._server_reply(request, reply_to, now, 200, None, headers=[
                        ("Accept", ", ".join(self.config.accept)),
                    ])
            case method if method in KNOWN_UNSERVED:
                self._server_reply(request, reply_to, now, 405, "Method Not Allowed")
            case _:
                self._server_reply(request, reply_to, now, 501, "Not Implemented")

    def _merged(self, request: Request) -> bool:
        """An INVITE we already hold under another branch: a fork looping back (§8.2.2.2)."""
        held = self._incoming
        return (
            held is not None
            and held.call_id == request.call_id
            and held.from_.tag == request.from_.tag
            and held.cseq == request.cseq
            and held.via[0].branch != request.via[0].branch
        )

    def _in_dialog(self, request: Request) -> bool:
        dialog = self.dialog
        return (
            dialog is not None
            and request.call_id == dialog.call_id
            and request.to.tag == dialog.local_tag
            and request.from_.tag == dialog.remote_tag
        )

    def _in_dialog_request(self, request: Request, reply_to: Address, now: float) -> None:
        dialog = self.dialog
        early = None
        if not self._in_dialog(request):
            if request.method == "PRACK" and self._incoming is not None:
                # PRACK arrives in the early dialog our reliable 1xx created
                early = dialog
            else:
                self._server_reply(
                    request, reply_to, now, 481, "Call/Transaction Does Not Exist"
                )
                return
        if dialog is None:
            self._server_reply(request, reply_to, now, 481, "Call/Transaction Does Not Exist")
            return
        if not dialog.accept_remote_cseq(request):
            self._server_reply(
                request, reply_to, now, 500, "Out of Order CSeq",
                headers=[("Retry-After", str(self.rng.randint(1, 10)))],
            )
            return
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = ServerInvite(request, reply_to, self.timers, self._outbox, now)
        else:
            tx = ServerNonInvite(request, reply_to, self.timers, self._outbox, now)
        self._servers[tx.key] = tx
        del early
        match request.method:
            case "BYE":
                tx.respond(self._response(request, 200), now)
                if self.state in (
                    CallState.CONFIRMED, CallState.ANSWERED, CallState.TERMINATING
                ):
                    self._success = None
                    self._transition(CallInput.BYE_RECEIVED)
                    self._end("remote_hangup", None, "")
            case "PRACK":
                self._on_prack(request, tx, now)
            case "INVITE" | "UPDATE":
                self._on_remote_offer(request, tx, now)
            case "INFO":
                tx.respond(self._response(request, 200), now)
                self._events.append(
                    ev.InfoReceived(request.headers.get("Content-Type"), request.body)
                )
            case "OPTIONS":
                tx.respond(self._response(request, 200), now)
            case method if method in KNOWN_UNSERVED:
                tx.respond(self._response(request, 405, "Method Not Allowed"), now)
            case _:
                tx.respond(self._response(request, 501, "Not Implemented"), now)

    def _on_remote_offer(self, request: Request, tx: ServerTransaction, now: float) -> None:
        if self._reinvite_tx is not None or self._remote_offer_tx is not None:
            tx.respond(self._response(request, 491, "Request Pending"), now)
            return
        if self.state is not CallState.CONFIRMED:
            tx.respond(self._response(request, 500, "Not Now"), now)
            return
        assert self.dialog is not None
        self.dialog.refresh_target(request)
        if request.method == "INVITE":
            tx.respond(Response.for_request(request, 100), now)
        self._remote_offer_tx = tx
        self._events.append(ev.RemoteOffer(request.sdp, request.method))

    def _on_cancel(self, request: Request, reply_to: Address, now: float) -> None:
        """CANCEL matches the INVITE's server transaction by branch (§9.2)."""
        invite_tx = self._incoming_tx
        matches = (
            invite_tx is not None
            and invite_tx.request.via[0].branch == request.via[0].branch
            and invite_tx.request.call_id == request.call_id
        )
        if not matches:
            self._server_reply(request, reply_to, now, 481, "Call/Transaction Does Not Exist")
            return
        assert invite_tx is not None and self._incoming is not None
        self._server_reply(request, reply_to, now, 200, None)
        if self.state in (CallState.INCOMING, CallState.EARLY):
            self._transition(CallInput.CANCEL_RECEIVED)
            self._reliable = None
            self._held_success = None
            invite_tx.respond(self._response(self._incoming, 487, "Request Terminated"), now)
            self._events.append(ev.CancelReceived())
            self._end("cancelled", 487, "Request Terminated")

    def _server_reply(
        self,
        request: Request,
        reply_to: Address,
        now: float,
        status: int,
        reason: str | None,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer a request through a server transaction of its own (absorbs retransmits)."""
        if request.method == "ACK":
            return
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = ServerInvite(request, reply_to, self.timers, self._outbox, now)
        else:
            tx = ServerNonInvite(request, reply_to, self.timers, self._outbox, now)
        self._servers[tx.key] = tx
        tag = _token(self.rng) if status > 100 and _to_tag(request) is None else None
        response = Response.for_request(request, status, reason, to_tag=tag)
        extra = list(headers)
        names = {name.lower() for name, _ in extra}
        if (status in (405, 501) or (status == 200 and request.method == "OPTIONS")) and (
            "allow" not in names
        ):
            extra += [
                ("Allow", ", ".join(self.config.allow)),
                ("Supported", ", ".join(self.config.supported)),
            ]
        extra.append(("Server", self.config.user_agent))
        with_headers(response, extra)
        tx.respond(response, now)

    # ======================================================================
    # helpers
    # ======================================================================

    def _transition(self, input_: CallInput) -> None:
        try:
            self.state = CALL_TABLE[(self.state, input_)]
        except KeyError:
            raise ProtocolError(
                f"call in state {self.state.value} cannot {input_.value}"
            ) from None

    def _end(self, cause: str, status: int | None, reason: str) -> None:
        self.state = CallState.TERMINATED
        self._success = None
        self._reliable = None
        self._events.append(ev.Ended(cause, status, reason))

    def _via(self) -> Via:
        host, port = self.config.local_address
        return Via("UDP", host, port, branch=f"{MAGIC_COOKIE}{_token(self.rng)}", rport=True)

    def _contact(self) -> NameAddr:
        host, port = self.public_address
        return NameAddr(URI(scheme="sip", user=self.config.contact_user, host=host, port=port))

    def _learn_public_address(self, response: Response) -> None:
        """RFC 3581: the received/rport on our Via say how the far end sees us."""
        via = response.top_via
        if via is None:
            return
        host = via.received or self.public_address[0]
        port = via.rport if via.rport is not None else self.public_address[1]
        self.public_address = (host, port)

    def _stamp_via(self, request: Request, source: Address) -> Request:
        """§18.2.1 received, RFC 3581 rport: note on the top Via where it really came from."""
        via = request.top_via
        if via is None:
            return request
        received = source[0] if via.host != source[0] else via.received
        rport = source[1] if via.has_rport and via.rport is None else via.rport
        if received == via.received and rport == via.rport:
            return request
        stamped = request.copy()
        changes: dict[str, str] = {}
        if received is not None:
            changes["received"] = received
        if rport is not None:
            changes["rport"] = str(rport)
        stamped.via = [via.with_params(**changes), *request.via[1:]]
        return stamped

    def _reply_address(self, request: Request, source: Address) -> Address:
        return self._via_reply_address(request.top_via, source)

    @staticmethod
    def _via_reply_address(via: Via | None, source: Address) -> Address:
        """Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4)."""
        if via is None:
            return source
        if via.maddr:
            return (via.maddr, via.port or 5060)
        if via.has_rport:
            return (via.received or source[0], via.rport or source[1])
        host = via.received or via.host
        if not _is_ip(host):
            host = source[0]
        return (host, via.port or 5060)

    def _hop_address(self, dialog: Dialog | None) -> Address:
        """Where an in-dialog request (or ACK) goes (see the module docstring)."""
        if dialog is not None:
            hop = dialog.next_hop()
            host = hop.maddr or hop.host
            port = hop.port or 5060
            if _is_ip(host):
                return (host, port)
            if host in self.known_hosts:
                return (self.known_hosts[host], port)
        if self.config.outbound_proxy is not None:
            return self.config.outbound_proxy
        if self._peer is not None:
            return self._peer
        if self._destination is not None:
            return self._destination
        raise ProtocolError("no address known for the far end")


def _q_order(contact: NameAddr) -> float:
    """Sort key: highest q first; a Contact without q counts as 1.0 (RFC 3261 §20.10)."""
    try:
        q = contact.q
    except (ValueError, SIPParseError):
        return -1.0
    return -(q if q is not None else 1.0)


def _to_tag(request: Request) -> str | None:
    try:
        return request.to.tag
    except SIPParseError:
        return None


def _cause_of(status: int) -> str:
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if status == 487:
        return "cancelled"
    return "rejected"
