"""RFC 4028 session timers against SIPp: a carrier that asks for 90 s sessions gets its
refresh at 45 s (and the call lives on); one that is the refresher and goes quiet gets
our BYE 30 s before the session would expire. (A caller asking for less than our Min-SE:
tests/supervisor/test_daemon.py.)

The two long calls run side by side, so the whole module takes about a minute."""

from __future__ import annotations

from typing import Any

import trio

from gosipd.call import Call
from tests.worker.conftest import CallPlacer, ended_event, events_named, place_call

__all__ = ["place_call"]  # the fixture

SESSION = 90  # RFC 4028's smallest interval


async def test_a_90_s_session_is_refreshed_at_45_s_and_one_left_unrefreshed_is_ended(
    sipp_uas, place_call: CallPlacer
):
    we_refresh = sipp_uas("timer", keys={"session_expires": str(SESSION), "refresher": "uac"})
    they_refresh = sipp_uas("timer", keys={"session_expires": str(SESSION), "refresher": "uas"})
    seen: dict[str, Any] = {}

    async def refreshed_then_hang_up(call: Call) -> None:
        start = trio.current_time()
        with trio.fail_after(SESSION):
            while we_refresh.received("UPDATE") < 1:
                await trio.sleep(0.1)
        seen["refresh_after"] = trio.current_time() - start
        await trio.sleep(2)  # its 200 is in, the call goes on
        seen["alive"] = not call.ended
        await call.hangup()

    async def wait(call: Call) -> None:
        await call.wait_ended()

    results: dict[str, Any] = {}

    async def place(name: str, uri: str, app: Any) -> None:
        results[name] = await place_call(uri, app, max_duration=3 * SESSION, timeout=3 * SESSION)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(place, "we", we_refresh.uri("timer"), refreshed_then_hang_up)
        nursery.start_soon(place, "they", they_refresh.uri("timer"), wait)

    # we are the refresher: one UPDATE at half the interval, answered, and the call lived
    assert 44 <= seen["refresh_after"] <= 47, seen
    assert seen["alive"]
    (update,) = [e for e in we_refresh.trace() if not e.sent and e.name == "UPDATE"]
    assert f"Session-Expires: {SESSION};refresher=uac" in update.text
    assert "Supported: 100rel, timer" in update.text
    assert ended_event(results["we"])["cause"] == "local_hangup"

    # the far end is the refresher and never refreshes: BYE at 90 - min(32, 90/3) = 60 s
    end = ended_event(results["they"])
    assert end["cause"] == "session_expired" and end["answered"]
    (answered,) = events_named(results["they"], "call.answered")
    assert 59 <= end["ts"] - answered["ts"] <= 62
    assert they_refresh.received("BYE") == 1
    assert they_refresh.received("UPDATE") == 0 and we_refresh.received("BYE") == 1
