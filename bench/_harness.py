"""Shared bench plumbing: median timings of repeated runs and a budget table.

The machine is shared and noisy, so every figure is the median of many
repeats, and every budget is a ratio against a reference measured in the
same run, never an absolute time.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass


def median_seconds(
    stmt: str | Callable[[], object],
    globals_: dict[str, object] | None = None,
    *,
    number: int = 10_000,
    repeat: int = 31,
) -> float:
    """Median seconds per call over ``repeat`` runs of ``number`` calls."""
    timer = timeit.Timer(stmt, globals=globals_)
    timer.timeit(number=max(1, number // 10))  # warm caches and allocators
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number


@dataclass
class Budget:
    name: str
    ours: float
    reference: float
    minimum_ratio: float
    unit: str = "µs"

    @property
    def ratio(self) -> float:
        return self.reference / self.ours

    @property
    def met(self) -> bool:
        return self.ratio >= self.minimum_ratio


def report(title: str, reference_name: str, budgets: list[Budget]) -> bool:
    """Print the table; return whether every budget was met."""
    print(f"\n{title}")
    header = f"{'measure':<34} {'gosipd':>10} {reference_name:>12} {'ratio':>8} {'budget':>8}"
    print(header)
    print("-" * len(header))
    for b in budgets:
        scale = 1e6 if b.unit == "µs" else 1e3
        ours, ref = b.ours * scale, b.reference * scale
        print(
            f"{b.name:<34} {ours:>8.3f}{b.unit:>2} {ref:>10.3f}{b.unit:>2}"
            f" {b.ratio:>7.2f}x {'>=' + format(b.minimum_ratio, 'g') + 'x':>8}"
            f"  {'ok' if b.met else 'MISSED'}"
        )
    return all(b.met for b in budgets)
