"""A gosipd supervisor per test (see daemon.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .daemon import Daemon


@pytest.fixture
def gosipd(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(**kwargs: object) -> Daemon:
        daemon = Daemon(tmp_path / f"d{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()
