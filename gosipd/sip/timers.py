"""RFC 3261 timer values (Table 4 of §A), derived from T1, T2 and T4.

Every transaction reads its timers from one ``Timers`` so that a deployment
(or a test) can change T1 once and have A..M follow, as the RFC intends.
``reliable=True`` is the table's TCP/TLS column: no retransmission timers
(A, E and G are infinite: never started) and no wait for retransmissions
(D, I, J and K are zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Timers"]


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum duration a message remains in the network
    #: Timer D for unreliable transports: "at least 32 seconds".
    d_unreliable: float = 32.0
    #: The transport is reliable (TCP, TLS): nothing is retransmitted by transactions.
    reliable: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2):
            raise ValueError(f"timers need 0 < T1 <= T2, got T1={self.t1} T2={self.t2}")
        if self.t4 <= 0:
            raise ValueError(f"T4 must be positive, got {self.t4}")

    @property
    def a(self) -> float:
        """INVITE request retransmit interval (initial; doubles)."""
        return math.inf if self.reliable else self.t1

    @property
    def b(self) -> float:
        """INVITE transaction timeout."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """Wait time for response retransmits (INVITE client)."""
        return 0.0 if self.reliable else self.d_unreliable

    @property
    def e(self) -> float:
        """Non-INVITE request retransmit interval (initial; doubles up to T2)."""
        return math.inf if self.reliable else self.t1

    @property
    def f(self) -> float:
        """Non-INVITE transaction timeout."""
        return 64 * self.t1

    @property
    def g(self) -> float:
        """INVITE response retransmit interval (initial; doubles up to T2)."""
        return math.inf if self.reliable else self.t1

    @property
    def h(self) -> float:
        """Wait time for ACK receipt."""
        return 64 * self.t1

    @property
    def i(self) -> float:
        """Wait time for ACK retransmits."""
        return 0.0 if self.reliable else self.t4

    @property
    def j(self) -> float:
        """Wait time for non-INVITE request retransmits."""
        return 0.0 if self.reliable else 64 * self.t1

    @property
    def k(self) -> float:
        """Wait time for response retransmits (non-INVITE client)."""
        return 0.0 if self.reliable else self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        """Wait time for accepted INVITE request retransmits (RFC 6026)."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """Wait time for retransmission of 2xx to INVITE or additional 2xx (RFC 6026)."""
        return 64 * self.t1
