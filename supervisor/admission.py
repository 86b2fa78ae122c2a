"""Whether a new call may start: token buckets, and per-source limits for inbound INVITEs.

The supervisor decides before it forks anything, so a flood of INVITEs costs
a dictionary lookup each, not a process. Sources are kept in a bounded table
(the least recently seen is forgotten first), so spoofed addresses cannot
grow it without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from gosipd.networks import Networks

__all__ = ["Networks", "RateLimiter", "SourceLimits"]

#: Sources remembered at once; an attacker cycling through more only forgets old buckets.
MAX_SOURCES = 65536


@dataclass
class RateLimiter:
    """A token bucket: ``rate`` per second, bursts up to one second's worth."""

    rate: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.rate

    def take(self, keep: float = 0.0, now: float | None = None) -> bool:
        """Take a token if one is left beyond the ``keep`` tokens held back for others."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens - keep >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SourceLimits:
    """Inbound calls held and INVITEs per second, per source IP address."""

    def __init__(self, max_calls: int, per_second: float, trusted: Iterable[str] = ()) -> None:
        self.max_calls = max_calls
        self.per_second = per_second
        self._trusted = Networks(trusted)
        self._active: dict[str, int] = {}
        self._buckets: OrderedDict[str, RateLimiter] = OrderedDict()

    def admit(self, host: str, now: float | None = None) -> str | None:
        """None when ``host`` may start one more call (which it then holds until
        ``release``), else the reason it may not."""
        if host in self._trusted:
            return None
        if self._active.get(host, 0) >= self.max_calls:
            return f"{host} already holds {self.max_calls} calls"
        bucket = self._buckets.pop(host, None)
        if bucket is None:
            bucket = RateLimiter(self.per_second, stamp=time.monotonic() if now is None else now)
            while len(self._buckets) >= MAX_SOURCES:
                self._buckets.popitem(last=False)
        self._buckets[host] = bucket
        if not bucket.take(now=now):
            return f"{host} sends more than {self.per_second:g} new calls per second"
        self._active[host] = self._active.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        if host not in self._active:
            return  # trusted, or never admitted
        left = self._active.get(host, 0) - 1
        if left > 0:
            self._active[host] = left
        else:
            self._active.pop(host, None)

    def held(self, host: str) -> int:
        return self._active.get(host, 0)
