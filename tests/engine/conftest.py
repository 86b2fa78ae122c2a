"""User agents on a simulated network: a caller (alice), a callee (bob), and helpers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from gosipd.sip import URI, NameAddr
from gosipd.sip import events as ev
from gosipd.sip.ua import CallState, UAConfig, UserAgent

from .network import Network

ALICE = ("192.0.2.10", 5060)
BOB = ("192.0.2.20", 5062)
CAROL = ("192.0.2.30", 5064)
PROXY = ("192.0.2.5", 5060)
OFFER = (
    b"v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
)
ANSWER = (
    b"v=0\r\no=bob 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\n"
    b"t=0 0\r\nm=audio 50000 RTP/AVP 0\r\n"
)


def user_agent(address: tuple[str, int], user: str, seed: int, **config: Any) -> UserAgent:
    return UserAgent(UAConfig(address, contact_user=user, **config), rng=random.Random(seed))


@dataclass
class Pair:
    net: Network
    alice: UserAgent
    bob: UserAgent

    def dial(
        self, *, to: tuple[str, int] = BOB, via: tuple[str, int] | None = None, **kwargs: Any
    ) -> None:
        """alice INVITEs bob@``to`` (through ``via``, when a proxy is in the way)."""
        self.alice.invite(
            URI.parse(f"sip:bob@{to[0]}:{to[1]}"),
            destination=via or to,
            from_=NameAddr.parse(f"<sip:alice@{ALICE[0]}>"),
            now=self.net.now,
            sdp=kwargs.pop("sdp", OFFER),
            **kwargs,
        )

    def alice_events(self, kind: type) -> list[Any]:
        return self.net.of(ALICE, kind)

    def bob_events(self, kind: type) -> list[Any]:
        return self.net.of(BOB, kind)

    def answer_when_called(self, *, ring: bool = True, sdp: bytes = ANSWER) -> None:
        self.net.run(lambda: bool(self.bob_events(ev.IncomingCall)))
        if ring:
            self.bob.ring(self.net.now)
        self.bob.answer(self.net.now, sdp=sdp)

    def establish(self, **dial: Any) -> None:
        """A whole call set-up: dial, ring, answer, ACK."""
        self.dial(**dial)
        self.answer_when_called()
        self.net.run(lambda: self.bob.state is CallState.CONFIRMED)
        assert self.alice.state is CallState.CONFIRMED


def make_pair(
    seed: int = 1,
    *,
    alice_config: dict[str, Any] | None = None,
    bob_config: dict[str, Any] | None = None,
    **network: Any,
) -> Pair:
    net = Network(seed=seed, **network)
    alice = net.add(ALICE, user_agent(ALICE, "alice", seed, **(alice_config or {})))
    bob = net.add(BOB, user_agent(BOB, "bob", seed + 1000, **(bob_config or {})))
    return Pair(net, alice, bob)


@pytest.fixture
def pair() -> Pair:
    return make_pair()
