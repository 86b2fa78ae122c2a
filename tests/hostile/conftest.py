"""Attacks on a live gosipd: the supervisor fixture, and a raw UDP socket for the attacker."""

from __future__ import annotations

from tests.supervisor.conftest import gosipd

__all__ = ["gosipd"]
