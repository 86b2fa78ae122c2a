"""Two legs in one worker (``Call.dial``, ``Call.bridge``, the ``bridge:`` app) against
baresip and SIPp: each side hears the other's tone, DTMF crosses over, the end of
either leg ends the other, and a leg that never answers fails with its reason."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import trio

from gosipd.call import Call, CallError
from tests.peers import read_wav_mono, tone_ratio
from tests.worker.conftest import CallPlacer, ended_event, events_named, place_call

__all__ = ["place_call"]  # the fixture

pytestmark = pytest.mark.interop


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def leg_events(runtime: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in events_named(runtime, "call.leg") if e["leg_event"] == name]


async def test_each_side_of_a_bridge_hears_the_other(baresip_uas, place_call: CallPlacer):
    alice = baresip_uas("uas", tone_hz=440, users=["alice"], record=True)
    bob = baresip_uas("uas", tone_hz=660, users=["bob"], record=True)

    async def app(call: Call) -> None:
        leg = await call.dial(bob.uri)
        assert leg.id == f"{call.id}.leg1" and not leg.ended
        with trio.move_on_after(2.5):
            await call.bridge(leg)

    runtime = await place_call(alice.uri, app)

    await alice.wait_event("CALL_CLOSED", timeout=5)
    await bob.wait_event("CALL_CLOSED", timeout=5)
    for listener, other_hz in ((alice, 660), (bob, 440)):
        samples, rate = read_wav_mono(listener.recording_path)
        heard = samples[rate // 2 : 2 * rate]
        assert abs(dominant_hz(heard, rate) - other_hz) < 5, listener.users
        assert tone_ratio(heard, rate, other_hz) > 0.8
    answered = leg_events(runtime, "call.answered")
    assert len(answered) == 1 and answered[0]["leg"].endswith(".leg1")
    assert leg_events(runtime, "call.started")[0]["target"] == bob.uri
    assert ended_event(runtime)["cause"] == "local_hangup"


async def test_the_bridge_app_ends_the_call_when_the_leg_hangs_up(
    baresip_uas, sipp_uas, place_call: CallPlacer
):
    agent = baresip_uas("uas", tone_hz=660, users=["agent"])
    caller = sipp_uas("echo")

    async def hang_up_the_agent() -> None:
        await agent.wait_event("CALL_ESTABLISHED", timeout=10)
        await trio.sleep(1.5)
        await agent.ctrl("hangup")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hang_up_the_agent)
        runtime = await place_call(caller.uri(), app_name=f"bridge:{agent.uri}")

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup" and end["answered"]
    assert 1.0 < end["duration_s"] < 5.0
    assert caller.received("BYE") == 1
    (leg_end,) = leg_events(runtime, "call.ended")
    assert leg_end["cause"] == "remote_hangup"
    # the agent's 660 Hz went to the echo, which sent it back: both directions carried it
    assert end["media"]["packets_received"] >= 50


async def test_dtmf_from_one_side_reaches_the_other(baresip_uas, sipp_uas, place_call):
    alice = baresip_uas("uas", users=["alice"])
    agent = sipp_uas("info", keys={"info_digit": "7"})  # SIP INFO digits, then its BYE

    async def app(call: Call) -> None:
        leg = await call.dial(agent.uri("agent"))
        await call.bridge(leg)

    runtime = await place_call(alice.uri, app)

    with trio.fail_after(5):
        while len([e for e in alice.events if e.get("type") == "CALL_DTMF_START"]) < 2:
            await trio.sleep(0.05)
    digits = [e.get("param") for e in alice.events if e.get("type") == "CALL_DTMF_START"]
    assert digits == ["7", "#"]
    assert [e["digit"] for e in leg_events(runtime, "call.dtmf")] == ["7", "#"]
    (leg_end,) = leg_events(runtime, "call.ended")
    assert leg_end["cause"] == "remote_hangup"
    assert ended_event(runtime)["cause"] == "local_hangup"


async def test_a_leg_that_never_answers_fails_with_its_reason(sipp_uas, place_call: CallPlacer):
    caller = sipp_uas("echo")
    busy = sipp_uas("503")
    seen: dict[str, Any] = {}

    async def app(call: Call) -> None:
        with pytest.raises(CallError) as failure:
            await call.dial(busy.uri("agent"))
        seen["code"], seen["message"] = failure.value.code, str(failure.value)
        seen["alive"] = not call.ended

    runtime = await place_call(caller.uri(), app)

    assert seen["code"] == "dial_failed" and "503" in seen["message"]
    assert seen["alive"]
    assert leg_events(runtime, "call.ended")[0]["sip_status"] == 503
    assert ended_event(runtime)["cause"] == "local_hangup"


async def test_when_the_call_ends_its_leg_is_hung_up(baresip_uas, sipp_uas, place_call):
    caller = sipp_uas("echo")
    agent = baresip_uas("uas", users=["agent"])

    async def app(call: Call) -> None:
        await call.dial(agent.uri)
        await trio.sleep(0.5)  # the app returns: the call ends, and takes its leg along

    runtime = await place_call(caller.uri(), app)

    assert ended_event(runtime)["cause"] == "local_hangup"
    await agent.wait_event("CALL_CLOSED", timeout=5)
    assert caller.received("BYE") == 1
