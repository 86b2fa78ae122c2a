"""RFC 2782 ordering of SRV records, with an injected random source."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from gosipd.locate import SrvRecord, order_srv

A = SrvRecord(10, 60, 5060, "a.example")
B = SrvRecord(10, 40, 5060, "b.example")
BACKUP = SrvRecord(20, 0, 5060, "backup.example")


class Picks(random.Random):
    """A random source that returns the numbers it is given, in order."""

    def __init__(self, *picks: int) -> None:
        super().__init__()
        self.picks = list(picks)
        self.asked: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.asked.append((a, b))
        return self.picks.pop(0)


def test_a_low_pick_chooses_the_first_record_of_the_running_sum():
    rng = Picks(60, 0, 0)
    assert order_srv([A, B, BACKUP], rng) == [A, B, BACKUP]
    assert rng.asked == [(0, 100), (0, 40), (0, 0)]


def test_a_high_pick_chooses_the_next_record():
    assert order_srv([A, B, BACKUP], Picks(61, 0, 0)) == [B, A, BACKUP]


def test_weight_zero_records_come_first_in_the_running_sum_and_win_only_pick_zero():
    zero = SrvRecord(10, 0, 5060, "zero.example")
    assert order_srv([A, zero], Picks(0, 0)) == [zero, A]
    assert order_srv([A, zero], Picks(1, 0)) == [A, zero]


def test_lower_priority_values_always_come_first():
    rng = random.Random(7)
    for _ in range(200):
        assert order_srv([BACKUP, B, A], rng)[-1] == BACKUP


def test_weights_share_the_first_place_as_rfc_2782_says():
    rng = random.Random(2026)
    firsts = Counter(order_srv([A, B], rng)[0] for _ in range(10_000))
    # P(A first) = 61/101 (picks 0..60 of 0..100); 10 000 draws: sd ~ 49
    assert abs(firsts[A] - 10_000 * 61 / 101) < 250


@given(
    st.lists(
        st.builds(
            SrvRecord,
            st.integers(0, 3),
            st.integers(0, 100),
            st.integers(1, 65535),
            st.sampled_from(["a", "b", "c", "d"]),
        ),
        max_size=12,
    ),
    st.integers(),
)
def test_the_order_is_a_permutation_sorted_by_priority(records, seed):
    ordered = order_srv(records, random.Random(seed))
    assert Counter(ordered) == Counter(records)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)
