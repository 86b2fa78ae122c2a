"""RFC 3261 §12 dialogs: the state two user agents share, and how in-dialog requests are made.

A dialog is identified by Call-ID and the two tags; it carries the sequence
numbers, the remote target (refreshed by target-refresh requests and their
responses) and the route set fixed when it was created. ``Dialog`` builds
in-dialog requests (§12.2.1.1, with loose and strict routing) and checks the
CSeq of incoming ones (§12.2.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gosipd.sip import URI, NameAddr, Request, Response

__all__ = ["Dialog", "DialogState"]

#: Methods whose requests and 2xx refresh the remote target (RFC 3261 §12.2, RFC 3311).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_party: NameAddr  # our From in requests we send
    remote_party: NameAddr  # our To in requests we send
    local_seq: int
    remote_seq: int | None
    remote_target: URI
    route_set: tuple[NameAddr, ...]
    local_contact: NameAddr
    state: DialogState = DialogState.EARLY
    secure: bool = False
    #: RSeq of the last reliable provisional we acknowledged (RFC 3262), UAC side.
    last_rseq: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- creation ------------------------------------------------------------

    @classmethod
    def for_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAC holds after a 1xx-with-tag or 2xx to its request (§12.1.2)."""
        contact = response.contact[0].uri if response.contact else request.uri
        to_tag = response.to.tag
        assert to_tag is not None, "a dialog needs the remote tag"
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
            local_contact=request.contact[0],
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            secure=request.uri.scheme == "sips",
        )

    @classmethod
    def for_uas(cls, request: Request, local_tag: str, local_contact: NameAddr) -> Dialog:
        """The dialog a UAS holds once it answers an INVITE with a tag (§12.1.1)."""
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

    # --- requests we send ----------------------------------------------------

    def next_cseq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    def request_uri_and_route(self) -> tuple[URI, list[NameAddr]]:
        """The Request-URI and Route headers of an in-dialog request (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if first.uri.lr:
            return self.remote_target, list(self.route_set)
        # Strict routing: the first route becomes the Request-URI (without the
        # parameters not allowed there), the remote target goes last.
        request_uri = first.uri.without_params("method", "maddr", "ttl", "transport", "lr")
        routes = [*self.route_set[1:], NameAddr(self.remote_target)]
        return request_uri, routes

    def next_hop(self) -> URI:
        """Where an in-dialog request goes first: the top Route, else the remote target."""
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
        if message.contact and message.contact[0].uri is not None:
            self.remote_target = message.contact[0].uri
