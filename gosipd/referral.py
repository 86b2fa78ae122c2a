"""Following the far end's REFER (RFC 3515, we are the transferee): the policy that says
whether we may, and the state of the call we place for it.

While the new call rings, the call has two dialogs: the transferor's, which hears how
it goes (NOTIFY), and the new one. The media session is the call's, not a dialog's: when
the target answers, the session is pointed at it (as a re-INVITE would) and the app
goes on, now talking to the target. If the target does not answer, the call goes on
with the transferor as if nothing happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import trio

from gosipd.config import TrunkConfig
from gosipd.connections import RelayEndpoint, StreamEndpoint
from gosipd.locate import Failover, UdpEndpoint
from gosipd.sip import URI
from gosipd.sip.ua import UserAgent
from gosipd.trunk import DialError, dial_target, host_key

__all__ = ["REFERRER_BYE_WAIT_S", "Leg", "Referral", "refused_target"]

#: How long the transferor has to BYE us once the target answered (RFC 5589 §6: it
#: does, on the final NOTIFY) before we BYE it ourselves.
REFERRER_BYE_WAIT_S = 4.0

Endpoint = UdpEndpoint | StreamEndpoint | RelayEndpoint


@dataclass
class Leg:
    """A dialog's signalling beside the call's current one: its engine, the socket it
    speaks through, and the task that feeds it (cancelled when the leg is put away)."""

    ua: UserAgent
    endpoint: Endpoint
    failover: Failover | None
    receiving: trio.CancelScope


@dataclass
class Referral:
    """A REFER we follow. ``saved``: the call's signalling state from before the new
    dialog replaced it, put back if the target never answers."""

    target: URI
    referrer: Leg
    saved: dict[str, Any]
    following: bool = True  # until the target answers or the attempt is over
    #: The new call's final failure status, when it had one.
    status: int | None = None
    reason: str = ""
    referrer_gone: bool = False  # the transferor hung up (it may, once it sent the REFER)
    #: When we BYE the transferor ourselves, once the target answered.
    bye_at: float = math.inf
    #: The app (or a limit) hung up while the target rang: end the call when it stops.
    hangup_cause: str | None = None
    #: Around locating the target and sending its INVITE (cancelled by a hangup).
    placing: trio.CancelScope = field(default_factory=trio.CancelScope)


def refused_target(
    target: URI, policy: str, trunk: TrunkConfig, trunk_names: frozenset[str]
) -> str | None:
    """Why ``policy`` (``[sip] accept_refer``) does not let us call ``target``, or None.
    "trunk": only targets the trunk carries (its domain or proxy, which then routes)."""
    if policy == "any":
        return None
    if policy != "trunk":
        return "[sip] accept_refer = off"
    try:
        dial = dial_target(str(target), trunk)
    except DialError as exc:
        return str(exc)
    if dial.via_proxy or host_key(target.host) in trunk_names:
        return None
    return "[sip] accept_refer = trunk, and the target is not the trunk"
