"""RFC 3261 §17 transactions (with RFC 6026's Accepted state), sans-I/O.

Four machines: INVITE and non-INVITE, client and server. Each one's every
transition lives in one table below, ``(state, input) -> (state, actions)``,
so a reader can check it against the RFC's figures 5 to 8 (and RFC 6026
§7); the classes only carry out the named actions. A network input that a
state does not expect is listed explicitly as ignored; a transaction-user
call that the table does not allow raises ``ProtocolError``.

Transactions do not own sockets or clocks: they append ``(bytes, address)``
to an outbox, return ``TransactionEvent``s for their user, and say when they
next need ``handle_timer``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from gosipd.sip.timers import Timers

if TYPE_CHECKING:
    from gosipd.sip.message import Request, Response

__all__ = [
    "MAGIC_COOKIE",
    "Address",
    "ClientInvite",
    "ClientNonInvite",
    "ClientTransaction",
    "Input",
    "ProtocolError",
    "ServerInvite",
    "ServerNonInvite",
    "ServerTransaction",
    "State",
    "TransactionEvent",
    "TransactionTimeout",
    "TransportFailure",
    "client_key",
    "server_key",
]

MAGIC_COOKIE = "z9hG4bK"

Address = tuple[str, int]
Outbox = list[tuple[bytes, Address]]


class ProtocolError(Exception):
    """A transition the state table does not allow, named by machine, state and input."""


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
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request retransmission"
    ACK = "ACK"
    TRANSPORT_ERROR = "transport error"
    # from the transaction user
    SEND_PROVISIONAL = "TU 1xx"
    SEND_SUCCESS = "TU 2xx"
    SEND_FAILURE = "TU 300-699"
    # timers
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"


class Action(enum.Enum):
    PASS_UP = "pass the response to the TU"
    RETRANSMIT = "retransmit the request"
    SEND = "send the TU's response"
    RESEND = "resend the last response"
    SEND_ACK = "send ACK for the non-2xx final"
    START_A = "start A"
    STOP_A_B = "stop A and B"
    STOP_G_H = "stop G and H"
    START_B = "start B"
    START_D = "start D"
    START_E = "start E"
    START_E_T2 = "E at T2"
    START_F = "start F"
    START_G = "start G"
    START_H = "start H"
    START_I = "start I"
    START_J = "start J"
    START_K = "start K"
    START_L = "start L"
    START_M = "start M"
    DOUBLE_A = "double A"
    DOUBLE_E = "double E up to T2"
    DOUBLE_G = "double G up to T2"
    REPORT_TIMEOUT = "report timeout to the TU"
    REPORT_TRANSPORT_ERROR = "report transport error to the TU"
    PASS_ACK = "pass the ACK to the TU"


Table = Mapping[tuple[State, Input], tuple[State, tuple[Action, ...]]]

S, I, A = State, Input, Action
_IGNORE: tuple[Action, ...] = ()

#: RFC 3261 Figure 5 with RFC 6026 §7.2 (the Accepted state).
INVITE_CLIENT_TABLE: Table = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (A.RETRANSMIT, A.DOUBLE_A)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.CALLING, I.PROVISIONAL): (S.PROCEEDING, (A.STOP_A_B, A.PASS_UP)),
    (S.CALLING, I.SUCCESS): (S.ACCEPTED, (A.STOP_A_B, A.PASS_UP, A.START_M)),
    (S.CALLING, I.FAILURE): (S.COMPLETED, (A.STOP_A_B, A.SEND_ACK, A.PASS_UP, A.START_D)),
    (S.CALLING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.PASS_UP, A.START_M)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_ACK, A.PASS_UP, A.START_D)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.ACCEPTED, I.PROVISIONAL): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, I.SUCCESS): (S.ACCEPTED, (A.PASS_UP,)),
    (S.ACCEPTED, I.FAILURE): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, I.TRANSPORT_ERROR): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, I.PROVISIONAL): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, I.SUCCESS): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, (A.SEND_ACK,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, _IGNORE),
}

#: RFC 3261 Figure 6.
NON_INVITE_CLIENT_TABLE: Table = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (A.RETRANSMIT, A.DOUBLE_E)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_UP,)),
    (S.TRYING, I.SUCCESS): (S.COMPLETED, (A.PASS_UP, A.START_K)),
    (S.TRYING, I.FAILURE): (S.COMPLETED, (A.PASS_UP, A.START_K)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (A.RETRANSMIT, A.START_E_T2)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_UP,)),
    (S.PROCEEDING, I.SUCCESS): (S.COMPLETED, (A.PASS_UP, A.START_K)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.PASS_UP, A.START_K)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.PROVISIONAL): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, I.SUCCESS): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.COMPLETED, _IGNORE),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, _IGNORE),
}

#: RFC 3261 Figure 7 with RFC 6026 §7.1 (the Accepted state).
INVITE_SERVER_TABLE: Table = {
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RESEND,)),
    (S.PROCEEDING, I.ACK): (S.PROCEEDING, _IGNORE),
    (S.PROCEEDING, I.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, I.SEND_SUCCESS): (S.ACCEPTED, (A.SEND, A.START_L)),
    (S.PROCEEDING, I.SEND_FAILURE): (S.COMPLETED, (A.SEND, A.START_G, A.START_H)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.ACCEPTED, I.REQUEST): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (A.PASS_ACK,)),
    (S.ACCEPTED, I.SEND_SUCCESS): (S.ACCEPTED, (A.SEND,)),
    (S.ACCEPTED, I.TRANSPORT_ERROR): (S.ACCEPTED, _IGNORE),
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, _IGNORE),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RESEND,)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, (A.STOP_G_H, A.START_I)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (A.RESEND, A.DOUBLE_G)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.CONFIRMED, I.REQUEST): (S.CONFIRMED, _IGNORE),
    (S.CONFIRMED, I.ACK): (S.CONFIRMED, _IGNORE),
    (S.CONFIRMED, I.TRANSPORT_ERROR): (S.CONFIRMED, _IGNORE),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, _IGNORE),
}

#: RFC 3261 Figure 8.
NON_INVITE_SERVER_TABLE: Table = {
    (S.TRYING, I.REQUEST): (S.TRYING, _IGNORE),
    (S.TRYING, I.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.TRYING, I.SEND_SUCCESS): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.TRYING, I.SEND_FAILURE): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RESEND,)),
    (S.PROCEEDING, I.SEND_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, I.SEND_SUCCESS): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.PROCEEDING, I.SEND_FAILURE): (S.COMPLETED, (A.SEND, A.START_J)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RESEND,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, _IGNORE),
}
del S, I, A


# --- what a transaction tells its user -------------------------------------


@dataclass(frozen=True)
class TransactionEvent:
    """Something the transaction user must act on."""


@dataclass(frozen=True)
class ResponseReceived(TransactionEvent):
    response: Response


@dataclass(frozen=True)
class AckReceived(TransactionEvent):
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


def client_key(branch: str, method: str) -> tuple[str, str]:
    """A response matches a client transaction by top Via branch and CSeq method."""
    return (branch, "INVITE" if method == "ACK" else method)


def server_key(request: Request) -> tuple[object, ...]:
    """The key a server transaction is found by; ACK maps onto its INVITE.

    RFC 3261 requests (branch with the magic cookie) match on branch, sent-by
    and method; RFC 2543 requests on Request-URI, From tag, Call-ID, CSeq
    number and top Via (the To tag of an ACK is checked by the caller, since
    it is only known once a response went out).
    """
    via = request.via[0]
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, via.sent_by, method)
    return (
        "2543",
        str(request.uri) if request.method != "ACK" else None,
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        str(via),
        method,
    )


# --- the machines ----------------------------------------------------------


class _Transaction:
    TABLE: ClassVar[Table]
    NAME: ClassVar[str]

    state: State

    def __init__(self, timers: Timers, outbox: Outbox) -> None:
        self.timers = timers
        self.outbox = outbox
        self._deadlines: dict[Input, float] = {}
        self._intervals: dict[Input, float] = {}

    # timers

    def next_timer(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        while self.state is not State.TERMINATED:
            due = [(t, timer) for timer, t in self._deadlines.items() if t <= now]
            if not due:
                break
            _, timer = min(due, key=lambda item: item[0])
            del self._deadlines[timer]
            events += self._fire(timer, now)
        return events

    def _start(self, timer: Input, interval: float, now: float) -> None:
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

    def _fire(self, input_: Input, now: float, message: object = None) -> list[TransactionEvent]:
        try:
            next_state, actions = self.TABLE[(self.state, input_)]
        except KeyError:
            if input_.name.startswith("SEND_"):
                raise ProtocolError(
                    f"{self.NAME} transaction in state {self.state.value} cannot {input_.value}"
                ) from None
            return []  # a stale timer, or network input with no meaning here
        self.state = next_state
        events: list[TransactionEvent] = []
        for action in actions:
            event = self._do(action, now, message)
            if event is not None:
                events.append(event)
        if next_state is State.TERMINATED:
            self._deadlines.clear()
        return events

    def _do(self, action: Action, now: float, message: object) -> TransactionEvent | None:
        raise NotImplementedError  # each machine implements the actions its table names


class ClientTransaction(_Transaction):
    """Sends one request to one destination and follows its responses."""

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
        """Abandon the transaction silently (the TU moved to another target)."""
        self.state = State.TERMINATED
        self._deadlines.clear()

    def _do(self, action: Action, now: float, message: object) -> TransactionEvent | None:
        t = self.timers
        match action:
            case Action.PASS_UP:
                assert message is not None
                self.last_response = message  # type: ignore[assignment]
                return ResponseReceived(message)  # type: ignore[arg-type]
            case Action.RETRANSMIT:
                self.outbox.append((self._wire, self.destination))
            case Action.SEND_ACK:
                self.outbox.append((bytes(self._ack_for(message)), self.destination))  # type: ignore[arg-type]
            case Action.STOP_A_B:
                self._stop(Input.TIMER_A, Input.TIMER_B)
            case Action.DOUBLE_A:
                self._double(Input.TIMER_A, now, None)
            case Action.DOUBLE_E:
                self._double(Input.TIMER_E, now, t.t2)
            case Action.START_E_T2:
                self._start(Input.TIMER_E, t.t2, now)
            case Action.START_D:
                self._start(Input.TIMER_D, t.d, now)
            case Action.START_K:
                self._stop(Input.TIMER_E, Input.TIMER_F)
                self._start(Input.TIMER_K, t.k, now)
            case Action.START_M:
                self._start(Input.TIMER_M, t.m, now)
            case Action.REPORT_TIMEOUT:
                return TransactionTimeout("B" if self.request.method == "INVITE" else "F")
            case Action.REPORT_TRANSPORT_ERROR:
                return TransportFailure(str(message))
            case _:
                raise ProtocolError(f"{self.NAME} transaction has no action {action.value!r}")
        return None

    def _ack_for(self, response: Response) -> Request:
        from gosipd.sip.requests import ack_for_failure

        return ack_for_failure(self.request, response)


class ClientInvite(ClientTransaction):
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

    def __init__(
        self, request: Request, reply_to: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        super().__init__(timers, outbox)
        self.request = request
        self.reply_to = reply_to
        self.key = server_key(request)
        self.last_response: Response | None = None
        self._wire = b""

    def receive_request(self, request: Request, now: float) -> list[TransactionEvent]:
        """A retransmission of our request, or (INVITE) the ACK for our final response."""
        input_ = Input.ACK if request.method == "ACK" else Input.REQUEST
        return self._fire(input_, now, request)

    def respond(self, response: Response, now: float) -> list[TransactionEvent]:
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

    def _do(self, action: Action, now: float, message: object) -> TransactionEvent | None:
        t = self.timers
        match action:
            case Action.SEND:
                self.last_response = message  # type: ignore[assignment]
                self._wire = bytes(message)  # type: ignore[call-overload]
                self.outbox.append((self._wire, self.reply_to))
            case Action.RESEND:
                if self._wire:
                    self.outbox.append((self._wire, self.reply_to))
            case Action.PASS_ACK:
                return AckReceived(message)  # type: ignore[arg-type]
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
                raise ProtocolError(f"{self.NAME} transaction has no action {action.value!r}")
        return None


class ServerInvite(ServerTransaction):
    TABLE = INVITE_SERVER_TABLE
    NAME = "INVITE server"

    def __init__(
        self, request: Request, reply_to: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        self.state = State.PROCEEDING
        super().__init__(request, reply_to, timers, outbox, now)


class ServerNonInvite(ServerTransaction):
    TABLE = NON_INVITE_SERVER_TABLE
    NAME = "non-INVITE server"

    def __init__(
        self, request: Request, reply_to: Address, timers: Timers, outbox: Outbox, now: float
    ) -> None:
        self.state = State.TRYING
        super().__init__(request, reply_to, timers, outbox, now)
