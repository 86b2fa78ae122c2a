"""RFC 3261 §12 dialogs: the state two user agents share, and how in-dialog requests are made.

A dialog is identified by Call-ID and the two tags; it carries the sequence
numbers, the remote target (refreshed by target-refresh requests and their
responses) and the route set fixed when it was created. ``Dialog`` builds
the Request-URI and Route of in-dialog requests (§12.2.1.1, loose and strict
routing) and checks the CSeq of incoming ones (§12.2.2).

The dialog's own life (early, confirmed, terminated) follows ``DIALOG_TABLE``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from gosipd.sip import URI, NameAddr, Request, Response
from gosipd.sip.transaction import ProtocolError

__all__ = ["DIALOG_TABLE", "PUBLISHED_KEYS", "Dialog", "DialogState"]

#: Methods whose requests and 2xx refresh the remote target (RFC 3261 §12.2, RFC 3311).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})
#: Request-URI parameters a strict router's URI loses when it becomes the Request-URI
#: (RFC 3261 §19.1.1 Table 1: ``method`` is not allowed there; nor are URI headers).
_NOT_IN_REQUEST_URI = ("method",)
#: The keys of ``Dialog.published_state()``: what ``requests.bye_from_state`` needs.
PUBLISHED_KEYS = (
    "call_id",
    "local_tag",
    "remote_tag",
    "local_uri",
    "remote_uri",
    "remote_target",
    "route_set",
    "local_seq",
)


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogInput(enum.Enum):
    CONFIRM = "be confirmed by a 2xx"
    TERMINATE = "be terminated"


#: §12: a 1xx with a tag makes an early dialog, a 2xx confirms it; BYE (or a final
#: failure of the INVITE) ends either.
DIALOG_TABLE: dict[tuple[DialogState, DialogInput], DialogState] = {
    (DialogState.EARLY, DialogInput.CONFIRM): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, DialogInput.CONFIRM): DialogState.CONFIRMED,
    (DialogState.EARLY, DialogInput.TERMINATE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.TERMINATE): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.TERMINATE): DialogState.TERMINATED,
}


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    #: "" for an RFC 2543 peer that sent no tag
    remote_tag: str
    #: our From in requests we send (with our tag)
    local_party: NameAddr
    #: our To in requests we send (with the remote tag, when there is one)
    remote_party: NameAddr
    local_seq: int
    remote_seq: int | None
    remote_target: URI
    route_set: tuple[NameAddr, ...]
    local_contact: NameAddr
    state: DialogState = DialogState.EARLY
    secure: bool = False
    #: RSeq of the last reliable provisional we acknowledged (RFC 3262 §4), UAC side.
    last_rseq: int | None = None

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- creation ------------------------------------------------------------

    @classmethod
    def for_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAC holds after a 1xx-with-tag or 2xx to its request (§12.1.2):
        remote target from the response's Contact, route set from its Record-Route
        in reverse."""
        to_tag = response.to.tag
        if to_tag is None:
            raise ProtocolError(f"a {response.status} without a To tag creates no dialog")
        contact = response.contact[0].uri if response.contact else request.uri
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=to_tag,
            local_party=request.from_,
            remote_party=response.to,
            local_seq=request.cseq.number,
            remote_seq=None,
            remote_target=contact,
            route_set=tuple(reversed(response.record_route)),
            local_contact=request.contact[0] if request.contact else NameAddr(request.from_.uri),
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            secure=request.uri.scheme == "sips",
        )

    @classmethod
    def for_uas(cls, request: Request, local_tag: str, local_contact: NameAddr) -> Dialog:
        """The dialog a UAS holds once it answers an INVITE with a tag (§12.1.1): remote
        target from the request's Contact, route set from its Record-Route in order."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_party=request.to.with_tag(local_tag),
            remote_party=request.from_,
            local_seq=0,
            remote_seq=request.cseq.number,
            remote_target=request.contact[0].uri if request.contact else request.from_.uri,
            route_set=tuple(request.record_route),
            local_contact=local_contact,
            secure=request.uri.scheme == "sips",
        )

    def confirm(self, response: Response | None = None) -> None:
        """A 2xx confirms the dialog; a UAC takes its route set and target from it
        (§13.2.2.4: the route set is recomputed from the 2xx)."""
        self.state = self._next(DialogInput.CONFIRM)
        if response is not None:
            self.route_set = tuple(reversed(response.record_route))
            self.refresh_target(response)

    def terminate(self) -> None:
        self.state = self._next(DialogInput.TERMINATE)

    def _next(self, input_: DialogInput) -> DialogState:
        try:
            return DIALOG_TABLE[(self.state, input_)]
        except KeyError:
            raise ProtocolError(
                f"dialog in state {self.state.value} cannot {input_.value}"
            ) from None

    # --- requests we send ----------------------------------------------------

    def next_cseq(self) -> int:
        """The CSeq number of our next request (§12.2.1.1: one more than the last)."""
        self.local_seq += 1
        return self.local_seq

    def request_uri_and_route(self) -> tuple[URI, list[NameAddr]]:
        """The Request-URI and Route header fields of an in-dialog request (§12.2.1.1).

        Loose routing (the first route has ``lr``): the remote target is the
        Request-URI and the route set is the Route. Strict routing: the first route
        becomes the Request-URI, and the rest of the route set, then the remote
        target, are the Route.
        """
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if first.uri.lr:
            return self.remote_target, list(self.route_set)
        request_uri = first.uri.without_params(*_NOT_IN_REQUEST_URI).replace(headers=())
        routes = [*self.route_set[1:], NameAddr(self.remote_target)]
        return request_uri, routes

    def next_hop(self) -> URI:
        """Where an in-dialog request goes first: the first route, else the remote target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    # --- requests we receive -------------------------------------------------

    def accept_remote_cseq(self, request: Request) -> bool:
        """Record the CSeq of an in-dialog request; False when it is out of order (→ 500)."""
        number = request.cseq.number
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def refresh_target(self, message: Request | Response) -> None:
        """A target-refresh request or its 2xx moves the remote target (§12.2)."""
        if message.contact:
            self.remote_target = message.contact[0].uri

    # --- what a supervisor needs to end it ------------------------------------

    def published_state(self) -> dict[str, Any]:
        """The dialog as JSON-serialisable data, enough to send a BYE for it from another
        process (``gosipd.sip.requests.bye_from_state``): the keys of ``PUBLISHED_KEYS``."""
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local_uri": str(self.local_party.without_params("tag")),
            "remote_uri": str(self.remote_party.without_params("tag")),
            "remote_target": str(self.remote_target),
            "route_set": [str(route) for route in self.route_set],
            "local_seq": self.local_seq,
        }
