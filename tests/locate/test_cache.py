"""The DNS cache: TTLs on an injected clock, and a bounded size."""

from __future__ import annotations

from gosipd.locate import MAX_TTL, DnsAnswer, DnsCache

ANSWER = DnsAnswer(("127.0.0.1",))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_lives_exactly_as_long_as_its_ttl():
    clock = Clock()
    cache = DnsCache(clock)
    cache.put("Sip.Example.", "A", ANSWER, 60)
    clock.now = 59.999
    assert cache.get("sip.example", "A") is ANSWER  # names are case- and dot-insensitive
    assert cache.get("sip.example", "AAAA") is None
    clock.now = 60
    assert cache.get("sip.example", "A") is None
    assert len(cache) == 0


def test_a_zero_ttl_is_not_kept_and_a_huge_one_is_clipped():
    clock = Clock()
    cache = DnsCache(clock)
    cache.put("a.example", "A", ANSWER, 0)
    assert cache.get("a.example", "A") is None
    cache.put("b.example", "A", ANSWER, 10**9)
    clock.now = MAX_TTL
    assert cache.get("b.example", "A") is None


def test_a_full_cache_drops_expired_entries_first_then_the_oldest():
    clock = Clock()
    cache = DnsCache(clock, max_entries=3)
    cache.put("old.example", "A", ANSWER, 100)
    cache.put("short.example", "A", ANSWER, 1)
    cache.put("new.example", "A", ANSWER, 100)
    clock.now = 2
    cache.put("newer.example", "A", ANSWER, 100)  # the expired entry makes room
    assert cache.get("old.example", "A") is ANSWER
    cache.put("newest.example", "A", ANSWER, 100)  # nothing expired: the oldest goes
    assert cache.get("old.example", "A") is None
    assert cache.get("new.example", "A") is ANSWER
    assert len(cache) == 3
