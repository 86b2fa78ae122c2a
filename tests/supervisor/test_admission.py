"""The supervisor's admission decisions, in memory with simulated time."""

from __future__ import annotations

from pathlib import Path

import pytest

from gosipd.config import ConfigError, load_config
from supervisor.admission import MAX_SOURCES, Networks, SourceLimits


def test_networks_match_addresses_and_mapped_ipv4_and_never_names() -> None:
    trunk = Networks(["203.0.113.0/24", "2001:db8::/32"])
    assert "203.0.113.9" in trunk and "::ffff:203.0.113.9" in trunk and "2001:db8::1" in trunk
    assert "198.51.100.1" not in trunk
    assert "evil.example" not in trunk  # a name is never an address we trust
    assert "" not in trunk
    assert not Networks() and "203.0.113.9" not in Networks()


def test_a_source_gets_its_burst_then_its_rate() -> None:
    limits = SourceLimits(max_calls=100, per_second=5.0)
    admitted = [limits.admit("198.51.100.1", now=0.0) for _ in range(8)]
    assert admitted[:5] == [None] * 5
    assert all(reason and "more than 5 new calls per second" in reason for reason in admitted[5:])
    assert limits.admit("198.51.100.2", now=0.0) is None  # another source has its own bucket
    assert limits.admit("198.51.100.1", now=0.2) is None  # one token back after 1/5 s


def test_a_source_holds_at_most_max_calls_until_it_releases_one() -> None:
    limits = SourceLimits(max_calls=2, per_second=1000.0)
    assert limits.admit("198.51.100.1", now=0.0) is None
    assert limits.admit("198.51.100.1", now=0.0) is None
    assert "already holds 2 calls" in (limits.admit("198.51.100.1", now=0.0) or "")
    limits.release("198.51.100.1")
    assert limits.admit("198.51.100.1", now=0.0) is None


def test_trusted_sources_bypass_the_limits() -> None:
    limits = SourceLimits(max_calls=1, per_second=1.0, trusted=["203.0.113.0/24"])
    assert all(limits.admit("203.0.113.5", now=0.0) is None for _ in range(50))


def test_spoofed_sources_cannot_grow_the_table_without_bound() -> None:
    limits = SourceLimits(max_calls=10, per_second=1.0)
    for n in range(MAX_SOURCES + 1000):
        limits.admit(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", now=0.0)
        limits.release(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(limits._buckets) == MAX_SOURCES


@pytest.mark.parametrize("key", ["allowed_sources", "trusted_sources"])
def test_source_networks_are_checked_when_the_config_loads(tmp_path: Path, key: str) -> None:
    path = tmp_path / "gosipd.toml"
    path.write_text(f'[inbound]\n{key} = ["203.0.113.0/24", "2001:db8::1"]\n')
    assert getattr(load_config(path).inbound, key) == ("203.0.113.0/24", "2001:db8::1")
    path.write_text(f'[inbound]\n{key} = ["flowroute.com"]\n')
    with pytest.raises(ConfigError, match=rf"\[inbound\] {key}: 'flowroute.com' is not an address"):
        load_config(path)
