"""The requests a UA derives from others: ACK (for 2xx and for failures), CANCEL, and a BYE
rebuilt from published dialog state.

RFC 3261 is exact about which header fields each copies from where
(§17.1.1.3 for the ACK of a failure, §13.2.2.4 for the ACK of a 2xx, §9.1 for
CANCEL), so each rule lives in one function here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gosipd.sip import URI, NameAddr, Request, Response, Via

if TYPE_CHECKING:
    from gosipd.sip.dialog import Dialog

__all__ = ["ack_for_2xx", "ack_for_failure", "bye_from_state", "cancel_for", "with_headers"]


def with_headers(message: Request | Response, headers: Iterable[tuple[str, str]]) -> None:
    """Append header fields in order."""
    for name, value in headers:
        message.headers.add(name, value)


def ack_for_failure(invite: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 300-699 (§17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via (so the same
    branch) as the INVITE; To from the response (with its tag); the INVITE's
    Route header fields.
    """
    ack = Request.create(
        "ACK",
        invite.uri,
        from_=invite.from_,
        to=response.to,
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        via=invite.via[:1],
        route=invite.route,
    )
    return ack


def ack_for_2xx(
    dialog: Dialog, cseq_number: int, via: Via, *, invite: Request | None = None
) -> Request:
    """The ACK for a 2xx: a request of the dialog with the INVITE's CSeq number (§13.2.2.4).

    It carries the same credentials as the INVITE (``invite``), as §13.2.2.4 requires.
    """
    request_uri, routes = dialog.request_uri_and_route()
    headers: list[tuple[str, str]] = []
    if invite is not None:
        for name in ("Authorization", "Proxy-Authorization"):
            headers += [(name, value) for value in invite.headers.get_all(name)]
    return Request.create(
        "ACK",
        request_uri,
        from_=dialog.local_party,
        to=dialog.remote_party,
        call_id=dialog.call_id,
        cseq=cseq_number,
        via=via,
        route=routes,
        headers=headers,
    )


def cancel_for(invite: Request) -> Request:
    """CANCEL for an INVITE (§9.1): its Request-URI, Call-ID, To, From, CSeq number,
    top Via and Route, and nothing more."""
    return Request.create(
        "CANCEL",
        invite.uri,
        from_=invite.from_,
        to=invite.to,
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        via=invite.via[:1],
        route=invite.route,
    )


def bye_from_state(state: Mapping[str, Any], via: Via) -> Request:
    """A BYE for a confirmed dialog described by ``Dialog.published_state()``.

    The state holds ``call_id``, ``local_tag``, ``remote_tag``, ``local_uri``,
    ``remote_uri`` (name-addrs as text, without tags), ``remote_target``,
    ``route_set`` (list of text) and ``local_seq``: what RFC 3261 §12.2.1.1 needs.
    Raises KeyError, ValueError or SIPParseError when the state is incomplete or broken.
    """
    from gosipd.sip.dialog import Dialog, DialogState

    local = NameAddr.parse(state["local_uri"])
    remote = NameAddr.parse(state["remote_uri"])
    remote_tag = str(state["remote_tag"])
    dialog = Dialog(
        call_id=str(state["call_id"]),
        local_tag=str(state["local_tag"]),
        remote_tag=remote_tag,
        local_party=local.with_tag(str(state["local_tag"])),
        remote_party=remote.with_tag(remote_tag) if remote_tag else remote,
        local_seq=int(state["local_seq"]),
        remote_seq=None,
        remote_target=URI.parse(state["remote_target"]),
        route_set=tuple(NameAddr.parse(route) for route in state.get("route_set", [])),
        local_contact=local,
        state=DialogState.CONFIRMED,
    )
    request_uri, routes = dialog.request_uri_and_route()
    return Request.create(
        "BYE",
        request_uri,
        from_=dialog.local_party,
        to=dialog.remote_party,
        call_id=dialog.call_id,
        cseq=dialog.next_cseq(),
        via=via,
        route=routes,
        headers=[("Reason", 'SIP;cause=500;text="call process ended"')],
    )
