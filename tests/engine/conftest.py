"""A caller and a callee UserAgent on a simulated network."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from gosipd.sip import URI, NameAddr
from gosipd.sip.ua import UAConfig, UserAgent

from .network import Network

ALICE = ("192.0.2.10", 5060)
BOB = ("192.0.2.20", 5062)
OFFER = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
ANSWER = b"v=0\r\no=bob 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\n"


@dataclass
class Pair:
    net: Network
    alice: UserAgent
    bob: UserAgent

    def dial(self, **kwargs: object) -> None:
        self.alice.invite(
            URI.parse(f"sip:bob@{BOB[0]}:{BOB[1]}"),
            destination=BOB,
            from_=NameAddr.parse(f"<sip:alice@{ALICE[0]}>"),
            now=self.net.now,
            sdp=kwargs.pop("sdp", OFFER),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )

    def alice_events(self, kind: type) -> list:
        return self.net.of(ALICE, kind)

    def bob_events(self, kind: type) -> list:
        return self.net.of(BOB, kind)


def make_pair(seed: int = 1, *, alice_config: dict | None = None, bob_config: dict | None = None,
              **network: object) -> Pair:
    net = Network(seed=seed, **network)  # type: ignore[arg-type]
    alice = net.add(ALICE, UserAgent(UAConfig(ALICE, contact_user="alice", **(alice_config or {})),
                                     rng=random.Random(seed)))
    bob = net.add(BOB, UserAgent(UAConfig(BOB, contact_user="bob", **(bob_config or {})),
                                 rng=random.Random(seed + 1000)))
    return Pair(net, alice, bob)


@pytest.fixture
def pair() -> Pair:
    return make_pair()
