"""RFC 3261 §17 transactions (with RFC 6026's Accepted state), sans-I/O.

Four machines: INVITE and non-INVITE, client and server. Each one's every
transition lives in one table below, ``(state, input) -> (state, actions)``,
so a reader can check it against the RFC's figures 5 to 8 (and RFC 6026
§7); the classes only carry out the named actions. Every network input is
listed in every state of the machine that can receive it, even when the
answer is "ignore it"; an input a table does not list (a transaction-user
call the state forbids, such as a second final response) raises
``ProtocolError`` naming the machine, the state and the input.

Transactions do not own sockets or clocks: they append ``(bytes, address)``
to an outbox, return ``TransactionEvent``s for their user, and say when they
next need ``handle_timer``. Over a reliable transport (``Timers.reliable``)
the retransmission timers never start and D, I, J and K are zero.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from gosipd.sip.message import Request, Response
from gosipd.sip.requests import ack_for_failure
from gosipd.sip.timers import Timers

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "Action",
    "Address",
    "ClientInvite",
    "ClientNonInvite",
    "ClientTransaction",
    "Input",
    "ProtocolError",
    "ResponseReceived",
    "ServerInvite",
    "ServerNonInvite",
    "ServerTransaction",
    "State",
    "TransactionEvent",
    "TransactionTimeout",
    "TransportFailure",
    "client_key",
    "is_rfc3261_branch",
    "server_key",
]

#: The branch prefix of RFC 3261 requests (§8.1.1.7); without it a request is RFC 2543's.
MAGIC_COOKIE = "z9hG4bK"

Address = tuple[str, int]
Outbox = list[tuple[bytes, Address]]


class ProtocolError(Exception):
    """A transition a state table does not allow, named by machine, state and input."""


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    # from the network
    PROVISIONAL = "receive 1xx"
    SUCCESS = "receive 2xx"
    FAILURE = "receive 300-699"
    REQUEST = "receive a retransmission of the request"
    ACK = "receive ACK"
    TRANSPORT_ERROR = "report a transport error"
    # from the transaction user
    SEND_PROVISIONAL = "send 1xx"
    SEND_SUCCESS = "send 2xx"
    SEND_FAILURE = "send 300-699"
    ABANDON = "be abandoned by the TU"
    # timers
    TIMER_A = "fire Timer A"
    TIMER_B = "fire Timer B"
    TIMER_D = "fire Timer D"
    TIMER_E = "fire Timer E"
    TIMER_F = "fire Timer F"
    TIMER_G = "fire Timer G"
    TIMER_H = "fire Timer H"
    TIMER_I = "fire Timer I"
    TIMER_J = "fire Timer J"
    TIMER_K = "fire Timer K"
    TIMER_L = "fire Timer L"
    TIMER_M = "fire Timer M"


#: What a client transaction can be told by the network, and a server transaction.
CLIENT_NETWORK_INPUTS = (Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE, Input.TRANSPORT_ERROR)
SERVER_NETWORK_INPUTS = (Input.REQUEST, Input.ACK, Input.TRANSPORT_ERROR)


class Action(enum.Enum):
    PASS_UP = "pass the response to the TU"
    RETRANSMIT = "retransmit the request"
    SEND = "send the TU's response"
    RESEND = "resend the last response"
    SEND_ACK = "send ACK for the 300-699 response"
    PASS_ACK = "pass the ACK to the TU"
    START_D = "start Timer D"
    START_G = "start Timer G"
    START_H = "start Timer H"
    START_I = "start Timer I"
    START_J = "start Timer J"
    START_K = "start Timer K"
    START_L = "start Timer L"
    START_M = "start Timer M"
    DOUBLE_A = "restart Timer A at twice its interval"
    DOUBLE_E = "restart Timer E at twice its interval, at most T2"
    E_AT_T2 = "restart Timer E at T2"
    DOUBLE_G = "restart Timer G at twice its interval, at most T2"
    STOP_A_B = "stop Timers A and B"
    STOP_E_F = "stop Timers E and F"
    STOP_G_H = "stop Timers G and H"
    REPORT_TIMEOUT = "report the timeout to the TU"
    REPORT_TRANSPORT_ERROR = "report the transport error to the TU"


Row = tuple[State, tuple[Action, ...]]
Table = Mapping[tuple[State, Input], Row]

S, In, A = State, Input, Action
_IGNORE: tuple[Action, ...] = ()


def _ignored(state: State, inputs: tuple[Input, ...]) -> dict[tuple[State, Input], Row]:
    return {(state, input_): (state, _IGNORE) for input_ in inputs}


#: RFC 3261 Figure 5 with RFC 6026 §7.2 (the Accepted state).
INVITE_CLIENT_TABLE: Table = {
    (S.CALLING, In.TIMER_A): (S.CALLING, (A.RETRANSMIT, A.DOUBLE_A)),
    (S.CALLING, In.TIMER_B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.CALLING, In.PROVISIONAL): (S.PROCEEDING, (A.STOP_A_B, A.PASS_UP)),
    (S.CALLING, In.SUCCESS): (S.ACCEPTED, (A.STOP_A_B, A.PASS_UP, A.START_M)),
    (S.CALLING, In.FAILURE): (S.COMPLETED, (A.STOP_A_B, A.SEND_ACK, A.PASS_UP, A.START_D)),
    (S.CALLING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.CALLING, In.ABANDON): (S.TERMINATED, _IGNORE),
    (S.PROCEEDING, In.PROVISIONAL): (S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, In.SUCCESS): (S.ACCEPTED, (A.PASS_UP, A.START_M)),
    (S.PROCEEDING, In.FAILURE): (S.COMPLETED, (A.SEND_ACK, A.PASS_UP, A.START_D)),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, In.ABANDON): (S.TERMINATED, _IGNORE),
    # RFC 6026 §8.4: further 2xx (retransmissions, other forks) go up to the TU
    (S.ACCEPTED, In.PROVISIONAL): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, In.SUCCESS): (S.ACCEPTED, (A.PASS_UP,)),
    (S.ACCEPTED, In.FAILURE): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, In.TRANSPORT_ERROR): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, In.TIMER_M): (S.TERMINATED, _IGNORE),
    (S.ACCEPTED, In.ABANDON): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, In.PROVISIONAL): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, In.SUCCESS): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, In.FAILURE): (S.COMPLETED, (A.SEND_ACK,)),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, In.TIMER_D): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, In.ABANDON): (S.TERMINATED, _IGNORE),
    **_ignored(S.TERMINATED, (*CLIENT_NETWORK_INPUTS, In.ABANDON)),
}

#: RFC 3261 Figure 6.
NON_INVITE_CLIENT_TABLE: Table = {
    (S.TRYING, In.TIMER_E): (S.TRYING, (A.RETRANSMIT, A.DOUBLE_E)),
    (S.TRYING, In.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.TRYING, In.PROVISIONAL): (S.PROCEEDING, (A.PASS_UP,)),
    (S.TRYING, In.SUCCESS): (S.COMPLETED, (A.STOP_E_F, A.PASS_UP, A.START_K)),
    (S.TRYING, In.FAILURE): (S.COMPLETED, (A.STOP_E_F, A.PASS_UP, A.START_K)),
    (S.TRYING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.TRYING, In.ABANDON): (S.TERMINATED, _IGNORE),
    (S.PROCEEDING, In.TIMER_E): (S.PROCEEDING, (A.RETRANSMIT, A.E_AT_T2)),
    (S.PROCEEDING, In.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, In.PROVISIONAL): (S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, In.SUCCESS): (S.COMPLETED, (A.STOP_E_F, A.PASS_UP, A.START_K)),
    (S.PROCEEDING, In.FAILURE): (S.COMPLETED, (A.STOP_E_F, A.PASS_UP, A.START_K)),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, In.ABANDON): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, In.PROVISIONAL): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, In.SUCCESS): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, In.FAILURE): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, In.TIMER_K): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, In.ABANDON): (S.TERMINATED, _IGNORE),
    **_ignored(S.TERMINATED, (*CLIENT_NETWORK_INPUTS, In.ABANDON)),
}

#: RFC 3261 Figure 7 with RFC 6026 §7.1 (the Accepted state).
INVITE_SERVER_TABLE: Table = {
    (S.PROCEEDING, In.REQUEST): (S.PROCEEDING, (A.RESEND,)),
    (S.PROCEEDING, In.ACK): (S.PROCEEDING, _IGNORE),
    (S.PROCEEDING, In.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, In.SEND_SUCCESS): (S.ACCEPTED, (A.SEND, A.START_L)),
    (S.PROCEEDING, In.SEND_FAILURE): (S.COMPLETED, (A.SEND, A.START_G, A.START_H)),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    # RFC 6026 §8.5-8.7: the TU retransmits the 2xx; request retransmissions are absorbed
    (S.ACCEPTED, In.REQUEST): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, In.ACK): (S.ACCEPTED, (A.PASS_ACK,)),
    (S.ACCEPTED, In.SEND_SUCCESS): (S.ACCEPTED, (A.SEND,)),
    (S.ACCEPTED, In.TRANSPORT_ERROR): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, In.TIMER_L): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, In.REQUEST): (S.COMPLETED, (A.RESEND,)),
    (S.COMPLETED, In.ACK): (S.CONFIRMED, (A.STOP_G_H, A.START_I)),
    (S.COMPLETED, In.TIMER_G): (S.COMPLETED, (A.RESEND, A.DOUBLE_G)),
    (S.COMPLETED, In.TIMER_H): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.CONFIRMED, In.REQUEST): (S.CONFIRMED, _IGNORE),
    (S.CONFIRMED, In.ACK): (S.CONFIRMED, _IGNORE),
    (S.CONFIRMED, In.TRANSPORT_ERROR): (S.CONFIRMED, _IGNORE),
    (S.CONFIRMED, In.TIMER_I): (S.TERMINATED, _IGNORE),
    **_ignored(S.TERMINATED, SERVER_NETWORK_INPUTS),
}

#: RFC 3261 Figure 8. (An ACK never reaches a non-INVITE server transaction: its key
#: names INVITE.)
NON_INVITE_SERVER_TABLE: Table = {
    (S.TRYING, In.REQUEST): (S.TRYING, _IGNORE),
    (S.TRYING, In.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.TRYING, In.SEND_SUCCESS): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.TRYING, In.SEND_FAILURE): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.TRYING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, In.REQUEST): (S.PROCEEDING, (A.RESEND,)),
    (S.PROCEEDING, In.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, In.SEND_SUCCESS): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.PROCEEDING, In.SEND_FAILURE): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, In.REQUEST): (S.COMPLETED, (A.RESEND,)),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, In.TIMER_J): (S.TERMINATED, _IGNORE),
    **_ignored(S.TERMINATED, (In.REQUEST, In.TRANSPORT_ERROR)),
}
del S, In, A


# --- what a transaction tells its user -------------------------------------


@dataclass(frozen=True)
class TransactionEvent:
    """Something the transaction user must act on."""


@dataclass(frozen=True)
class ResponseReceived(TransactionEvent):
    response: Response


@dataclass(frozen=True)
class AckReceived(TransactionEvent):
    """An ACK for our 2xx that matched the INVITE server transaction: only RFC 2543 peers
    do that (an RFC 3261 ACK for a 2xx carries a branch of its own)."""

    request: Request


@dataclass(frozen=True)
class TransactionTimeout(TransactionEvent):
    """Timer B, F or H fired: no (final) response, or no ACK, in 64·T1."""

    timer: str


@dataclass(frozen=True)
class TransportFailure(TransactionEvent):
    """The transport reported an error (an ICMP refusal, say) for the destination."""

    reason: str


# --- matching keys (§17.1.3, §17.2.3) -----------------------------------------


def is_rfc3261_branch(branch: str | None) -> bool:
    """A branch that identifies a transaction: the magic cookie and something after it
    (a bare ``z9hG4bK`` cannot be unique, RFC 4475 §3.2.1)."""
    return (
        branch is not None and len(branch) > len(MAGIC_COOKIE) and branch.startswith(MAGIC_COOKIE)
    )


ServerKey = tuple[object, ...]


def client_key(branch: str, method: str) -> tuple[str, str]:
    """A response matches a client transaction by top Via branch and CSeq method (§17.1.3);
    the ACK of a failure belongs to its INVITE's transaction."""
    return (branch, "INVITE" if method == "ACK" else method)


def server_key(request: Request, *, as_method: str | None = None) -> ServerKey:
    """The key a server transaction is found by (§17.2.3); an ACK maps onto its INVITE.

    RFC 3261 requests (branch with the magic cookie) match on branch, sent-by and
    method. RFC 2543 requests match on Request-URI, From tag, Call-ID, CSeq number,
    top Via and method; their To tag is checked by ``ServerTransaction.matches``,
    since the tag an ACK must carry is only known once a response went out.
    ``as_method`` gives the key of another method's transaction with the same
    identifiers: a CANCEL finds its INVITE with ``as_method="INVITE"`` (§9.2).
    """
    via = request.via[0]
    method = as_method or ("INVITE" if request.method == "ACK" else request.method)
    branch = via.branch or ""
    if is_rfc3261_branch(branch):
        return ("3261", branch, via.sent_by, method)
    top = via.without_params("received", "rport")  # we stamp these ourselves (§18.2.1)
    return (
        "2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        str(top),
        method,
    )


# --- the machines ----------------------------------------------------------

_Message = Request | Response | str | None


class _Transaction:
    TABLE: ClassVar[Table]
    NAME: ClassVar[str]
    NETWORK_INPUTS: ClassVar[tuple[Input, ...]]

    state: State

    def __init__(self, timers: Timers, outbox: Outbox) -> None:
        self.timers = timers
        self.outbox = outbox
        self._deadlines: dict[Input, float] = {}
        self._intervals: dict[Input, float] = {}

    # timers

    def next_timer(self) -> float | None:
        """The earliest running timer's deadline, or None."""
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[TransactionEvent]:
        """Fire every timer due at ``now``, earliest first."""
        events: list[TransactionEvent] = []
        while self._deadlines:
            timer, deadline = min(self._deadlines.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del self._deadlines[timer]
            events += self._fire(timer, now)
        return events

    def _start(self, timer: Input, interval: float, now: float) -> None:
        if math.isinf(interval):
            return  # a retransmission timer on a reliable transport: never started
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval

    def _double(self, timer: Input, now: float, cap: float | None) -> None:
        interval = self._intervals[timer] * 2
        if cap is not None:
            interval = min(interval, cap)
        self._start(timer, interval, now)

    def _stop(self, *timers: Input) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def _fire(self, input_: Input, now: float, message: _Message = None) -> list[TransactionEvent]:
        row = self.TABLE.get((self.state, input_))
        if row is None:
            raise ProtocolError(
                f"{self.NAME} transaction in state {self.state.value} cannot {input_.value}"
            )
        next_state, actions = row
        self.state = next_state
        events: list[TransactionEvent] = []
        for action in actions:
            event = self._do(action, now, message)
            if event is not None:
                events.append(event)
        if next_state is State.TERMINATED:
            self._deadlines.clear()
        return events

    def _do(self, action: Action, now: float, message: _Message) -> TransactionEvent | None:
        raise NotImplementedError  # each machine carries out the actions its table names

    def _unknown(self, action: Action) -> ProtocolError:
        return ProtocolError(f"{self.NAME} transaction has no action {action.value!r}")


class ClientTransaction(_Transaction):
    """Sends one request to one destination and follows its responses."""

    NETWORK_INPUTS = CLIENT_NETWORK_INPUTS

    def __init__(
        self, request: Request, destination: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        super().__init__(timers, outbox)
        self.request = request
        self.destination = destination
        self.branch = request.via[0].branch or ""
        self.key = client_key(self.branch, request.method)
        self._wire = bytes(request)
        self.last_response: Response | None = None
        self.outbox.append((self._wire, destination))

    def receive(self, response: Response, now: float) -> list[TransactionEvent]:
        """A response that matched this transaction (``client_key``)."""
        if response.status < 200:
            input_ = Input.PROVISIONAL
        elif response.status < 300:
            input_ = Input.SUCCESS
        else:
            input_ = Input.FAILURE
        return self._fire(input_, now, response)

    def transport_error(self, now: float, reason: str) -> list[TransactionEvent]:
        return self._fire(Input.TRANSPORT_ERROR, now, reason)

    def terminate(self) -> None:
        """Abandon the transaction silently (the TU moved on: another target, a new attempt)."""
        self._fire(Input.ABANDON, 0.0)

    def _do(self, action: Action, now: float, message: _Message) -> TransactionEvent | None:
        t = self.timers
        match action:
            case Action.PASS_UP:
                assert isinstance(message, Response)
                self.last_response = message
                return ResponseReceived(message)
            case Action.RETRANSMIT:
                self.outbox.append((self._wire, self.destination))
            case Action.SEND_ACK:
                assert isinstance(message, Response)
                ack = ack_for_failure(self.request, message)
                self.outbox.append((bytes(ack), self.destination))
            case Action.STOP_A_B:
                self._stop(Input.TIMER_A, Input.TIMER_B)
            case Action.STOP_E_F:
                self._stop(Input.TIMER_E, Input.TIMER_F)
            case Action.DOUBLE_A:
                self._double(Input.TIMER_A, now, None)
            case Action.DOUBLE_E:
                self._double(Input.TIMER_E, now, t.t2)
            case Action.E_AT_T2:
                if not t.reliable:
                    self._start(Input.TIMER_E, t.t2, now)
            case Action.START_D:
                self._start(Input.TIMER_D, t.d, now)
            case Action.START_K:
                self._start(Input.TIMER_K, t.k, now)
            case Action.START_M:
                self._start(Input.TIMER_M, t.m, now)
            case Action.REPORT_TIMEOUT:
                return TransactionTimeout("B" if self.request.method == "INVITE" else "F")
            case Action.REPORT_TRANSPORT_ERROR:
                return TransportFailure(str(message))
            case _:
                raise self._unknown(action)
        return None


class ClientInvite(ClientTransaction):
    """The INVITE client transaction (§17.1.1): Timers A, B, D and RFC 6026's M."""

    TABLE = INVITE_CLIENT_TABLE
    NAME = "INVITE client"

    def __init__(
        self, request: Request, destination: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        self.state = State.CALLING
        super().__init__(request, destination, timers, outbox, now)
        self._start(Input.TIMER_A, timers.a, now)
        self._start(Input.TIMER_B, timers.b, now)


class ClientNonInvite(ClientTransaction):
    """The non-INVITE client transaction (§17.1.2): Timers E, F and K."""

    TABLE = NON_INVITE_CLIENT_TABLE
    NAME = "non-INVITE client"

    def __init__(
        self, request: Request, destination: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        self.state = State.TRYING
        super().__init__(request, destination, timers, outbox, now)
        self._start(Input.TIMER_E, timers.e, now)
        self._start(Input.TIMER_F, timers.f, now)


class ServerTransaction(_Transaction):
    """Answers one request; absorbs its retransmissions by resending the last response."""

    NETWORK_INPUTS = SERVER_NETWORK_INPUTS

    def __init__(
        self, request: Request, reply_to: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        super().__init__(timers, outbox)
        self.request = request
        self.reply_to = reply_to
        self.key = server_key(request)
        self.last_response: Response | None = None
        self._wire = b""

    def matches(self, request: Request) -> bool:
        """Whether ``request``, found under this transaction's key, belongs to it.

        RFC 3261 requests: always (the key is the branch). RFC 2543 ones (§17.2.3): the
        To tag must be the request's, or for an ACK the one our response carried.
        """
        if self.key[0] == "3261":
            return True
        if request.method == "ACK":
            return request.to.tag == self.to_tag
        return request.to.tag == self.request.to.tag

    def receive_request(self, request: Request, now: float) -> list[TransactionEvent]:
        """A retransmission of our request, or (INVITE) the ACK for our final response."""
        input_ = Input.ACK if request.method == "ACK" else Input.REQUEST
        return self._fire(input_, now, request)

    def respond(self, response: Response, now: float) -> list[TransactionEvent]:
        """Send the TU's response (the table refuses, say, a second final response)."""
        if response.status < 200:
            input_ = Input.SEND_PROVISIONAL
        elif response.status < 300:
            input_ = Input.SEND_SUCCESS
        else:
            input_ = Input.SEND_FAILURE
        return self._fire(input_, now, response)

    def transport_error(self, now: float, reason: str) -> list[TransactionEvent]:
        return self._fire(Input.TRANSPORT_ERROR, now, reason)

    @property
    def to_tag(self) -> str | None:
        return self.last_response.to.tag if self.last_response is not None else None

    def _do(self, action: Action, now: float, message: _Message) -> TransactionEvent | None:
        t = self.timers
        match action:
            case Action.SEND:
                assert isinstance(message, Response)
                self.last_response = message
                self._wire = bytes(message)
                self.outbox.append((self._wire, self.reply_to))
            case Action.RESEND:
                if self._wire:
                    self.outbox.append((self._wire, self.reply_to))
            case Action.PASS_ACK:
                assert isinstance(message, Request)
                return AckReceived(message)
            case Action.START_G:
                self._start(Input.TIMER_G, t.g, now)
            case Action.DOUBLE_G:
                self._double(Input.TIMER_G, now, t.t2)
            case Action.STOP_G_H:
                self._stop(Input.TIMER_G, Input.TIMER_H)
            case Action.START_H:
                self._start(Input.TIMER_H, t.h, now)
            case Action.START_I:
                self._start(Input.TIMER_I, t.i, now)
            case Action.START_J:
                self._start(Input.TIMER_J, t.j, now)
            case Action.START_L:
                self._start(Input.TIMER_L, t.l, now)
            case Action.REPORT_TIMEOUT:
                return TransactionTimeout("H")
            case Action.REPORT_TRANSPORT_ERROR:
                return TransportFailure(str(message))
            case _:
                raise self._unknown(action)
        return None


class ServerInvite(ServerTransaction):
    """The INVITE server transaction (§17.2.1): Timers G, H, I and RFC 6026's L."""

    TABLE = INVITE_SERVER_TABLE
    NAME = "INVITE server"

    def __init__(
        self, request: Request, reply_to: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        self.state = State.PROCEEDING
        super().__init__(request, reply_to, timers, outbox, now)


class ServerNonInvite(ServerTransaction):
    """The non-INVITE server transaction (§17.2.2): Timer J."""

    TABLE = NON_INVITE_SERVER_TABLE
    NAME = "non-INVITE server"

    def __init__(
        self, request: Request, reply_to: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        self.state = State.TRYING
        super().__init__(request, reply_to, timers, outbox, now)
