"""Attacks on a live gosipd: the supervisor fixture, and a raw UDP socket for the attacker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.hostile.attacker import Attacker
from tests.supervisor.conftest import gosipd

__all__ = ["attacker", "gosipd"]


@pytest.fixture
def attacker() -> Iterator[Callable[[int], Attacker]]:
    made: list[Attacker] = []

    def make(port: int) -> Attacker:
        made.append(Attacker(port))
        return made[-1]

    yield make
    for a in made:
        a.close()
