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
destination did not take is reported as ``AttemptFailed``, a 3xx as
``Redirected``, and the caller decides whether to ``retry`` elsewhere
(RFC 3263 §4.3) or ``give_up``.

Besides its transactions, the UA core runs three retransmission timers of its
own, as the RFCs put them there: the 2xx to an INVITE until the ACK
(§13.3.1.4; with no ACK in 64·T1, a BYE and ``AckTimedOut``), reliable
provisionals until the PRACK (RFC 3262 §3), and the CANCEL deadline (§9.1: no
final response 64·T1 after a CANCEL ends the attempt); plus the §14.1 glare
back-off.

Addresses: requests go to the next hop's numeric address, to an address the
caller registered for its host name (``known_hosts``), to the outbound proxy,
or else back to where the far end's messages came from. Responses go where
RFC 3261 §18.2.2 and RFC 3581 (rport) say. Our Contact uses the address the far
end saw (the received/rport of our Via), once a response told us.

Not here: RFC 4028 session timers, offers in early dialogs (UPDATE with SDP
before the call is up gets 500 + Retry-After), and an INVITE of ours without an
offer (the ACK would have to carry the answer: give ``invite`` an ``sdp``).
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from gosipd.sip import (
    DEFAULT_ACCEPT,
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
from gosipd.sip import events as ev
from gosipd.sip.dialog import Dialog, DialogState
from gosipd.sip.digest import (
    Credentials,
    DigestSession,
    challenges_in,
    credentials_in,
)
from gosipd.sip.requests import ack_for_2xx, cancel_for, with_headers
from gosipd.sip.session_timer import SessionTimer, SessionTimerConfig
from gosipd.sip.timers import Timers
from gosipd.sip.transaction import (
    MAGIC_COOKIE,
    AckReceived,
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
from gosipd.sip.transaction import (
    State as TransactionState,
)
from gosipd.sip.transfer import (
    REFER_SUBSCRIPTION_S,
    TRANSFER_TIMEOUT,
    BadRefer,
    notify_for,
    read_notify,
    read_refer,
)

__all__ = ["CALL_TABLE", "CallInput", "CallState", "UAConfig", "UserAgent", "supported_tags"]


def _only_absorbs(client: ClientTransaction) -> bool:
    """In the state where a client transaction only absorbs retransmitted responses."""
    if isinstance(client, ClientInvite):
        return client.state is TransactionState.ACCEPTED
    return client.state is TransactionState.COMPLETED


Address = tuple[str, int]

#: Methods we know but do not serve (answered 405 with Allow); anything else unknown is 501.
KNOWN_UNSERVED = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER"})
#: Statuses of an unanswered INVITE that mean "this server, not the call": try another.
FAILOVER_STATUSES = frozenset({408, 500, 502, 503, 504})
#: How many 3xx responses one call follows before it gives up (loops are real).
MAX_REDIRECTS = 5
#: Retry-After (seconds) we put in a 503 while draining.
DEFAULT_RETRY_AFTER = 60
#: Retry-After of a 500 to an out-of-order or overlapping request: "randomly chosen
#: between 0 and 10 seconds" (RFC 3261 §14.2).
MAX_RETRY_AFTER_500 = 10
#: Body types an INFO may carry that we pass up (DTMF relay in its usual dresses).
INFO_ACCEPT = ("application/dtmf-relay", "application/dtmf", "text/plain")
#: The body types of a refer NOTIFY (RFC 3515 §2.4.5).
NOTIFY_ACCEPT = ("message/sipfrag",)
#: Methods whose bodies are not session descriptions, and the types we read in them.
BODIES_OF = {"INFO": INFO_ACCEPT, "NOTIFY": NOTIFY_ACCEPT}
#: The 5xx a UAS sends when no PRACK came for a reliable provisional (RFC 3262 §3).
PRACK_TIMEOUT_STATUS = 504


class CallState(enum.Enum):
    IDLE = "idle"
    CALLING = "calling"  # INVITE sent, nothing heard
    PROCEEDING = "proceeding"  # a provisional arrived
    WAITING = "waiting"  # an attempt failed or was redirected; the caller decides
    CANCELLING = "cancelling"
    INCOMING = "incoming"  # INVITE received, 100 sent
    EARLY = "early"  # we sent a provisional with a tag
    ANSWERED = "answered"  # we sent (or hold, for a PRACK) the 2xx; waiting for the ACK
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"  # BYE sent
    TERMINATED = "terminated"


class CallInput(enum.Enum):
    INVITE = "send INVITE"
    RETRY = "retry INVITE"
    GIVE_UP = "give up"
    CANCEL = "cancel"
    CANCEL_TIMEOUT = "end a CANCEL left unanswered for 64·T1"
    PROVISIONAL = "receive a provisional"
    SUCCESS = "receive a 2xx"
    FAILURE = "receive a final failure"
    ATTEMPT_FAILED = "report a failed attempt"
    INVITE_RECEIVED = "receive an INVITE"
    RING = "send a provisional"
    ANSWER = "send a 2xx"
    REJECT = "send a final failure"
    PRACK_TIMEOUT = "end a reliable provisional left without PRACK for 64·T1"
    CANCEL_RECEIVED = "receive CANCEL"
    ACK_RECEIVED = "receive the ACK"
    ACK_TIMEOUT = "end a 2xx left without ACK for 64·T1"
    BYE = "send BYE"
    BYE_RECEIVED = "receive BYE"
    BYE_DONE = "finish the BYE"
    DIALOG_GONE = "learn the far end lost the dialog (481)"


C, K = CallState, CallInput
#: Every transition of the call as a whole. Network inputs the table lacks are
#: answered by the protocol (481, 500, ...) without changing the call; a method call
#: it lacks raises ProtocolError.
CALL_TABLE: dict[tuple[CallState, CallInput], CallState] = {
    (C.IDLE, K.INVITE): C.CALLING,
    (C.IDLE, K.INVITE_RECEIVED): C.INCOMING,
    # caller side
    (C.CALLING, K.PROVISIONAL): C.PROCEEDING,
    (C.CALLING, K.SUCCESS): C.CONFIRMED,
    (C.CALLING, K.FAILURE): C.TERMINATED,
    (C.CALLING, K.ATTEMPT_FAILED): C.WAITING,
    (C.CALLING, K.RETRY): C.CALLING,  # a challenge answered, or failover mid-attempt
    (C.CALLING, K.CANCEL): C.CANCELLING,
    (C.CALLING, K.GIVE_UP): C.TERMINATED,
    (C.PROCEEDING, K.PROVISIONAL): C.PROCEEDING,
    (C.PROCEEDING, K.SUCCESS): C.CONFIRMED,
    (C.PROCEEDING, K.FAILURE): C.TERMINATED,
    (C.PROCEEDING, K.ATTEMPT_FAILED): C.WAITING,
    (C.PROCEEDING, K.RETRY): C.CALLING,
    (C.PROCEEDING, K.CANCEL): C.CANCELLING,
    (C.PROCEEDING, K.GIVE_UP): C.TERMINATED,
    (C.WAITING, K.RETRY): C.CALLING,
    (C.WAITING, K.GIVE_UP): C.TERMINATED,
    (C.WAITING, K.CANCEL): C.TERMINATED,
    (C.CANCELLING, K.PROVISIONAL): C.CANCELLING,
    (C.CANCELLING, K.SUCCESS): C.TERMINATING,  # the 2xx raced the CANCEL: ACK, then BYE
    (C.CANCELLING, K.FAILURE): C.TERMINATED,
    (C.CANCELLING, K.ATTEMPT_FAILED): C.TERMINATED,
    (C.CANCELLING, K.CANCEL_TIMEOUT): C.TERMINATED,
    # called side
    (C.INCOMING, K.RING): C.EARLY,
    (C.INCOMING, K.ANSWER): C.ANSWERED,
    (C.INCOMING, K.REJECT): C.TERMINATED,
    (C.INCOMING, K.CANCEL_RECEIVED): C.TERMINATED,
    (C.EARLY, K.RING): C.EARLY,
    (C.EARLY, K.ANSWER): C.ANSWERED,
    (C.EARLY, K.REJECT): C.TERMINATED,
    (C.EARLY, K.CANCEL_RECEIVED): C.TERMINATED,
    (C.EARLY, K.PRACK_TIMEOUT): C.TERMINATED,
    (C.EARLY, K.BYE_RECEIVED): C.TERMINATED,  # §15: a caller may BYE an early dialog
    # while the 2xx is held for a PRACK (RFC 3262 §3) the INVITE is still unanswered
    (C.ANSWERED, K.PRACK_TIMEOUT): C.TERMINATED,
    (C.ANSWERED, K.CANCEL_RECEIVED): C.TERMINATED,
    (C.ANSWERED, K.REJECT): C.TERMINATED,
    (C.ANSWERED, K.ACK_RECEIVED): C.CONFIRMED,
    (C.ANSWERED, K.ACK_TIMEOUT): C.TERMINATING,
    (C.ANSWERED, K.BYE_RECEIVED): C.TERMINATED,
    # both
    (C.CONFIRMED, K.BYE): C.TERMINATING,
    (C.CONFIRMED, K.BYE_RECEIVED): C.TERMINATED,
    (C.CONFIRMED, K.DIALOG_GONE): C.TERMINATED,
    (C.TERMINATING, K.BYE_DONE): C.TERMINATED,
    (C.TERMINATING, K.BYE_RECEIVED): C.TERMINATED,
}
del C, K


#: Via transports whose responses go back on the request's connection (§18.2.2).
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})


@dataclass(frozen=True)
class UAConfig:
    """What one call's user agent needs to know about itself."""

    local_address: Address
    contact_user: str = "gosipd"
    #: The transport of our Via and Contact: "UDP", "TCP" or "TLS" (the ``timers``
    #: should then be reliable). Over TCP and TLS ``local_address`` is the connection's.
    transport: str = "UDP"
    #: "sips" when the request URI is (RFC 3261 §8.1.1.8: the Contact must be too).
    contact_scheme: str = "sip"
    #: Sent as User-Agent (requests) and Server (responses); empty (the default): neither,
    #: so a scanner learns nothing of the software or its version.
    user_agent: str = ""
    timers: Timers = field(default_factory=Timers)
    credentials: Credentials | None = None
    #: The next hops (addresses) ``credentials`` may be sent to: the trunk's located
    #: targets, so a stranger's challenge (a caller's 401 to our BYE, a foreign host a
    #: 3xx sent us to) never gets the trunk's username and response. None: wherever the
    #: call's requests go (for a library user who trusts every hop).
    credential_hosts: frozenset[str] | None = None
    outbound_proxy: Address | None = None
    #: Option tags we support (sent in Supported; a Require outside this set gets 420).
    #: "timer" is added while ``session_timer`` is on (``supported_tags``).
    supported: tuple[str, ...] = ("100rel",)
    #: RFC 4028 session timers (``gosipd.sip.session_timer``); interval 0 turns them off.
    session_timer: SessionTimerConfig = field(default_factory=SessionTimerConfig)
    allow: tuple[str, ...] = (
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "PRACK",
        "UPDATE",
        "INFO",
    )
    #: Body types we read in INVITE, ACK, PRACK, UPDATE (others: 415 with Accept).
    accept: tuple[str, ...] = DEFAULT_ACCEPT
    #: Send reliable provisionals (RFC 3262) when the caller supports 100rel.
    reliable_provisionals: bool = True
    max_redirects: int = MAX_REDIRECTS
    #: Serve the far end's REFER (RFC 3515): ``ReferReceived``, which the call answers.
    #: Off, a REFER gets 405 and REFER is not in our Allow.
    accept_refer: bool = False

    @property
    def allowed(self) -> tuple[str, ...]:
        """The methods of our Allow header."""
        return (*self.allow, "REFER") if self.accept_refer else self.allow

    @property
    def supported_tags(self) -> tuple[str, ...]:
        return supported_tags(self.supported, self.session_timer)

    def over_stream(self, transport: str, *, secure: bool) -> UAConfig:
        """This UA over TCP or TLS: Via and Contact name ``transport``, the timers are
        Table 4's reliable column, and a sips: call has a sips: Contact (§8.1.1.8)."""
        return replace(
            self,
            transport=transport.upper(),
            timers=replace(self.timers, reliable=True),
            contact_scheme="sips" if secure else "sip",
        )


def supported_tags(
    supported: tuple[str, ...], session_timer: SessionTimerConfig
) -> tuple[str, ...]:
    """The option tags to claim: ``supported``, and "timer" while session timers are on."""
    if session_timer.enabled and "timer" not in supported:
        return (*supported, "timer")
    return supported


def _token(rng: random.Random, bits: int = 64) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass
class _Retransmission:
    """A message the UA core itself resends on a doubling interval until answered or
    ``give_up_at``: our 2xx to an INVITE until the ACK (§13.3.1.4, capped at T2), or a
    reliable provisional until its PRACK (RFC 3262 §3, no cap)."""

    response: Response
    reply_to: Address
    interval: float
    deadline: float
    give_up_at: float
    cap: float | None
    wire: bytes = b""

    def __post_init__(self) -> None:
        self.wire = bytes(self.response)

    def due(self, now: float) -> bool:
        return now >= self.deadline

    def expired(self, now: float) -> bool:
        return now >= self.give_up_at

    def advance(self, now: float) -> None:
        self.interval *= 2
        if self.cap is not None:
            self.interval = min(self.interval, self.cap)
        self.deadline = min(now + self.interval, self.give_up_at)


@dataclass
class _ReliableProvisional:
    """A provisional we sent with 100rel and its RSeq (RFC 3262 §3)."""

    rseq: int
    carries_sdp: bool
    retransmission: _Retransmission


class UserAgent:
    """One call's SIP engine. See the module docstring for the shape of it."""

    def __init__(self, config: UAConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._supported = config.supported_tags
        self.timers = config.timers
        self.rng = rng if rng is not None else random.SystemRandom()
        self.state = CallState.IDLE
        #: Addresses for host names in routes and targets (filled by the caller's locate).
        self.known_hosts: dict[str, str] = {}
        #: Our address as the far end saw it (received/rport on our Via), for Contact.
        self.public_address: Address = config.local_address
        #: Answer new INVITEs and OPTIONS with 503 + Retry-After (the daemon is draining).
        self.draining = False
        #: Datagrams dropped or refused because they were malformed.
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
        #: Where credentials may go (see ``UAConfig.credential_hosts``); the call
        #: updates it once it has located the trunk.
        self.credential_hosts = config.credential_hosts
        self._local_tag = ""
        self._peer: Address | None = None
        # caller side
        self._invite: Request | None = None
        self._invite_tx: ClientInvite | None = None
        self._destination: Address | None = None
        self._cancel_pending = False
        self._cancel_deadline: float | None = None
        self._attempt_progressed = False  # a 101-199 came for the current attempt
        self._redirects = 0
        self._early: dict[str, Dialog] = {}
        #: the ACK sent for each 2xx, by (To tag, CSeq number), to answer retransmissions
        self._acks: dict[tuple[str, int], tuple[bytes, Address]] = {}
        self._last_failure: tuple[int, str, int | None] | None = None
        # called side
        self._incoming: Request | None = None
        self._incoming_tx: ServerInvite | None = None
        self._rseq = 0
        self._reliable: _ReliableProvisional | None = None
        self._queued_provisionals: list[Response] = []
        self._held_success: Response | None = None
        self._success: _Retransmission | None = None
        self._hangup_after_ack = False
        # the dialog: re-INVITE, BYE
        self._reinvite_tx: ClientInvite | None = None
        self._reinvite_sdp: bytes | None = None
        self._glare_retry_at: float | None = None
        self._remote_offer_tx: ServerTransaction | None = None
        self._bye_tx: ClientNonInvite | None = None
        self._end_cause = ""
        # RFC 4028: the session interval, and our refreshes of it
        self.session_timer = SessionTimer(config.session_timer)
        #: The SDP we last sent that the far end holds (a re-INVITE refresh re-sends it).
        self._local_sdp: bytes | None = None
        self._peer_allows_update = False
        self._refresh_tx: ClientTransaction | None = None
        self._refreshing = False  # the re-INVITE in flight is a session refresh
        # blind transfer (RFC 3515): our REFER, and the refer subscription it created
        self._refer_tx: ClientTransaction | None = None
        self._transfer_deadline: float | None = None  # while the outcome is awaited
        self._refer_subscribed = False  # until a NOTIFY says terminated
        # transfer as the transferee: the far end's REFER, and the subscription it made
        self._refer_in: ServerTransaction | None = None  # until accepted or refused
        self._referral: tuple[int, float] | None = None  # (REFER's CSeq, expiry) to NOTIFY
        self._refer_subscribe = True  # RFC 4488: False when the REFER said Refer-Sub: false

    # ======================================================================
    # the sans-I/O surface
    # ======================================================================

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """What to send, as ``(datagram, (host, port))``, in order; drains the queue."""
        out = list(self._outbox)
        self._outbox.clear()  # the transactions hold this very list
        return out

    def largest_queued(self) -> int:
        """The size of the largest datagram waiting in ``datagrams_to_send`` (0: none)."""
        return max((len(data) for data, _ in self._outbox), default=0)

    def events(self) -> list[ev.Event]:
        """What happened since the last call, in order; drains the queue."""
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        deadlines = [
            t
            for t in (
                *(tx.next_timer() for tx in self._clients.values()),
                *(tx.next_timer() for tx in self._servers.values()),
                self._reliable.retransmission.deadline if self._reliable else None,
                self._success.deadline if self._success else None,
                self._glare_retry_at,
                self._cancel_deadline,
                self.session_timer.deadline() if self.state is CallState.CONFIRMED else None,
                self._transfer_deadline,
            )
            if t is not None
        ]
        return min(deadlines, default=None)

    @property
    def finished(self) -> bool:
        """The call ended and no transaction still absorbs retransmissions."""
        return self.state is CallState.TERMINATED and not self._clients and not self._servers

    @property
    def quiet(self) -> bool:
        """The call ended and nothing left would put a message on the wire: only client
        transactions that absorb retransmitted responses remain, a non-INVITE one in
        Completed (Timer K, RFC 3261 §17.1.2.2) or the INVITE in Accepted (RFC 6026: a
        2xx retransmitted after the dialog ended by BYE needs no ACK). The process may go
        before their timers; a server transaction (a BYE we answered) keeps it."""
        return (
            self.state is CallState.TERMINATED
            and not self._servers
            and self._success is None
            and self._reliable is None
            and all(_only_absorbs(client) for client in self._clients.values())
        )

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
        self._cancel_timer(now)
        if self._glare_retry_at is not None and now >= self._glare_retry_at:
            self._glare_retry_at = None
            self._glare_retry(now)
        if self._transfer_deadline is not None and now >= self._transfer_deadline:
            self._transfer_over()
            self._events.append(
                ev.TransferFailed(None, f"no outcome reported in {TRANSFER_TIMEOUT:.0f} s")
            )
        if self.state is CallState.CONFIRMED:
            match self.session_timer.due(now):
                case "refresh":
                    self._send_refresh(now)
                case "expired":
                    self._expire(now)  # §10: no refresh came

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
                try:
                    via = reply.top_via
                except SIPParseError:
                    return  # not even the Via says where to answer
                # §18.2.2 as if we had stamped received (and rport) on that Via
                reliable = via is not None and via.transport.upper() in RELIABLE_TRANSPORTS
                port = source[1] if via is None or via.has_rport or reliable else via.port or 5060
                reply_to = (source[0], port)
                self._outbox.append((bytes(reply), reply_to))
            return
        if isinstance(message, Response):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, now)

    def next_hop_address(self, dialog: Dialog | None = None) -> Address:
        """Where a request of ``dialog`` (or of the call, without one) is sent: see the
        module docstring."""
        if dialog is not None:
            hop = dialog.next_hop()
            host = hop.maddr or hop.host
            port = hop.port or 5060
            if _is_ip(host):
                return (host.strip("[]"), port)
            if host in self.known_hosts:
                return (self.known_hosts[host], port)
        if self.config.outbound_proxy is not None:
            return self.config.outbound_proxy
        if self._peer is not None:
            return self._peer
        if self._destination is not None:
            return self._destination
        raise ProtocolError("no address known for the far end")

    _hop_address = next_hop_address  # the name the call worker knew first

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
        """Start the call: send an INVITE for ``request_uri`` to ``destination``.

        ``sdp`` is our offer (an INVITE without one is sent, but the answer a 2xx
        would then need in the ACK cannot be given); ``headers`` are added as they are.
        Returns the INVITE (without Via: each attempt gets its own).
        """
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
            ("Allow", ", ".join(self.config.allowed)),
            ("Supported", ", ".join(self._supported)),
            *self.session_timer.request_headers(initial=True),
            *self._identity("User-Agent"),
            *headers,
        ]
        if sdp is not None:
            header_list.append(("Content-Type", "application/sdp"))
        self._local_sdp = sdp
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
        request = self._invite.copy()
        if request_uri is not None:
            request.uri = request_uri
        request.cseq = CSeq(request.cseq.number + 1, "INVITE")
        self._invite = request
        self._send_invite_attempt(destination, now)

    def give_up(self, now: float, *, cause: str = "failed") -> None:
        """Stop trying after ``AttemptFailed`` or ``Redirected``: the call fails."""
        self._transition(CallInput.GIVE_UP)
        self._abandon_invite()
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
        self._abandon_invite()
        self._destination = destination
        self._attempt_progressed = False
        request = self._invite.copy()
        request.via = [self._via()]
        for name in ("Authorization", "Proxy-Authorization"):
            request.headers.remove(name)
        if self._digest is not None and self._may_authenticate(destination):
            for name, value in self._digest.headers_for(
                method="INVITE", uri=str(request.uri), body=request.body
            ):
                request.headers.add(name, value)
        self._invite = request
        tx = ClientInvite(request, destination, self.timers, self._outbox, now)
        self._invite_tx = tx
        self._clients[tx.key] = tx

    def _abandon_invite(self) -> None:
        tx = self._invite_tx
        if tx is not None and not tx.terminated:
            tx.terminate()
            self._clients.pop(tx.key, None)

    def _send_cancel(self, now: float) -> None:
        assert self._invite is not None and self._invite_tx is not None
        cancel = cancel_for(self._invite)
        tx = ClientNonInvite(cancel, self._invite_tx.destination, self.timers, self._outbox, now)
        self._clients[tx.key] = tx
        self._cancel_pending = False
        self._cancel_deadline = now + 64 * self.timers.t1

    def _cancel_timer(self, now: float) -> None:
        if self._cancel_deadline is None or now < self._cancel_deadline:
            return
        self._cancel_deadline = None
        if self.state is CallState.CANCELLING:
            # §9.1: no final response 64·T1 after the CANCEL: consider the INVITE cancelled
            self._transition(CallInput.CANCEL_TIMEOUT)
            self._abandon_invite()
            self._events.append(ev.Failed(487, "Request Terminated"))
            self._end("cancelled", 487, "Request Terminated")

    def _on_invite_response(self, response: Response, source: Address, now: float) -> None:
        """A 1xx or 300-699 to the current INVITE attempt (2xx: ``_on_invite_2xx``)."""
        self._peer = source
        self._learn_public_address(response)
        if response.status < 200:
            self._on_invite_provisional(response, now)
        else:
            self._on_invite_failure(response, now)

    def _on_invite_provisional(self, response: Response, now: float) -> None:
        first = self.state is CallState.CALLING
        if self.state in (CallState.CALLING, CallState.PROCEEDING, CallState.CANCELLING):
            self._transition(CallInput.PROVISIONAL)
        if self._cancel_pending:
            self._send_cancel(now)
        if response.status > 100:
            self._attempt_progressed = True
        if response.status == 100 or response.to.tag is None:
            if first:  # once per attempt: later 100s answer INVITE retransmissions
                self._events.append(ev.Trying(response.status, self._destination))
            return
        dialog = self._early_dialog(response)
        reliable = "100rel" in response.require and response.rseq is not None
        if reliable and not self._prack(dialog, response, now):
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
        """Acknowledge a reliable provisional in order (RFC 3262 §4); True if it is new.

        The first one's RSeq starts the sequence; after that only the next RSeq is
        PRACKed. A retransmission (a PRACK of ours was lost) is not PRACKed again: the
        PRACK's own transaction retransmits it.
        """
        rseq = response.rseq
        assert rseq is not None
        if dialog.last_rseq is not None and rseq != dialog.last_rseq + 1:
            return False
        dialog.last_rseq = rseq
        rack = f"{rseq} {response.cseq.number} {response.cseq.method}"  # RFC 3262 §7.2
        self._send_in_dialog(dialog, "PRACK", now, headers=[("RAck", rack)])
        return True

    def _on_invite_2xx(
        self, tx: ClientTransaction, response: Response, source: Address, now: float
    ) -> None:
        """Any 2xx to an INVITE of ours: the first of its kind is handled, and every one
        (retransmissions, other forks) gets the ACK it is owed (§13.2.2.4)."""
        key = (response.to.tag or "", response.cseq.number)
        sent = self._acks.get(key)
        if sent is not None:
            self._outbox.append(sent)  # the 2xx was retransmitted: our ACK was lost
            return
        if tx is self._reinvite_tx:
            self._on_reinvite_response(response, now)
        elif tx is self._invite_tx:
            self._peer = source
            self._learn_public_address(response)
            self._on_invite_success(response, now)

    def _on_invite_success(self, response: Response, now: float) -> None:
        assert self._invite is not None
        tag = response.to.tag or ""
        dialog = self._early.pop(tag, None) or Dialog.for_uac(self._invite, response)
        dialog.confirm(response)
        dialog.local_seq = max(dialog.local_seq, self._invite.cseq.number)
        self._send_ack(dialog, response, self._invite)
        if self.state not in (CallState.CALLING, CallState.PROCEEDING, CallState.CANCELLING):
            # another fork answered too, or the call is over: we keep at most one call,
            # so this dialog is ACKed and hung up at once (§13.2.2.4)
            self._send_in_dialog(dialog, "BYE", now)
            return
        self._cancel_pending = False
        self._cancel_deadline = None
        if self.state is CallState.CANCELLING:
            self._transition(CallInput.SUCCESS)
            self.dialog = dialog
            self._end_cause = "cancelled"
            self._send_bye(now)
            return
        self._transition(CallInput.SUCCESS)
        self.dialog = dialog
        self._peer_allows_update = _allows_update(response)
        self.session_timer.on_success(response, now)
        self._events.append(ev.Answered(response.sdp, response.status))

    def _send_ack(self, dialog: Dialog, response: Response, invite: Request) -> None:
        """The ACK of a 2xx: a transaction of its own, sent by the TU (§13.2.2.4), carrying
        the INVITE's credentials."""
        destination = self.next_hop_address(dialog)
        credited = invite if self._may_authenticate(destination) else None
        ack = ack_for_2xx(dialog, response.cseq.number, self._via(), invite=credited)
        sent = (bytes(ack), destination)
        self._acks[(response.to.tag or "", response.cseq.number)] = sent
        self._outbox.append(sent)

    def _on_invite_failure(self, response: Response, now: float) -> None:
        status = response.status
        retry_after = response.retry_after.seconds if response.retry_after else None
        self._last_failure = (status, response.reason, retry_after)
        if self.state is CallState.CANCELLING:
            self._cancel_deadline = None
            self._transition(CallInput.FAILURE)
            self._events.append(ev.Failed(status, response.reason))
            self._end("cancelled", status, response.reason)
            return
        if status in (401, 407) and self._answer_challenge(response, now):
            return
        if status == 422 and self._invite is not None and self.session_timer.on_422(response):
            # RFC 4028 §7.3: the same INVITE again, asking for the peer's Min-SE
            self._send_invite_again(now, self.session_timer.request_headers(initial=True))
            return
        if 300 <= status < 400 and response.contact:
            self._redirects += 1
            contacts = tuple(c.uri for c in sorted(response.contact, key=_q_order))
            if self._redirects <= self.config.max_redirects:
                self._transition(CallInput.ATTEMPT_FAILED)
                self._events.append(ev.Redirected(status, contacts))
                return
            self._events.append(
                ev.RedirectRefused(status, contacts, f"max_redirects ({self.config.max_redirects})")
            )
        if status in FAILOVER_STATUSES and not self._attempt_progressed:
            # RFC 3263 §4.3: this server cannot take the call, another one may (a 100
            # only said the server got it; after a 180 the callee was reached)
            assert self._destination is not None
            self._transition(CallInput.ATTEMPT_FAILED)
            self._events.append(ev.AttemptFailed(self._destination, "status", status, retry_after))
            return
        self._transition(CallInput.FAILURE)
        self._events.append(ev.Failed(status, response.reason, retry_after))
        self._end(_cause_of(status), status, response.reason)

    def _answer_challenge(self, response: Response, now: float) -> bool:
        """Answer a 401/407 to the INVITE once (§22.2); False when we cannot or must not."""
        if self._digest is None or self._invite is None:
            return False
        request = self._invite
        assert self._destination is not None
        if not self._accept_challenge(response, request, self._destination):
            return False
        # the attempt adds the answered credentials (headers_for) to a fresh copy
        self._send_invite_again(now)
        return True

    def _send_invite_again(
        self, now: float, session_headers: list[tuple[str, str]] | None = None
    ) -> None:
        """The INVITE once more to the same destination with the next CSeq (after a
        401/407 answered, or a 422 with ``session_headers`` replacing ours)."""
        assert self._invite is not None and self._destination is not None
        self._transition(CallInput.RETRY)
        request = self._invite.copy()
        request.cseq = CSeq(request.cseq.number + 1, "INVITE")
        if session_headers is not None:
            for name in ("Session-Expires", "Min-SE"):
                request.headers.remove(name)
            with_headers(request, session_headers)
        self._invite = request
        self._send_invite_attempt(self._destination, now)

    def _accept_challenge(self, response: Response, request: Request, destination: Address) -> bool:
        """Take a 401/407 to ``request`` (sent to ``destination``) to answer, or say why not
        with ``AuthRefused``: the challenger is not where credentials may go, it asks for
        another realm, or it refused what we sent."""
        assert self._digest is not None
        challenges = challenges_in(response)
        realms = tuple(sorted({c.realm for c in challenges}))
        realm = self._digest.credentials.realm
        if not self._may_authenticate(destination):
            reason = "not_trunk"
        elif realm is not None and realm not in realms:
            reason = "realm_mismatch"
        elif not self._digest.accept(challenges, sent=credentials_in(request)):
            reason = "refused"
        else:
            self._events.append(ev.AuthChallenged(response.status, realms))
            return True
        self._events.append(
            ev.AuthRefused(response.status, realms, reason, request.method, destination)
        )
        return False

    def _may_authenticate(self, destination: Address) -> bool:
        hosts = self.credential_hosts
        return hosts is None or destination[0] in hosts

    # ======================================================================
    # called side: ring, answer, reject
    # ======================================================================

    def ring(
        self,
        now: float,
        *,
        status: int = 180,
        sdp: bytes | None = None,
        reliable: bool | None = None,
    ) -> None:
        """Send a provisional (180 Ringing, or 183 with early-media SDP).

        ``reliable``: send it with 100rel (RFC 3262); by default when the caller
        supports it and the config wants it, and always when the caller requires it.
        Only one reliable provisional is outstanding at a time; later ones queue.
        """
        if not 101 <= status <= 199:
            raise ValueError(f"a provisional status is 101-199, got {status}")
        self._transition(CallInput.RING)
        assert self._incoming is not None
        required = "100rel" in self._incoming.require
        offered = required or "100rel" in self._incoming.supported
        if reliable is None:
            reliable = self.config.reliable_provisionals
        reliable = offered and (reliable or required)
        response = self._response(self._incoming, status, sdp=sdp)
        if not reliable:
            self._respond_invite(response, now)
        elif self._reliable is not None:
            self._queued_provisionals.append(response)
        else:
            self._send_reliable(response, now)

    def answer(self, now: float, *, sdp: bytes | None) -> None:
        """Accept the call with a 200 (held until the PRACK of an offer-carrying 1xx)."""
        self._transition(CallInput.ANSWER)
        assert self._incoming is not None
        response = self._response(self._incoming, 200, sdp=sdp)
        with_headers(response, self.session_timer.response_headers(self._incoming, now))
        self._peer_allows_update = _allows_update(self._incoming)
        if sdp is not None:
            self._local_sdp = sdp
        if self._reliable is not None and self._reliable.carries_sdp:
            self._held_success = response  # RFC 3262 §3
            return
        self._send_success(response, now)

    def reject(
        self,
        now: float,
        status: int = 486,
        reason: str | None = None,
        *,
        retry_after: int | None = None,
        contacts: Sequence[NameAddr] = (),
    ) -> None:
        """Refuse the call with a final 3xx-6xx (``contacts``: where a 3xx sends the caller)."""
        if not 300 <= status <= 699:
            raise ValueError(f"a rejection status is 300-699, got {status}")
        if self.state is CallState.ANSWERED and self._held_success is None:
            raise ProtocolError("call in state answered cannot reject: the 2xx went out")
        self._transition(CallInput.REJECT)
        phrase = self._send_rejection(
            now, status, reason, retry_after=retry_after, contacts=contacts
        )
        self._end("rejected", status, phrase)

    def _send_rejection(
        self,
        now: float,
        status: int,
        reason: str | None,
        *,
        retry_after: int | None = None,
        contacts: Sequence[NameAddr] = (),
    ) -> str:
        """Send a final failure for the incoming INVITE; returns its reason phrase."""
        assert self._incoming is not None
        response = self._response(self._incoming, status, reason)
        if retry_after is not None:
            response.retry_after = retry_after
        if contacts:
            response.contact = list(contacts)
        self._reliable = None
        self._held_success = None
        self._queued_provisionals.clear()
        self._respond_invite(response, now)
        if self.dialog is not None:
            self.dialog.terminate()
        self._last_failure = (status, response.reason, retry_after)
        self._events.append(ev.Failed(status, response.reason, retry_after))
        return response.reason

    def _incoming_invite(self, request: Request, source: Address, now: float) -> None:
        reply_to = self._via_reply_address(request.top_via, source)
        if self.draining:
            self._server_reply(
                request,
                reply_to,
                now,
                503,
                "Service Unavailable",
                headers=[("Retry-After", str(DEFAULT_RETRY_AFTER))],
            )
            return
        if self.state is not CallState.IDLE:
            self._server_reply(request, reply_to, now, 486, "Busy Here")
            return
        if (min_se := self.session_timer.too_brief(request)) is not None:
            # RFC 4028 §9 (the supervisor refuses these before a worker exists)
            self._server_reply(
                request,
                reply_to,
                now,
                422,
                "Session Interval Too Small",
                headers=[("Min-SE", str(min_se))],
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

    def _response(
        self, request: Request, status: int, reason: str | None = None, *, sdp: bytes | None = None
    ) -> Response:
        """Our response to ``request``: with our tag, and for a 1xx/2xx to a
        dialog-creating or target-refresh request our Contact (§12.1.1)."""
        headers: list[tuple[str, str]] = []
        if 100 < status < 300 and request.method in ("INVITE", "UPDATE"):
            headers.append(("Contact", str(self._contact())))
        if 200 <= status < 300 and request.method in ("INVITE", "OPTIONS", "UPDATE"):
            headers += [
                ("Allow", ", ".join(self.config.allowed)),
                ("Supported", ", ".join(self._supported)),
            ]
        if status in (405, 501):
            headers.append(("Allow", ", ".join(self.config.allowed)))
        headers += self._identity("Server")
        tag = self._local_tag if status > 100 else None
        response = Response.for_request(request, status, reason, to_tag=tag)
        with_headers(response, headers)
        if sdp is not None:
            response.set_body(sdp, "application/sdp")
        return response

    def _respond_invite(self, response: Response, now: float) -> None:
        assert self._incoming_tx is not None and self._incoming is not None
        if self.dialog is None and 100 < response.status < 300:
            self.dialog = Dialog.for_uas(self._incoming, self._local_tag, self._contact())
        self._incoming_tx.respond(response, now)

    def _send_reliable(self, response: Response, now: float) -> None:
        assert self._incoming_tx is not None
        # RFC 3262 §3: the first RSeq is random in 1..2**31-1, later ones count up
        self._rseq = self._rseq + 1 if self._rseq else self.rng.randint(1, 2**31 - 1)
        response = response.copy()
        response.require = [*response.require, "100rel"]
        response.rseq = self._rseq
        self._reliable = _ReliableProvisional(
            self._rseq,
            carries_sdp=bool(response.body),
            retransmission=_Retransmission(
                response,
                self._incoming_tx.reply_to,
                interval=self.timers.t1,
                deadline=now + self.timers.t1,
                give_up_at=now + 64 * self.timers.t1,
                cap=None,
            ),
        )
        self._respond_invite(response, now)

    def _reliable_timer(self, now: float) -> None:
        pending = self._reliable
        if pending is None or not pending.retransmission.due(now):
            return
        retransmission = pending.retransmission
        if retransmission.expired(now):
            # RFC 3262 §3: no PRACK in 64·T1: reject the INVITE with a 5xx
            self._transition(CallInput.PRACK_TIMEOUT)
            self._send_rejection(now, PRACK_TIMEOUT_STATUS, "No PRACK Received")
            self._end("prack_timeout", PRACK_TIMEOUT_STATUS, "No PRACK Received")
            return
        retransmission.advance(now)
        self._outbox.append((retransmission.wire, retransmission.reply_to))

    def _on_prack(self, request: Request, tx: ServerTransaction, now: float) -> None:
        pending = self._reliable
        rack = request.rack
        expected = (
            None
            if pending is None or self._incoming is None
            else (pending.rseq, self._incoming.cseq.number, "INVITE")
        )
        if rack is None or (rack.rseq, rack.cseq, rack.method) != expected:
            # RFC 3262 §3: a PRACK that matches no unacknowledged reliable provisional
            tx.respond(self._response(request, 481, "No Matching Provisional"), now)
            return
        self._reliable = None
        tx.respond(self._response(request, 200), now)
        if self._queued_provisionals:
            self._send_reliable(self._queued_provisionals.pop(0), now)
        elif self._held_success is not None:
            held, self._held_success = self._held_success, None
            self._send_success(held, now)

    def _send_success(self, response: Response, now: float) -> None:
        assert self._incoming_tx is not None
        # a final response ends the retransmission of reliable provisionals (RFC 3262 §3)
        self._reliable = None
        self._queued_provisionals.clear()
        self._respond_invite(response, now)
        if self.dialog is not None:
            self.dialog.confirm()
        self._success = self._retransmit_2xx(response, self._incoming_tx.reply_to, now)

    def _retransmit_2xx(self, response: Response, reply_to: Address, now: float) -> _Retransmission:
        """§13.3.1.4: the 2xx goes out again at T1, doubling up to T2, until the ACK, for
        at most 64·T1."""
        return _Retransmission(
            response,
            reply_to,
            interval=self.timers.t1,
            deadline=now + self.timers.t1,
            give_up_at=now + 64 * self.timers.t1,
            cap=self.timers.t2,
        )

    def _success_timer(self, now: float) -> None:
        pending = self._success
        if pending is None or not pending.due(now):
            return
        if pending.expired(now):
            self._success = None
            if self.state is CallState.ANSWERED:
                # §13.3.1.4: no ACK: the dialog is confirmed but should be ended with BYE
                self._transition(CallInput.ACK_TIMEOUT)
                self._end_cause = "ack_timeout"
                self._send_bye(now)
                self._events.append(ev.AckTimedOut())
            elif self.state is CallState.CONFIRMED and self._remote_offer_tx is not None:
                self._remote_offer_tx = None
                self._end_cause = "ack_timeout"
                self._transition(CallInput.BYE)
                self._send_bye(now)
                self._events.append(ev.AckTimedOut())
            return
        pending.advance(now)
        self._outbox.append((pending.wire, pending.reply_to))

    def _on_ack(self, request: Request, now: float) -> None:
        pending = self._success
        if pending is None or request.cseq.number != pending.response.cseq.number:
            return  # a retransmitted ACK, or one for a 2xx we no longer send
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
                if self._held_success is not None:
                    # the 2xx never left (it waits for a PRACK): refuse the call instead
                    self._transition(CallInput.REJECT)
                    self._send_rejection(now, 480, "Temporarily Unavailable")
                    self._end("local_hangup", 480, "Temporarily Unavailable")
                else:
                    self._hangup_after_ack = True  # §15: no BYE before the ACK
            case CallState.CONFIRMED:
                self._transition(CallInput.BYE)
                self._end_cause = "local_hangup"
                self._send_bye(now)
            case _:
                pass

    def reinvite(self, sdp: bytes, now: float) -> None:
        """Offer new SDP in the dialog (hold, resume, a new media address)."""
        if self.state is not CallState.CONFIRMED or self.dialog is None:
            raise ProtocolError(f"cannot re-INVITE in state {self.state.value}")
        if self._reinvite_tx is not None or self._remote_offer_tx is not None:
            raise ProtocolError("an offer/answer exchange is already in progress")
        self._reinvite_sdp = sdp
        self._refreshing = False
        self._send_reinvite(sdp, now)

    def transfer(self, target: URI, now: float, *, referred_by: bool = True) -> None:
        """Blind transfer: ask the far end to call ``target`` (REFER, RFC 3515). Its
        progress comes as ``TransferAccepted``, ``TransferProgress``, then
        ``TransferSucceeded`` (hang up: the far end is with the target) or
        ``TransferFailed`` (the call goes on)."""
        if self.state is not CallState.CONFIRMED or self.dialog is None:
            raise ProtocolError(f"cannot transfer in state {self.state.value}")
        if self._refer_tx is not None or self._transfer_deadline is not None:
            raise ProtocolError("a transfer is already in progress")
        headers = [("Refer-To", str(NameAddr(target)))]
        if referred_by:  # RFC 3892: who asks (the far end may show it to the target)
            headers.append(("Referred-By", str(NameAddr(self.dialog.local_party.uri))))
        self._refer_tx = self._send_in_dialog(self.dialog, "REFER", now, headers=headers)
        self._transfer_deadline = now + TRANSFER_TIMEOUT

    def _transfer_over(self) -> None:
        self._refer_tx = None
        self._transfer_deadline = None

    def _on_refer_response(self, response: Response) -> None:
        self._refer_tx = None
        if 200 <= response.status < 300:
            self._refer_subscribed = True
            if self._transfer_deadline is not None:
                self._events.append(ev.TransferAccepted(response.status))
            return
        self._transfer_over()
        self._events.append(ev.TransferFailed(response.status, response.reason))

    def _on_notify(self, request: Request, tx: ServerTransaction, now: float) -> None:
        progress = read_notify(request)
        if progress is None:
            tx.respond(self._response(request, 489, "Bad Event"), now)
            return
        awaited = self._transfer_deadline is not None
        if not (awaited or self._refer_subscribed):
            # RFC 6665 §4.1.3: no such subscription (ended, or never ours)
            tx.respond(self._response(request, 481, "Subscription Does Not Exist"), now)
            return
        tx.respond(self._response(request, 200), now)
        if progress.terminated:
            self._refer_subscribed = False
        if not awaited:
            return  # the outcome is known: a last NOTIFY closing the subscription
        status = progress.status
        if status is not None and status < 200:
            self._events.append(ev.TransferProgress(status, progress.reason))
        elif status is not None and status < 300:
            self._transfer_over()
            self._events.append(ev.TransferSucceeded(status))
        elif status is not None:
            self._transfer_over()
            self._events.append(ev.TransferFailed(status, progress.reason))
        if progress.terminated and self._transfer_deadline is not None:
            # over without a final outcome (RFC 3515 §2.4.7)
            self._transfer_over()
            why = progress.ended_because or "subscription terminated"
            self._events.append(ev.TransferFailed(None, why))

    def _on_refer(self, request: Request, tx: ServerTransaction, now: float) -> None:
        if self.state is not CallState.CONFIRMED:
            tx.respond(
                self._response(request, 403, "Only an Answered Call Can Be Transferred"), now
            )
            return
        if self._refer_in is not None or self._referral is not None:
            tx.respond(self._response(request, 403, "A Transfer Is Already in Progress"), now)
            return
        referral = read_refer(request)
        if isinstance(referral, BadRefer):
            tx.respond(self._response(request, referral.status, referral.reason), now)
            return
        self._refer_in = tx
        self._refer_subscribe = referral.subscribe
        self._events.append(
            ev.ReferReceived(referral.target.uri, referral.replaces, referral.referred_by)
        )

    def accept_refer(self, now: float) -> None:
        """Take the far end's REFER (``ReferReceived``): 202, then the first NOTIFY (100
        Trying). Report the call placed for it with ``notify_refer``."""
        tx = self._take_refer()
        response = self._response(tx.request, 202, "Accepted")
        if not self._refer_subscribe:
            with_headers(response, [("Refer-Sub", "false")])  # RFC 4488: no NOTIFYs
            tx.respond(response, now)
            return
        tx.respond(response, now)
        self._referral = (tx.request.cseq.number, now + REFER_SUBSCRIPTION_S)
        self.notify_refer(100, "Trying", now)

    def refuse_refer(self, now: float, status: int = 603, reason: str = "Declined") -> None:
        """Refuse the far end's REFER (``ReferReceived``); the call goes on."""
        tx = self._take_refer()
        tx.respond(self._response(tx.request, status, reason), now)

    def notify_refer(self, status: int, reason: str, now: float) -> None:
        """Tell the transferor how the call we placed for its REFER goes (a NOTIFY with a
        sipfrag); a final ``status`` ends the subscription. Nothing is sent once the
        dialog is over or the transferor asked for no NOTIFYs."""
        if self._referral is None:
            return
        event_id, expiry = self._referral
        if status >= 200:
            self._referral = None
        if self.state is not CallState.CONFIRMED or self.dialog is None:
            return
        headers, body = notify_for(event_id, status, reason, expires=round(expiry - now))
        self._send_in_dialog(self.dialog, "NOTIFY", now, headers=headers, body=body)

    def _take_refer(self) -> ServerTransaction:
        tx, self._refer_in = self._refer_in, None
        if tx is None:
            raise ProtocolError("there is no REFER to answer")
        return tx

    def _send_reinvite(self, sdp: bytes, now: float) -> None:
        assert self.dialog is not None
        tx = self._send_in_dialog(
            self.dialog, "INVITE", now, headers=[("Content-Type", "application/sdp")], body=sdp
        )
        assert isinstance(tx, ClientInvite)
        self._reinvite_tx = tx

    def _glare_retry(self, now: float) -> None:
        if self._reinvite_sdp is None or self.state is not CallState.CONFIRMED:
            return
        if self._remote_offer_tx is not None or self._reinvite_tx is not None:
            self._glare_retry_at = now + self.timers.t1  # let the other exchange finish
            return
        self._send_reinvite(self._reinvite_sdp, now)

    def answer_offer(self, sdp: bytes | None, now: float) -> None:
        """Answer the far end's re-INVITE or UPDATE (``RemoteOffer``) with 200 and our SDP."""
        tx = self._remote_offer_tx
        if tx is None:
            raise ProtocolError("there is no remote offer to answer")
        response = self._response(tx.request, 200, sdp=sdp)
        with_headers(response, self.session_timer.response_headers(tx.request, now))
        if sdp is not None:
            self._local_sdp = sdp
        tx.respond(response, now)
        if tx.request.method == "INVITE":
            self._success = self._retransmit_2xx(response, tx.reply_to, now)
        else:
            self._remote_offer_tx = None

    def reject_offer(self, now: float, status: int = 488) -> None:
        """Refuse the far end's new offer; the session stays as it was."""
        tx = self._remote_offer_tx
        if tx is None:
            raise ProtocolError("there is no remote offer to reject")
        self._remote_offer_tx = None
        tx.respond(self._response(tx.request, status), now)

    def _send_bye(self, now: float) -> None:
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
            *(("Route", str(route)) for route in routes),
            ("From", str(dialog.local_party)),
            ("To", str(dialog.remote_party)),
            ("Call-ID", dialog.call_id),
            ("CSeq", str(CSeq(dialog.next_cseq(), method))),
        ]
        if method in ("REFER", "NOTIFY"):
            header_list.append(("Contact", str(self._contact())))
        if method in ("INVITE", "UPDATE"):
            header_list += [
                ("Contact", str(self._contact())),
                ("Allow", ", ".join(self.config.allowed)),
                ("Supported", ", ".join(self._supported)),
                *self.session_timer.request_headers(initial=False),
            ]
        header_list += [*self._identity("User-Agent"), *headers]
        destination = self.next_hop_address(dialog)
        if self._digest is not None and self._may_authenticate(destination):
            header_list += self._digest.headers_for(method=method, uri=str(request_uri), body=body)
        request = Request(method, request_uri, header_list, body)
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
            if response.status in (401, 407) and self._retry_with_auth(tx, response, now):
                return
            self._bye_done()
        elif method == "INVITE" and tx is self._reinvite_tx:
            self._on_reinvite_response(response, now)
        elif method == "UPDATE" and tx is self._refresh_tx:
            self._on_refresh_response(response, now)
        elif method == "REFER" and tx is self._refer_tx:
            self._on_refer_response(response)

    def _send_refresh(self, now: float) -> None:
        """RFC 4028 §7.4: refresh by UPDATE without a body where the peer allows it, else
        by re-INVITE with the SDP it already holds (unchanged, so nothing is renegotiated).
        An exchange already in flight refreshes the session itself when it succeeds."""
        if (
            self.dialog is None
            or self._reinvite_tx is not None
            or self._remote_offer_tx is not None
            or self._refresh_tx is not None
        ):
            return
        if self._peer_allows_update or self._local_sdp is None:
            self._refresh_tx = self._send_in_dialog(self.dialog, "UPDATE", now)
            return
        self._reinvite_sdp = self._local_sdp
        self._refreshing = True
        self._send_reinvite(self._local_sdp, now)

    def _expire(self, now: float) -> None:
        """End the session before it expires (RFC 4028 §10), cause ``session_expired``."""
        if self.state is CallState.CONFIRMED:
            self._transition(CallInput.BYE)
            self._end_cause = "session_expired"
            self._send_bye(now)

    def _on_refresh_response(self, response: Response, now: float) -> None:
        assert self._refresh_tx is not None
        self._refresh_tx = None
        status = response.status
        if 200 <= status < 300:
            if self.dialog is not None:
                self.dialog.refresh_target(response)
            self.session_timer.on_success(response, now)
        elif status == 422 and self.session_timer.on_422(response):
            self._send_refresh(now)
        elif status in (405, 501) and self._local_sdp is not None:
            self._peer_allows_update = False  # its Allow said otherwise: try a re-INVITE
            self._send_refresh(now)
        elif status == 481:
            self._lose_dialog("dialog_gone", status, response.reason)
        elif status == 408:
            self._expire(now)
        # anything else: due() tries again in a tenth of the interval

    def _retry_with_auth(self, tx: ClientTransaction, response: Response, now: float) -> bool:
        """A BYE challenged: answer once, as for the INVITE (§22.2)."""
        if self._digest is None or self.dialog is None:
            return False
        if not self._accept_challenge(response, tx.request, tx.destination):
            return False
        self._send_bye(now)
        return True

    def _bye_done(self) -> None:
        self._bye_tx = None
        if self.state is CallState.TERMINATING:
            self._transition(CallInput.BYE_DONE)
            self._end(self._end_cause or "local_hangup", None, "")

    def _on_reinvite_response(self, response: Response, now: float) -> None:
        assert self.dialog is not None and self._reinvite_tx is not None
        status = response.status
        invite = self._reinvite_tx.request
        self._reinvite_tx = None
        refreshing, self._refreshing = self._refreshing, False
        if 200 <= status < 300:
            self.dialog.refresh_target(response)
            self._send_ack(self.dialog, response, invite)
            self.session_timer.on_success(response, now)
            if self._reinvite_sdp is not None:
                self._local_sdp = self._reinvite_sdp
            self._reinvite_sdp = None
            if not refreshing:
                self._events.append(ev.OfferAnswered(response.sdp))
            return
        if status == 422 and self.session_timer.on_422(response):
            self._refreshing = refreshing
            assert self._reinvite_sdp is not None
            self._send_reinvite(self._reinvite_sdp, now)
            return
        if status == 491:
            # glare (§14.1): the Call-ID's owner waits 2.1-4 s, the other side 0-2 s
            owner = self._invite is not None
            wait = self.rng.uniform(2.1, 4.0) if owner else self.rng.uniform(0.0, 2.0)
            self._glare_retry_at = now + wait
            self._refreshing = refreshing
            return
        self._reinvite_sdp = None
        if not refreshing:
            self._events.append(ev.OfferRejected(status, response.reason))
        if status == 481:
            # §12.2.1.2: the dialog is gone at the far end
            self._lose_dialog("dialog_gone", status, response.reason)
        elif status == 408:
            self.hangup(now)

    def _lose_dialog(self, cause: str, status: int | None, reason: str) -> None:
        if self.state is CallState.CONFIRMED:
            self._transition(CallInput.DIALOG_GONE)
            self._end(cause, status, reason)

    # ======================================================================
    # receiving
    # ======================================================================

    def _receive_response(self, response: Response, source: Address, now: float) -> None:
        if (
            check(response) is not None
            or len(response.via) != 1  # §8.1.3.3: more than one Via: not ours, discard
            or (response.status > 100 and response.to.tag is None and response.is_final)
        ):
            # malformed: a final response without a To tag cannot be matched to a dialog
            # (§8.2.6.2: a UAS MUST add one)
            self.malformed += 1
            return
        key = client_key(response.via[0].branch or "", response.cseq.method)
        tx = self._clients.get(key)
        if tx is None:
            self._stray_response(response)
            return
        self._on_client_events(tx, tx.receive(response, now), now, source)
        if tx.terminated:
            self._clients.pop(key, None)

    def _stray_response(self, response: Response) -> None:
        """A response no transaction wants (§17.1.3): re-ACK a 2xx we already ACKed (its
        INVITE transaction may be gone), drop anything else."""
        if response.is_success and response.cseq.method == "INVITE":
            sent = self._acks.get((response.to.tag or "", response.cseq.number))
            if sent is not None and response.call_id == self.call_id:
                self._outbox.append(sent)

    def _on_client_events(
        self,
        tx: ClientTransaction,
        events: list[TransactionEvent],
        now: float,
        source: Address | None = None,
    ) -> None:
        for event in events:
            if isinstance(event, ResponseReceived):
                response = event.response
                if response.cseq.method == "INVITE" and response.is_success:
                    self._on_invite_2xx(tx, response, source or tx.destination, now)
                elif tx is self._invite_tx:
                    self._on_invite_response(response, source or tx.destination, now)
                else:
                    self._on_in_dialog_response(tx, response, now)
            elif isinstance(event, TransactionTimeout | TransportFailure):
                self._on_client_failure(tx, event, now)

    def _on_client_failure(
        self, tx: ClientTransaction, event: TransactionEvent, now: float
    ) -> None:
        reason = "timeout" if isinstance(event, TransactionTimeout) else "transport"
        if tx is self._invite_tx:
            if self.state is CallState.CANCELLING:
                self._cancel_deadline = None
                self._transition(CallInput.ATTEMPT_FAILED)
                self._events.append(ev.Failed(487, "Request Terminated"))
                self._end("cancelled", 487, "Request Terminated")
            elif self.state in (CallState.CALLING, CallState.PROCEEDING):
                self._last_failure = (
                    (408, "Request Timeout", None)
                    if reason == "timeout"
                    else (503, "Service Unavailable", None)
                )
                self._transition(CallInput.ATTEMPT_FAILED)
                self._events.append(ev.AttemptFailed(tx.destination, reason))
        elif tx is self._bye_tx:
            self._bye_done()
        elif tx is self._reinvite_tx:
            self._reinvite_tx = None
            self._reinvite_sdp = None
            if self._refreshing:
                self._refreshing = False
                self._expire(now)
                return
            self._events.append(ev.OfferRejected(408, "Request Timeout"))
            self.hangup(now)
        elif tx is self._refresh_tx:
            self._refresh_tx = None
            self._expire(now)  # §10: a refresh that times out ends the session
        elif tx is self._refer_tx:
            self._transfer_over()
            self._events.append(ev.TransferFailed(None, f"REFER {reason}"))

    def _on_server_events(
        self, tx: ServerTransaction, events: list[TransactionEvent], now: float
    ) -> None:
        for event in events:
            if isinstance(event, AckReceived):
                self._on_ack(event.request, now)  # an RFC 2543 ACK for our 2xx
            # Timer H and transport failures of our responses need nothing more: the
            # call already ended with the failure response we sent

    def _receive_request(self, request: Request, source: Address, now: float) -> None:
        accept = BODIES_OF.get(request.method, self.config.accept)
        rejection = check(request, supported=self._supported, accept=accept)
        if rejection is not None:
            self.malformed += 1
            if request.method != "ACK":
                self._reject_request(
                    request, source, now, rejection.status, rejection.reason, rejection.headers
                )
            return
        request = self._stamp_via(request, source)
        reply_to = self._via_reply_address(request.top_via, source)
        key = server_key(request)
        tx = self._servers.get(key)
        if tx is not None and tx.matches(request):
            self._on_server_events(tx, tx.receive_request(request, now), now)
            if tx.terminated:
                self._servers.pop(key, None)
            return
        match request.method:
            case "ACK":
                if self._in_dialog(request):
                    self._on_ack(request, now)
                # an ACK for no transaction and no dialog is dropped (§17.2.3)
            case "CANCEL":
                self._on_cancel(request, reply_to, now)
            case _ if request.to.tag is not None:
                self._in_dialog_request(request, reply_to, now)
            case _ if self._merged(request):
                self._server_reply(request, reply_to, now, 482, "Loop Detected")
            case "INVITE":
                self._incoming_invite(request, source, now)
            case "OPTIONS":
                if self.draining:
                    self._server_reply(
                        request,
                        reply_to,
                        now,
                        503,
                        "Service Unavailable",
                        headers=[("Retry-After", str(DEFAULT_RETRY_AFTER))],
                    )
                else:
                    self._server_reply(request, reply_to, now, 200, None)
            case method if method in KNOWN_UNSERVED:
                self._server_reply(request, reply_to, now, 405, "Method Not Allowed")
            case method if method in self.config.allow:
                # BYE, PRACK, UPDATE, INFO outside any dialog
                self._server_reply(request, reply_to, now, 481, "Call/Transaction Does Not Exist")
            case _:
                self._server_reply(request, reply_to, now, 501, "Not Implemented")

    def _reject_request(
        self,
        request: Request,
        source: Address,
        now: float,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]],
    ) -> None:
        """Answer a request ``check`` refused. A 400 goes out statelessly (the fields a
        transaction is found by may be the broken ones); the rest through a transaction
        of their own."""
        try:
            request = self._stamp_via(request, source)
            reply_to = self._via_reply_address(request.top_via, source)
        except SIPParseError:
            reply_to = source  # a Via we cannot read: answer where it came from
        if status != 400:
            try:
                self._server_reply(request, reply_to, now, status, reason, headers=headers)
                return
            except SIPParseError:
                pass  # a field the transaction needs is unreadable: answer statelessly
        tag = _to_tag_or_new(request, self.rng)
        response = Response.for_request(request, status, reason, to_tag=tag)
        with_headers(response, [*headers, *self._identity("Server")])
        self._outbox.append((bytes(response), reply_to))

    def _merged(self, request: Request) -> bool:
        """A request with the From tag, Call-ID and CSeq of one we are serving but under
        another transaction: a fork looping back to us (§8.2.2.2, 482)."""
        for tx in self._servers.values():
            held = tx.request
            if (
                held.method == request.method
                and held.call_id == request.call_id
                and held.from_.tag == request.from_.tag
                and held.cseq == request.cseq
                and held.to.tag is None
            ):
                return True
        return False

    def _in_dialog(self, request: Request) -> bool:
        return self.dialog is not None and _belongs_to(request, self.dialog)

    def _dialog_of(self, request: Request) -> Dialog | None:
        """The dialog ``request`` belongs to: the call's, or (caller side) one of the early
        dialogs its provisionals created (RFC 3311 allows UPDATE and INFO there)."""
        if self._in_dialog(request):
            return self.dialog
        for dialog in self._early.values():
            if _belongs_to(request, dialog):
                return dialog
        return None

    def _in_dialog_request(self, request: Request, reply_to: Address, now: float) -> None:
        dialog = self._dialog_of(request)
        if dialog is None:
            self._server_reply(request, reply_to, now, 481, "Call/Transaction Does Not Exist")
            return
        if not dialog.accept_remote_cseq(request):
            self._server_reply(
                request,
                reply_to,
                now,
                500,
                "Out of Order CSeq",
                headers=[("Retry-After", str(self.rng.randint(0, MAX_RETRY_AFTER_500)))],
            )
            return
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = ServerInvite(request, reply_to, self.timers, self._outbox, now)
        else:
            tx = ServerNonInvite(request, reply_to, self.timers, self._outbox, now)
        self._servers[tx.key] = tx
        match request.method:
            case "BYE":
                self._on_bye(request, tx, now)
            case "PRACK":
                self._on_prack(request, tx, now)
            case "INVITE" | "UPDATE":
                self._on_remote_offer(request, tx, dialog, now)
            case "INFO":
                tx.respond(self._response(request, 200), now)
                self._events.append(
                    ev.InfoReceived(request.headers.get("Content-Type"), request.body)
                )
            case "OPTIONS":
                tx.respond(self._response(request, 200), now)
            case "NOTIFY":
                self._on_notify(request, tx, now)
            case "REFER" if self.config.accept_refer:
                self._on_refer(request, tx, now)
            case method if method in KNOWN_UNSERVED:
                tx.respond(self._response(request, 405, "Method Not Allowed"), now)
            case _:
                tx.respond(self._response(request, 501, "Not Implemented"), now)

    def _on_bye(self, request: Request, tx: ServerTransaction, now: float) -> None:
        tx.respond(self._response(request, 200), now)
        match self.state:
            case CallState.EARLY:
                # §15.1.2: a BYE in an early dialog: the INVITE gets 487
                self._transition(CallInput.BYE_RECEIVED)
                self._send_rejection(now, 487, "Request Terminated")
                self._end("remote_hangup", None, "")
            case CallState.CONFIRMED | CallState.ANSWERED | CallState.TERMINATING:
                self._transition(CallInput.BYE_RECEIVED)
                self._success = None
                if self.dialog is not None:
                    self.dialog.terminate()
                self._end("remote_hangup", None, "")
            case _:
                pass  # a BYE for a call already over: the 200 is all it needs

    def _on_remote_offer(
        self, request: Request, tx: ServerTransaction, dialog: Dialog, now: float
    ) -> None:
        if (min_se := self.session_timer.too_brief(request)) is not None:
            refusal = self._response(request, 422, "Session Interval Too Small")
            with_headers(refusal, [("Min-SE", str(min_se))])
            tx.respond(refusal, now)
            return
        if request.method == "UPDATE" and not request.body:
            # an UPDATE without an offer (a session refresh): nothing to negotiate
            dialog.refresh_target(request)
            response = self._response(request, 200)
            if dialog is self.dialog and self.state is CallState.CONFIRMED:
                with_headers(response, self.session_timer.response_headers(request, now))
            tx.respond(response, now)
            return
        if self._reinvite_tx is not None:
            tx.respond(self._response(request, 491, "Request Pending"), now)  # §14.2 glare
            return
        if (
            self._remote_offer_tx is not None
            or self.state is not CallState.CONFIRMED
            or dialog is not self.dialog
        ):
            # §14.2: an INVITE while the previous one is unanswered (or an offer before
            # the call is up, which we do not take): 500 with Retry-After of 0-10 s
            response = self._response(request, 500, "Server Internal Error")
            response.retry_after = self.rng.randint(0, MAX_RETRY_AFTER_500)
            tx.respond(response, now)
            return
        dialog.refresh_target(request)
        if request.method == "INVITE":
            tx.respond(Response.for_request(request, 100), now)
        self._remote_offer_tx = tx
        self._events.append(ev.RemoteOffer(request.sdp, request.method))

    def _on_cancel(self, request: Request, reply_to: Address, now: float) -> None:
        """CANCEL finds the INVITE's server transaction by the INVITE's key (§9.2)."""
        invite_tx = self._incoming_tx
        if (
            invite_tx is None
            or invite_tx.key != server_key(request, as_method="INVITE")
            or not invite_tx.matches(request)
        ):
            self._server_reply(request, reply_to, now, 481, "Call/Transaction Does Not Exist")
            return
        assert self._incoming is not None
        self._server_reply(request, reply_to, now, 200, None, to_tag=self._local_tag)
        held = self.state is CallState.ANSWERED and self._held_success is not None
        if self.state in (CallState.INCOMING, CallState.EARLY) or held:
            self._transition(CallInput.CANCEL_RECEIVED)
            self._send_rejection(now, 487, "Request Terminated")
            self._events.append(ev.CancelReceived())
            self._end("cancelled", 487, "Request Terminated")
        # after our final response the CANCEL changes nothing (§9.2)

    def _server_reply(
        self,
        request: Request,
        reply_to: Address,
        now: float,
        status: int,
        reason: str | None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        to_tag: str | None = None,
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
        tag = to_tag or (_token(self.rng) if status > 100 else None)
        response = Response.for_request(request, status, reason, to_tag=tag)
        extra = list(headers)
        names = {name.lower() for name, _ in extra}
        if status in (405, 501) or (status == 200 and request.method == "OPTIONS"):
            if "allow" not in names:
                extra.append(("Allow", ", ".join(self.config.allowed)))
            if status == 200:
                extra += [
                    ("Accept", ", ".join(self.config.accept)),
                    ("Supported", ", ".join(self._supported)),
                ]
        extra += self._identity("Server")
        with_headers(response, extra)
        tx.respond(response, now)

    # ======================================================================
    # helpers
    # ======================================================================

    def _transition(self, input_: CallInput) -> None:
        try:
            self.state = CALL_TABLE[(self.state, input_)]
        except KeyError:
            raise ProtocolError(f"call in state {self.state.value} cannot {input_.value}") from None

    def _end(self, cause: str, status: int | None, reason: str) -> None:
        if self.state is not CallState.TERMINATED:
            raise ProtocolError(f"call in state {self.state.value} cannot end ({cause})")
        self._success = None
        self._reliable = None
        self._held_success = None
        self._cancel_deadline = None
        self._glare_retry_at = None
        self.session_timer.stop()
        self._transfer_deadline = None
        if self.dialog is not None and self.dialog.state is not DialogState.TERMINATED:
            self.dialog.terminate()
        self._events.append(ev.Ended(cause, status, reason))

    def _via(self) -> Via:
        host, port = self.config.local_address
        return Via(
            self.config.transport,
            host,
            port,
            branch=f"{MAGIC_COOKIE}{_token(self.rng)}",
            rport=True,
        )

    def _identity(self, name: str) -> list[tuple[str, str]]:
        """The User-Agent or Server header field, when one is configured."""
        return [(name, self.config.user_agent)] if self.config.user_agent else []

    def _contact(self) -> NameAddr:
        host, port = self.public_address
        transport = self.config.transport.lower()
        params = [("transport", transport)] if transport != "udp" else []
        if self.config.contact_scheme == "sips":
            params = []  # sips: means TLS (RFC 5630 §3.1.3)
        return NameAddr(
            URI(
                scheme=self.config.contact_scheme,
                user=self.config.contact_user,
                host=host,
                port=port,
                params=params,
            )
        )

    def _learn_public_address(self, response: Response) -> None:
        """RFC 3581 §9: the received/rport on our Via say how the far end sees us."""
        via = response.top_via
        if via is None or (via.received is None and via.rport is None):
            return
        host = via.received or self.public_address[0]
        port = via.rport if via.rport is not None else self.public_address[1]
        self.public_address = (host, port)

    def _stamp_via(self, request: Request, source: Address) -> Request:
        """§18.2.1 received, RFC 3581 rport: note on the top Via where it really came from."""
        via = request.top_via
        if via is None:
            return request
        received = source[0] if via.host.strip("[]") != source[0] else via.received
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

    @staticmethod
    def _via_reply_address(via: Via | None, source: Address) -> Address:
        """Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): over TCP and TLS, back
        on the connection the request came on, whatever the Via names; over UDP, to the
        address the request came from (its ``received``), at the rport or the Via's port.
        Never to a ``maddr`` or a ``received`` the sender wrote itself: a forged Via
        would turn our responses (a 200's retransmissions) on a third party."""
        if via is None or via.transport.upper() in RELIABLE_TRANSPORTS:
            return source
        if via.has_rport:
            return (source[0], via.rport or source[1])
        return (source[0], via.port or 5060)


def _allows_update(message: Request | Response) -> bool:
    return any(
        method.strip().upper() == "UPDATE"
        for value in message.headers.get_all("Allow")
        for method in value.split(",")
    )


def _belongs_to(request: Request, dialog: Dialog) -> bool:
    """§12.2.2: Call-ID, our tag in To and theirs in From identify the dialog."""
    return (
        dialog.state is not DialogState.TERMINATED
        and request.call_id == dialog.call_id
        and request.to.tag == dialog.local_tag
        and (request.from_.tag or "") == dialog.remote_tag
    )


def _q_order(contact: NameAddr) -> float:
    """Sort key: highest q first; a Contact without q counts as 1.0 (RFC 3261 §20.10)."""
    try:
        q = contact.q
    except (ValueError, SIPParseError):
        return 1.0  # an unreadable q sorts last
    return -(q if q is not None else 1.0)


def _to_tag_or_new(request: Request, rng: random.Random) -> str | None:
    try:
        tag = request.to.tag
    except SIPParseError:
        return None  # a To we cannot read is echoed as it came
    return None if tag is not None else _token(rng)


def _cause_of(status: int) -> str:
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if status == 487:
        return "cancelled"
    return "rejected"
