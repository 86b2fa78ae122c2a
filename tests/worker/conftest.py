"""Helpers for the call worker tests: run one call in-process and read its story.

``place_call`` runs a ``CallRuntime`` in the test's trio loop with an app
function of the test's own, and returns the runtime once the call has ended;
its ``bus.history`` holds every event the call published (``events_named``
and ``ended_event`` pick them out). ``place_call.files`` is the calls' files
directory (``[files] directory``): what they play and record is named relative
to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from gosipd.call import Call, CallRuntime, CallSpec
from gosipd.config import Config, Limits

App = Callable[[Call], Awaitable[None]]

#: Fast timers for tests on loopback: a lost datagram is retried within 100 ms.
TEST_CONFIG = Config(
    sip_address="127.0.0.1",
    t1=0.1,
    t2=0.4,
    t4=0.5,  # finished transactions stop absorbing retransmissions sooner
    attempt_timeout_s=1.0,
    limits=Limits(ring_timeout_s=10.0, max_duration_s=30.0, media_timeout_s=10.0),
)


def events_named(runtime: CallRuntime, name: str) -> list[dict[str, Any]]:
    return [event for event in runtime.bus.history if event["event"] == name]


def ended_event(runtime: CallRuntime) -> dict[str, Any]:
    (event,) = events_named(runtime, "call.ended")
    assert runtime.bus.history[-1] is event, "call.ended must be the last event"
    return event


def event_names(runtime: CallRuntime) -> list[str]:
    return [event["event"] for event in runtime.bus.history]


def config_with(**changes: Any) -> Config:
    limits = changes.pop("limits", {})
    config = replace(TEST_CONFIG, **changes)
    return replace(config, limits=replace(config.limits, **limits))


class CallPlacer:
    def __init__(self, runtime_dir: Path, files: Path) -> None:
        self.runtime_dir = runtime_dir
        self.files = files
        self.count = 0

    def runtime(
        self, to: str, app: App | None = None, *, config: Config = TEST_CONFIG, **spec: Any
    ) -> CallRuntime:
        self.count += 1
        if "app_name" in spec:  # a named app, resolved as a dial request's "app" is
            spec["app"] = spec.pop("app_name")
        if config.files_directory is None:
            config = replace(config, files_directory=self.files)
        return CallRuntime(
            CallSpec(call=spec.pop("call", f"test{self.count}"), to=to, **spec),
            config,
            runtime_dir=self.runtime_dir,
            app=app,
        )

    async def __call__(
        self,
        to: str,
        app: App | None = None,
        *,
        config: Config = TEST_CONFIG,
        timeout: float = 20.0,
        **spec: Any,
    ) -> CallRuntime:
        """Place a call to ``to`` running ``app``; return its runtime when it has ended."""
        runtime = self.runtime(to, app, config=config, **spec)
        with trio.fail_after(timeout):
            await runtime.run()
        return runtime


@pytest.fixture
def place_call(tmp_path: Path) -> CallPlacer:
    files = tmp_path / "files"
    files.mkdir()
    return CallPlacer(tmp_path / "run", files)
