"""Following the far end's REFER (RFC 3515, we are the transferee) against real peers:
SIPp plays the transferor (tests/lab/sipp/scenarios/uas_transferor.xml), SIPp or
baresip the target. The call's app goes on, now talking to the target; the transferor
hears how it went in NOTIFYs; a target that fails leaves the call with the transferor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import trio

from gosipd.call import Call, CallRuntime
from tests.peers import read_wav_mono, tone_ratio
from tests.worker.conftest import CallPlacer, config_with, ended_event, events_named, place_call

__all__ = ["place_call"]  # the fixture

pytestmark = pytest.mark.interop


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def referred(runtime: CallRuntime) -> list[dict[str, Any]]:
    return events_named(runtime, "call.referred")


async def referral_over(runtime: CallRuntime, timeout: float = 10.0) -> dict[str, Any]:
    """The referral's last event (succeeded, failed or refused), once it came."""
    with trio.fail_after(timeout):
        while True:
            for event in referred(runtime):
                if event["state"] in ("succeeded", "failed", "refused"):
                    return event
            await trio.sleep(0.02)


def notify_bodies(transferor: Any) -> list[str]:
    return [
        e.text.rstrip().rsplit("\n", 1)[-1].strip()
        for e in transferor.trace()
        if not e.sent and e.name == "NOTIFY"
    ]


async def run_call(place_call: CallPlacer, to: str, app: Any, **config: Any) -> CallRuntime:
    runtime = place_call.runtime(to, None, config=config_with(**config))
    runtime._app = lambda call: app(call, runtime)
    with trio.fail_after(30):
        await runtime.run()
    return runtime


async def test_the_call_moves_to_the_target_and_the_transferor_hears_each_step(
    sipp_uas, place_call: CallPlacer
):
    target = sipp_uas("echo")
    transferor = sipp_uas("transferor", keys={"refer_to": target.uri("agent")})

    async def app(call: Call, runtime: CallRuntime) -> None:
        assert (await referral_over(runtime))["state"] == "succeeded"
        assert call.remote_uri == target.uri("agent")
        with trio.move_on_after(5):  # the transferor's BYE (RFC 5589 §6), before ours
            while not any(e.sent and e.name == "BYE" for e in transferor.trace()):
                await trio.sleep(0.05)
        await call.play_tones("1000:1000")
        await trio.sleep(0.3)

    runtime = await run_call(place_call, transferor.uri("boss"), app, accept_refer="any")

    states = [e["state"] for e in referred(runtime)]
    assert states[0] == "accepted" and states[-1] == "succeeded"
    accepted = referred(runtime)[0]
    assert accepted["to"] == target.uri("agent")
    assert accepted["referred_by"].startswith("<sip:transferor@")
    # the target's INVITE says who referred us
    (invite,) = [e for e in target.trace() if not e.sent and e.name == "INVITE"]
    assert "Referred-By: <sip:transferor@" in invite.text
    # the transferor: 100 Trying first, the target's 180, the 200 last; then its BYE
    bodies = notify_bodies(transferor)
    assert bodies[0] == "SIP/2.0 100 Trying" and bodies[-1] == "SIP/2.0 200 OK"
    assert "SIP/2.0 180 Ringing" in bodies
    # the transferor's leg is over: its BYE (RFC 5589 §6), or ours after the wait. Under
    # load SIPp runs a scenario's <send> late: a NOTIFY that arrives while the call still
    # sits on the 200 for the one before is "unexpected" (-aa answers it; its errors.log
    # says so), the scenario never sees the final NOTIFY and never reaches its BYE; then
    # ours must end that dialog (reproduced with two busy loops on the 2 cores: 1 in 6).
    byes = [e for e in transferor.trace() if e.name == "BYE"]
    assert len(byes) == 1, [e.name for e in transferor.trace()]
    # we stayed with the target, who heard our tone and got our BYE
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup" and end["answered"]
    assert target.received("BYE") == 1
    assert target.stop().echoed_rtp_packets >= 40


async def test_after_the_transfer_the_app_hears_the_target(
    sipp_uas, baresip_uas, place_call: CallPlacer
):
    bob = baresip_uas("uas", tone_hz=440)
    transferor = sipp_uas("transferor", keys={"refer_to": bob.uri})
    recording = place_call.files / "after.wav"

    async def app(call: Call, runtime: CallRuntime) -> None:
        assert (await referral_over(runtime))["state"] == "succeeded"
        async with call.record(recording.name):
            await trio.sleep(1.5)

    runtime = await run_call(place_call, transferor.uri("boss"), app, accept_refer="any")

    samples, rate = read_wav_mono(recording)
    heard = samples[rate // 2 :]  # from half a second after the switch
    assert abs(dominant_hz(heard, rate) - 440) < 5
    assert tone_ratio(heard, rate, 440) > 0.8
    assert ended_event(runtime)["cause"] == "local_hangup"
    await bob.wait_event("CALL_CLOSED", timeout=5)


async def test_a_target_that_fails_leaves_the_call_with_the_transferor(
    sipp_uas, place_call: CallPlacer
):
    busy = sipp_uas("503")
    transferor = sipp_uas("transferor", keys={"refer_to": busy.uri("agent")})
    seen: dict[str, Any] = {}

    async def app(call: Call, runtime: CallRuntime) -> None:
        seen["outcome"] = await referral_over(runtime)
        seen["remote"] = call.remote_uri
        await call.play_tones("1000:500")  # the transferor still hears us

    runtime = await run_call(place_call, transferor.uri("boss"), app, accept_refer="any")

    assert seen["outcome"]["state"] == "failed" and seen["outcome"]["sip_status"] == 503
    assert seen["remote"] == transferor.uri("boss")
    bodies = notify_bodies(transferor)
    assert bodies[0] == "SIP/2.0 100 Trying"
    assert bodies[-1].startswith("SIP/2.0 503")
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert transferor.received("BYE") == 1  # ours: the call was still its
    assert end["media"]["packets_received"] >= 50


@pytest.mark.parametrize(
    ("policy", "status"), [("off", "405"), ("trunk", "403")], ids=["off", "trunk"]
)
async def test_a_refer_the_policy_does_not_allow_is_refused_and_the_call_goes_on(
    sipp_uas, place_call: CallPlacer, policy: str, status: str
):
    elsewhere = "sip:premium@192.0.2.99"
    transferor = sipp_uas("transferor", keys={"refer_to": elsewhere})

    async def app(call: Call, runtime: CallRuntime) -> None:
        with trio.fail_after(10):
            while not any(e.name == status for e in transferor.trace() if not e.sent):
                await trio.sleep(0.05)
        await trio.sleep(0.2)

    runtime = await run_call(place_call, transferor.uri("boss"), app, accept_refer=policy)

    if policy == "trunk":
        (refused,) = referred(runtime)
        assert refused["state"] == "refused" and refused["to"] == elsewhere
        assert "not the trunk" in refused["reason"]
    else:
        assert not referred(runtime)
    assert ended_event(runtime)["cause"] == "local_hangup"
    assert transferor.received("BYE") == 1


async def test_hanging_up_while_the_target_rings_cancels_it_and_ends_the_call(
    sipp_uas, baresip_uas, place_call: CallPlacer
):
    ringing = baresip_uas("ring")
    transferor = sipp_uas("transferor", keys={"refer_to": ringing.uri})

    async def app(call: Call, runtime: CallRuntime) -> None:
        await ringing.wait_event("CALL_INCOMING", timeout=10)
        await call.hangup()

    runtime = await run_call(place_call, transferor.uri("boss"), app, accept_refer="any")

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    (failed,) = [e for e in referred(runtime) if e["state"] == "failed"]
    assert failed["sip_status"] == 487
    assert notify_bodies(transferor)[-1].startswith("SIP/2.0 487")
    assert transferor.received("BYE") == 1
    await ringing.wait_event("CALL_CLOSED", timeout=5)


async def test_a_replaces_in_the_refer_to_goes_in_the_invite_and_nothing_else_does(
    sipp_uas, place_call: CallPlacer
):
    target = sipp_uas("echo")
    replaces = "abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2"
    refer_to = f"{target.uri('agent')}?Replaces={replaces}&X-Evil=1"
    transferor = sipp_uas("transferor", keys={"refer_to": refer_to})

    async def app(call: Call, runtime: CallRuntime) -> None:
        assert (await referral_over(runtime))["state"] == "succeeded"

    runtime = await run_call(place_call, transferor.uri("boss"), app, accept_refer="any")

    assert referred(runtime)[0]["replaces"] is True
    (invite,) = [e for e in target.trace() if not e.sent and e.name == "INVITE"]
    assert invite.start_line == f"INVITE {target.uri('agent')} SIP/2.0"
    assert "Replaces: abc@h;to-tag=1;from-tag=2" in invite.text
    assert "X-Evil" not in invite.text
