"""A call's second leg (the ``bridge:`` app) under the daemon: one worker holds both
legs, the supervisor counts one call, and a worker that dies has both dialogs BYEd."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .daemon import Daemon

pytestmark = pytest.mark.interop


def closed(ua) -> bool:
    return any(e.get("type") == "CALL_CLOSED" for e in ua.events)


def test_both_legs_of_a_bridge_are_hung_up_when_their_worker_dies(gosipd, baresip_uas):
    alice = baresip_uas("uas", users=["alice"])
    bob = baresip_uas("uas", users=["bob"])
    daemon: Daemon = gosipd()

    reply, conn = daemon.dial(alice.uri, app=f"bridge:{bob.uri}", max_duration=60)
    assert reply["ok"], reply
    call = reply["call"]
    for event in conn.lines(timeout=15):
        if event.get("event") == "call.leg" and event.get("leg_event") == "call.answered":
            break
    pids = daemon.worker_pids()
    assert pids[f"{call}.leg1"] == pids[call]  # one process, both legs
    assert daemon.request({"op": "status"})["calls"] == 1

    os.kill(pids[call], signal.SIGKILL)

    ended = conn.until_event("call.ended")
    assert ended["cause"] == "worker_crashed" and ended["bye_sent"] is True
    deadline = time.monotonic() + 10
    while not (closed(alice) and closed(bob)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed(alice) and closed(bob), "a leg was left up"
    crashed = [e for e in daemon.events() if e.get("event") == "call.crashed"]
    assert {e["call"] for e in crashed} == {call, f"{call}.leg1"}
    assert daemon.worker_pids() == {}


def test_the_transfer_op_replaces_another_workers_call(gosipd, sipp_uas):
    transferee = sipp_uas("refer", keys={"transfer_status": "200 OK"})
    agent = sipp_uas("echo")
    daemon: Daemon = gosipd()
    first, first_conn = daemon.dial(transferee.uri("refer"), max_duration=30)
    second, second_conn = daemon.dial(agent.uri("agent"), max_duration=30)
    first_conn.until_event("call.answered")
    second_conn.until_event("call.answered")

    reply = daemon.request({"op": "transfer", "call": first["call"], "replaces": second["call"]})
    assert reply["ok"], reply
    ended = first_conn.until_event("call.ended")

    assert ended["cause"] == "transferred"
    (refer,) = [e for e in transferee.trace() if not e.sent and e.name == "REFER"]
    (invite,) = [e for e in agent.trace() if not e.sent and e.name == "INVITE"]
    call_id = next(
        line.split(":", 1)[1].strip()
        for line in invite.text.splitlines()
        if line.startswith("Call-ID:")
    )
    assert f"?Replaces={call_id.replace('@', '%40')}%3Bto-tag%3D" in refer.text
    refused = daemon.request({"op": "transfer", "call": second["call"], "replaces": "nosuch"})
    assert refused["error"]["code"] == "bad_replaces"
    assert refused["error"]["field"] == "replaces"
