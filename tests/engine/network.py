"""A simulated network for sans-I/O SIP engines: datagrams, a clock, and mischief.

Agents are ``UserAgent``s at addresses. ``Network.run`` moves time forward
to the next delivery or timer, delivers, fires timers, and collects what the
agents send; rules can drop, duplicate, delay or reorder datagrams. Nothing
here touches a socket or the real clock, so a test reads like the RFC:
"the 200 is lost twice; the UAS retransmits at T1 and 2·T1; the ACK arrives".
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from gosipd import sip
from gosipd.sip import Request, Response
from gosipd.sip import events as ev

Address = tuple[str, int]
Match = Callable[["Datagram"], bool]


class Agent(Protocol):
    """Anything with the sans-I/O surface: a UserAgent, or a test proxy."""

    def receive(self, data: bytes, source: Address, now: float) -> None: ...
    def datagrams_to_send(self) -> list[tuple[bytes, Address]]: ...
    def events(self) -> list[ev.Event]: ...
    def next_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


@dataclass(order=True)
class _Flight:
    deliver_at: float
    seq: int
    datagram: Datagram = field(compare=False)


@dataclass
class Datagram:
    data: bytes
    source: Address
    destination: Address
    sent_at: float

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode(errors="replace")

    @property
    def method(self) -> str | None:
        line = self.first_line
        return None if line.startswith("SIP/2.0") else line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        line = self.first_line
        return int(line.split(" ")[1]) if line.startswith("SIP/2.0") else None

    @property
    def cseq_method(self) -> str:
        for line in self.data.split(b"\r\n"):
            if line.lower().startswith(b"cseq:"):
                return line.split()[-1].decode()
        return ""

    def is_(self, what: str) -> bool:
        """'INVITE', '200', '200/INVITE', '180', 'ACK', '/REFER' (anything for a REFER) ..."""
        name, _, cseq = what.partition("/")
        if not name:
            matched = True
        elif name.isdigit():
            matched = self.status == int(name)
        else:
            matched = self.method == name
        return matched and (not cseq or self.cseq_method == cseq)


@dataclass
class _Rule:
    match: Match
    action: str  # drop | duplicate | delay
    remaining: int
    delay: float = 0.0


AgentT = TypeVar("AgentT", bound=Agent)


class Network:
    """Agents at addresses, a simulated clock, and datagrams in flight between them.

    ``nat(private, public)`` puts an agent behind a NAT: what it sends appears to come
    from ``public``, and what is sent to ``public`` reaches it. ``inject`` delivers a
    datagram the test wrote itself (a request from a peer the test plays).
    """

    def __init__(
        self,
        *,
        latency: float = 0.01,
        loss: float = 0.0,
        duplicate: float = 0.0,
        jitter: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.now = 0.0
        self.latency = latency
        self.loss = loss
        self.duplicate_rate = duplicate
        self.jitter = jitter
        self.rng = random.Random(seed)
        self.agents: dict[Address, Agent] = {}
        self._public: dict[Address, Address] = {}  # private -> public
        self._private: dict[Address, Address] = {}  # public -> private
        self.events: dict[Address, list[ev.Event]] = {}
        self.sent: list[Datagram] = []
        self.delivered: list[Datagram] = []
        self._queue: list[_Flight] = []
        self._seq = itertools.count()
        self._rules: list[_Rule] = []
        self.unreachable: set[Address] = set()

    def add(self, address: Address, agent: AgentT) -> AgentT:
        self.agents[address] = agent
        self.events[address] = []
        return agent

    def nat(self, private: Address, public: Address) -> None:
        self._public[private] = public
        self._private[public] = private

    def inject(self, data: bytes, source: Address, destination: Address) -> None:
        """Send ``data`` as if ``source`` had sent it now (the test plays that peer)."""
        self._send(Datagram(data, source, destination, self.now))

    # --- mischief ----------------------------------------------------------------

    def drop(self, what: str | Match, times: int = 1) -> None:
        self._rules.append(_Rule(_matcher(what), "drop", times))

    def duplicate(self, what: str | Match, times: int = 1) -> None:
        self._rules.append(_Rule(_matcher(what), "duplicate", times))

    def delay(self, what: str | Match, seconds: float, times: int = 1) -> None:
        self._rules.append(_Rule(_matcher(what), "delay", times, seconds))

    # --- moving datagrams and time ------------------------------------------------

    def flush(self) -> None:
        """Collect what every agent wants to send, and their events."""
        for address, agent in self.agents.items():
            source = self._public.get(address, address)
            for data, destination in agent.datagrams_to_send():
                self._send(Datagram(data, source, destination, self.now))
            self.events[address] += agent.events()

    def _send(self, datagram: Datagram) -> None:
        self.sent.append(datagram)
        delay = self.latency + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
        copies = 1
        for rule in self._rules:
            if rule.remaining and rule.match(datagram):
                rule.remaining -= 1
                if rule.action == "drop":
                    return
                if rule.action == "duplicate":
                    copies = 2
                if rule.action == "delay":
                    delay += rule.delay
                break
        else:
            if self.loss and self.rng.random() < self.loss:
                return
            if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
                copies = 2
        for copy in range(copies):
            heapq.heappush(
                self._queue,
                _Flight(self.now + delay + copy * 0.001, next(self._seq), datagram),
            )

    def next_time(self) -> float | None:
        times = [f.deliver_at for f in self._queue[:1]]
        times += [t for agent in self.agents.values() if (t := agent.next_timer()) is not None]
        return min(times, default=None)

    def step(self) -> bool:
        self.flush()
        when = self.next_time()
        if when is None:
            return False
        self.now = max(self.now, when)
        while self._queue and self._queue[0].deliver_at <= self.now:
            datagram = heapq.heappop(self._queue).datagram
            destination = self._private.get(datagram.destination, datagram.destination)
            agent = self.agents.get(destination)
            if agent is None:
                continue
            self.delivered.append(datagram)
            agent.receive(datagram.data, datagram.source, self.now)
        for agent in self.agents.values():
            timer = agent.next_timer()
            if timer is not None and timer <= self.now:
                agent.handle_timer(self.now)
        self.flush()
        return True

    def run(self, until: float | Callable[[], bool] | None = None, *, limit: float = 300.0) -> None:
        """Advance until the time ``until``, until ``until()`` is true, or until quiet."""
        deadline = until if isinstance(until, int | float) else self.now + limit
        while True:
            self.flush()
            if callable(until) and until():
                return
            when = self.next_time()
            if when is None or when > deadline:
                if isinstance(until, int | float):
                    self.now = max(self.now, until)
                return
            self.step()

    # --- reading what happened ------------------------------------------------------

    def sent_times(self, what: str, source: Address | None = None) -> list[float]:
        return [
            d.sent_at for d in self.sent if d.is_(what) and (source is None or d.source == source)
        ]

    def messages(self, what: str, source: Address | None = None) -> list[Request | Response]:
        """The datagrams sent so far that are ``what``, parsed."""
        return [
            sip.parse(d.data)
            for d in self.sent
            if d.is_(what) and (source is None or d.source == source)
        ]

    def of(self, address: Address, kind: type[ev.Event]) -> list[ev.Event]:
        return [e for e in self.events[address] if isinstance(e, kind)]


def _matcher(what: str | Match) -> Match:
    if callable(what):
        return what
    return lambda d: d.is_(what)
