"""Blind transfer against SIPp playing the transferee (RFC 3515): the REFER names the
target, the NOTIFYs' progress reaches the app as ``call.transfer`` events, success ends
the call with cause ``transferred``, and a failed transfer leaves the call up."""

from __future__ import annotations

from typing import Any

import pytest

from gosipd.call import Call, CallError
from gosipd.sip import NameAddr
from tests.worker.conftest import CallPlacer, ended_event, events_named, place_call

__all__ = ["place_call"]  # the fixture

TARGET = "sip:agent@192.0.2.30"


async def test_a_blind_transfer_ends_the_call_once_the_target_answered(
    sipp_uas, place_call: CallPlacer
):
    transferee = sipp_uas("refer", keys={"transfer_status": "200 OK"})

    async def app(call: Call) -> None:
        await call.transfer(TARGET)

    runtime = await place_call(transferee.uri("refer"), app)

    (refer,) = [e for e in transferee.trace() if not e.sent and e.name == "REFER"]
    assert f"Refer-To: <{TARGET}>" in refer.text
    assert "Referred-By: <sip:gosipd@" in refer.text
    states = [(e["state"], e.get("sip_status")) for e in events_named(runtime, "call.transfer")]
    assert states == [
        ("requested", None),
        ("accepted", 202),
        ("progress", 100),
        ("succeeded", 200),
    ]
    end = ended_event(runtime)
    assert end["cause"] == "transferred" and end["answered"]
    assert transferee.received("BYE") == 1
    # our 200s to both NOTIFYs (and to nothing else SIPp sent)
    assert transferee.received("200") == 2


async def test_a_failed_transfer_raises_and_the_call_goes_on(sipp_uas, place_call: CallPlacer):
    transferee = sipp_uas("refer", keys={"transfer_status": "486 Busy Here"})
    seen: dict[str, Any] = {}

    async def app(call: Call) -> None:
        with pytest.raises(CallError) as failure:
            await call.transfer(TARGET)
        seen["code"], seen["message"] = failure.value.code, str(failure.value)
        seen["alive"] = not call.ended
        await call.hangup()

    runtime = await place_call(transferee.uri("refer"), app)

    assert seen["code"] == "transfer_failed" and "486 Busy Here" in seen["message"]
    assert seen["alive"]
    (failed,) = [e for e in events_named(runtime, "call.transfer") if e["state"] == "failed"]
    assert failed["sip_status"] == 486
    assert ended_event(runtime)["cause"] == "local_hangup"


def _header(text: str, name: str) -> str:
    (value,) = [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.lower().startswith(name.lower() + ":")
    ]
    return value


async def test_an_attended_transfer_names_the_dialog_the_far_end_is_to_replace(
    sipp_uas, place_call: CallPlacer
):
    agent = sipp_uas("echo")
    transferee = sipp_uas("refer", keys={"transfer_status": "200 OK"})

    async def app(call: Call) -> None:
        leg = await call.dial(agent.uri("agent"))
        await call.transfer(replaces=leg)

    runtime = await place_call(transferee.uri("refer"), app)

    # the leg's dialog as the agent knows it: its tag is the Replaces to-tag (RFC 3891)
    (invite,) = [e for e in agent.trace() if not e.sent and e.name == "INVITE"]
    (ok,) = [e for e in agent.trace() if e.sent and e.name == "200" and "INVITE" in e.text]
    call_id = _header(invite.text, "Call-ID")
    our_tag = NameAddr.parse(_header(invite.text, "From")).tag
    agent_tag = NameAddr.parse(_header(ok.text, "To")).tag
    (refer,) = [e for e in transferee.trace() if not e.sent and e.name == "REFER"]
    refer_to = NameAddr.parse(_header(refer.text, "Refer-To")).uri
    assert refer_to.replace(headers=()) == NameAddr.parse(_header(ok.text, "Contact")).uri
    assert refer_to.headers.get("Replaces") == f"{call_id};to-tag={agent_tag};from-tag={our_tag}"
    assert ended_event(runtime)["cause"] == "transferred"
    assert agent.received("BYE") == 1  # the leg ended with the call


async def test_replacing_a_call_without_an_answered_dialog_is_refused(
    sipp_uas, place_call: CallPlacer
):
    transferee = sipp_uas("refer", keys={"transfer_status": "200 OK"})
    seen: dict[str, str] = {}

    async def app(call: Call) -> None:
        for replaces in ("nosuchcall", "../etc/passwd", call.id):
            with pytest.raises(CallError) as refused:
                await call.transfer(replaces=replaces)
            seen[replaces] = f"{refused.value.code}: {refused.value}"

    runtime = await place_call(transferee.uri("refer"), app)

    assert seen["nosuchcall"] == "bad_replaces: there is no call 'nosuchcall'"
    assert seen["../etc/passwd"].startswith("bad_replaces: '../etc/passwd' is not another call")
    assert seen[runtime.spec.call].startswith("bad_replaces:")
    assert transferee.received("REFER") == 0
