"""``python -m gosipd.worker TARGET``: one call from the shell, no supervisor (for trying a
trunk). The call's events go to stderr as JSON lines, its summary to stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio

pytestmark = pytest.mark.interop


async def run_worker(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "gosipd.worker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    )


async def test_a_call_from_the_shell_prints_its_summary_and_exits_0(sipp_uas, tmp_path):
    echo = sipp_uas("echo")
    done = await run_worker(
        echo.uri(), "--app", "tone:1000", "--max-duration", "1", "--runtime-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["event"] == "call.ended" and summary["cause"] == "max_duration"
    assert summary["media"]["packets_received"] > 30
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {"call.started", "call.answered", "call.ended"} <= {e["event"] for e in logged}
    assert len({e["call"] for e in logged if "call" in e}) == 1  # every line names the call
    assert echo.received("BYE") == 1
    assert list((tmp_path / "calls").iterdir()) == []  # published files removed


async def test_a_failed_call_from_the_shell_exits_1_with_the_reason(tmp_path):
    done = await run_worker("+15551234567", "--runtime-dir", str(tmp_path))
    assert done.returncode == 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cause"] == "failed"
    assert "no trunk is configured" in summary["reason"]
