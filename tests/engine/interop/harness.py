"""The thinnest possible glue between a sans-I/O UserAgent and a real UDP socket.

One trio task owns one loopback socket: it sleeps until a datagram arrives or the
engine's next timer is due, feeds the engine, and sends what it queued. The test acts
on the engine through ``act`` (so the loop re-reads the next timer) and waits for events
with ``wait_for``. This is what the call worker does, minus media, locate and control.
"""

from __future__ import annotations

import math
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from gosipd.sip import events as ev
from gosipd.sip.ua import UAConfig, UserAgent

E = TypeVar("E", bound=ev.Event)
MAX_DATAGRAM = 65_535


class UdpAgent:
    def __init__(self, sock: socket.socket, ua: UserAgent) -> None:
        self.sock = sock
        self.ua = ua
        self.events: list[ev.Event] = []
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._changed = trio.Event()
        self._wait: trio.CancelScope | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return (host, port)

    def act(self, action: Callable[[UserAgent, float], Any]) -> Any:
        """Run ``action(ua, now)`` and send what it queued."""
        result = action(self.ua, trio.current_time())
        self._flush()
        return result

    async def wait_for(self, kind: type[E], timeout: float = 10.0) -> E:
        """The first event of ``kind`` (already seen or still to come)."""
        with trio.fail_after(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, kind):
                        return event
                await self._changed.wait()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until_finished(self, timeout: float = 40.0) -> None:
        with trio.fail_after(timeout):
            while not self.ua.finished:
                await self._changed.wait()

    def _flush(self) -> None:
        for data, destination in self.ua.datagrams_to_send():
            self.sent.append((data, destination))
            try:
                self.sock.sendto(data, destination)  # UDP: never blocks for long
            except OSError as exc:
                self.ua.transport_error(destination, trio.current_time(), str(exc))
        self.events += self.ua.events()
        self._changed.set()
        self._changed = trio.Event()
        if self._wait is not None:
            self._wait.cancel()  # the next timer may have moved

    async def run(self) -> None:
        while True:
            deadline = self.ua.next_timer()
            with trio.CancelScope(deadline=deadline if deadline is not None else math.inf) as wait:
                self._wait = wait
                await trio.lowlevel.wait_readable(self.sock)
                while True:
                    try:
                        data, source = self.sock.recvfrom(MAX_DATAGRAM)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error for an earlier send: nothing to read
                    self.received.append((data, source[:2]))
                    self.ua.receive(data, source[:2], trio.current_time())
            self._wait = None
            self.ua.handle_timer(trio.current_time())
            self._flush()


@asynccontextmanager
async def udp_agent(
    host: str = "127.0.0.1", *, seed: int | None = None, **config: Any
) -> AsyncIterator[UdpAgent]:
    """A UserAgent on a fresh UDP socket on ``host`` (a port of its own), running."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((host, 0))
    local = sock.getsockname()[:2]
    rng = random.Random(seed) if seed is not None else None
    ua = UserAgent(UAConfig(local, **config), rng=rng)
    agent = UdpAgent(sock, ua)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            yield agent
            nursery.cancel_scope.cancel()
    finally:
        sock.close()
