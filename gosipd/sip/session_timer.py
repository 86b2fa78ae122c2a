"""RFC 4028 session timers: the negotiation, read from and written to headers, and the
two deadlines it leaves (refresh, or give up on the peer).

Carriers tear down calls they have not heard refreshed (often at 15 minutes), and a
call whose far end vanished without a BYE lives on until someone notices. A session
interval is agreed in every INVITE/UPDATE exchange of the dialog (the initial INVITE,
a refresh, a hold re-INVITE alike): the side named ``refresher`` sends a refresh at
half the interval, the other side sends BYE when none came by the interval less
min(32 s, interval/3) (§10). This is sans-I/O like the rest of ``gosipd.sip``: the
user agent calls it with messages and the time, and sends what it asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from gosipd.sip.message import Request, Response

__all__ = [
    "MIN_SE_FLOOR",
    "SessionTimer",
    "SessionTimerConfig",
    "parse_interval",
    "too_brief",
]

#: RFC 4028 §4: Min-SE may not be below 90 s, and that is its default.
MIN_SE_FLOOR = 90
#: The interval we ask for: §4's recommendation.
DEFAULT_INTERVAL = 1800
#: The longest interval we accept (a day): a peer asking for more gets ours.
MAX_INTERVAL = 86_400
#: How often a 422 may raise our interval for one request before we give up.
MAX_422_RETRIES = 2


@dataclass(frozen=True)
class SessionTimerConfig:
    #: The Session-Expires we ask for and offer; 0 turns session timers off (we then do
    #: not claim ``timer`` in Supported, and a peer's Session-Expires is not echoed).
    interval: int = DEFAULT_INTERVAL
    #: Our Min-SE: a peer asking for less gets 422.
    min_se: int = MIN_SE_FLOOR

    def __post_init__(self) -> None:
        if self.interval and not MIN_SE_FLOOR <= self.min_se <= self.interval <= MAX_INTERVAL:
            raise ValueError(
                f"session timers need {MIN_SE_FLOOR} <= min_se <= interval <= {MAX_INTERVAL}"
            )

    @property
    def enabled(self) -> bool:
        return self.interval > 0


def parse_interval(text: str | None) -> tuple[int, str | None] | None:
    """``Session-Expires`` or ``Min-SE`` as (seconds, refresher or None); None if absent
    or unreadable (a peer's garbage turns the timer off rather than failing the call)."""
    if not text:
        return None
    value, *params = (part.strip() for part in text.split(";"))
    if not value.isdigit() or len(value) > 10:
        return None
    refresher = None
    for param in params:
        name, _, arg = param.partition("=")
        if name.strip().lower() == "refresher" and arg.strip().lower() in ("uac", "uas"):
            refresher = arg.strip().lower()
    return int(value), refresher


def too_brief(
    request: Request, config: SessionTimerConfig, min_se: int | None = None
) -> int | None:
    """The Min-SE to answer a 422 with when ``request`` asks for a shorter interval than
    we accept; None when it does not (or timers are off)."""
    floor = config.min_se if min_se is None else min_se
    asked = parse_interval(request.headers.get("Session-Expires"))
    if not config.enabled or asked is None or asked[0] >= floor:
        return None
    return floor


def _supports_timer(message: Request | Response) -> bool:
    return "timer" in (tag.lower() for tag in (*message.supported, *message.require))


class SessionTimer:
    """One dialog's session timer. ``interval`` is None while none is in force."""

    def __init__(self, config: SessionTimerConfig) -> None:
        self.config = config
        #: What we ask for next: raised by a 422 or by a peer's Min-SE.
        self._asked = config.interval
        self._min_se = config.min_se
        self.interval: int | None = None
        self.we_refresh = False
        self._refreshed_at = 0.0
        self._retries_422 = 0

    # --- requests we send ---------------------------------------------------------------

    def request_headers(self, *, initial: bool) -> list[tuple[str, str]]:
        """Session-Expires and Min-SE for an INVITE or UPDATE we send. The initial INVITE
        leaves the refresher to the answerer (§7.1); a refresh keeps the roles."""
        if not self.config.enabled:
            return []
        interval = self.interval if self.interval is not None and not initial else self._asked
        value = str(max(interval, self._min_se))
        if not initial and self.interval is not None:
            value += ";refresher=" + ("uac" if self.we_refresh else "uas")
        return [("Session-Expires", value), ("Min-SE", str(self._min_se))]

    def on_422(self, response: Response) -> bool:
        """A 422 names the peer's minimum: True when the request should be sent again
        with ``request_headers`` (now raised to it)."""
        min_se = parse_interval(response.headers.get("Min-SE"))
        if not self.config.enabled or min_se is None or self._retries_422 >= MAX_422_RETRIES:
            return False
        wanted = min_se[0]
        if wanted > MAX_INTERVAL or wanted <= max(self._asked, self._min_se):
            return False
        self._retries_422 += 1
        self._asked = self._min_se = wanted
        if self.interval is not None:
            self.interval = wanted
        return True

    def on_success(self, response: Response, now: float) -> None:
        """A 2xx to an INVITE/UPDATE we sent (§7.2): the answer names the interval and the
        refresher. Without Session-Expires the session has no timer, except that a peer
        that does not know the extension (no ``timer`` in its Supported or Require) cannot
        echo a refresh it answered: the interval we refresh stays."""
        self._retries_422 = 0
        if not self.config.enabled:
            return
        agreed = parse_interval(response.headers.get("Session-Expires"))
        if agreed is None:
            if self.interval is not None and self.we_refresh and not _supports_timer(response):
                self._refreshed_at = now
            else:
                self.interval = None
            return
        seconds, refresher = agreed
        self.interval = max(seconds, MIN_SE_FLOOR)
        # a 2xx without refresher: we (its UAC) refresh (§7.2)
        self.we_refresh = refresher != "uas"
        self._refreshed_at = now

    # --- requests we answer -------------------------------------------------------------

    def too_brief(self, request: Request) -> int | None:
        """Our Min-SE when ``request`` asks for less (answer 422 with it, §8.1/§9)."""
        return too_brief(request, self.config, self._min_se)

    def response_headers(self, request: Request, now: float) -> list[tuple[str, str]]:
        """Session-Expires (and Require: timer) for our 2xx to an INVITE/UPDATE, and the
        timer from then on (§9). The refresher is the one the request named; else the
        caller when it supports timers and we are not asked (it refreshes what it sent),
        else us: a peer that does not know the extension need only answer refreshes."""
        if not self.config.enabled:
            return []
        asked = parse_interval(request.headers.get("Session-Expires"))
        peer_min = parse_interval(request.headers.get("Min-SE"))
        floor = max(self._min_se, peer_min[0] if peer_min else MIN_SE_FLOOR)
        if asked is None:
            seconds, refresher = max(self._asked, floor), None
        else:
            # we may shorten the interval, never below the request's Min-SE (§9)
            seconds = max(min(asked[0], self._asked), floor)
            refresher = asked[1]
        peer_supports = _supports_timer(request)
        if refresher is None:
            refresher = "uac" if peer_supports and asked is not None else "uas"
        if refresher == "uac" and not peer_supports:
            refresher = "uas"  # it cannot refresh what it does not know
        self.interval = seconds
        self.we_refresh = refresher == "uas"
        self._refreshed_at = now
        headers = [("Session-Expires", f"{seconds};refresher={refresher}")]
        if peer_supports:
            headers.append(("Require", "timer"))
        return headers

    # --- the clock ----------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When ``due`` next has something to say, or None without a timer in force."""
        if self.interval is None:
            return None
        if self.we_refresh:
            return self._refreshed_at + self.interval / 2
        return self._refreshed_at + self.interval - min(32, self.interval / 3)

    def due(self, now: float) -> str | None:
        """``"refresh"`` (send one now), ``"expired"`` (send BYE) or None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if self.we_refresh:
            # retry the refresh no sooner than a tenth of the interval if it fails
            assert self.interval is not None
            self._refreshed_at = now - self.interval / 2 + max(self.interval / 10, 1)
            return "refresh"
        self.interval = None
        return "expired"

    def stop(self) -> None:
        self.interval = None
