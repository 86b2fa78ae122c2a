"""``[trunk] register`` against Kamailio's registrar (digest, in-memory usrloc): the
supervisor registers its inbound listener, a caller dialing the AOR through Kamailio
reaches our routes, ``status`` shows the binding, a drain removes it, and wrong
credentials fail with backoff instead of a loop."""

from __future__ import annotations

import time

import trio

from tests.peers import KAMAILIO_USERS

from .daemon import Daemon

USER = "alice"


def trunk(registrar: object, password: str = KAMAILIO_USERS[USER], expires: int = 60) -> str:
    host, port = registrar.host, registrar.port  # type: ignore[attr-defined]
    return (
        "[trunk]\n"
        f'registrar = "{host}:{port}"\n'
        f'username = "{USER}"\n'
        f'password = "{password}"\n'
        "register = true\n"
        f"register_expires = {expires}\n"
    )


async def registration_of(daemon: Daemon, state: str, timeout: float = 10) -> dict:
    with trio.fail_after(timeout):
        while True:
            status = daemon.request({"op": "status"})["registration"]
            if status and status["state"] == state:
                return status
            await trio.sleep(0.1)


async def test_the_supervisor_registers_and_callers_of_the_aor_reach_its_routes(
    gosipd, kamailio, sipp_uac
):
    registrar = kamailio("registrar")
    daemon = gosipd(extra=trunk(registrar))

    status = await registration_of(daemon, "registered")

    assert status["aor"] == f"sip:{USER}@{registrar.host}"
    assert status["contact"] == f"sip:{USER}@127.0.0.1:{daemon.sip_port}"
    assert 50 <= status["expires_in"] <= 60 and status["last_status"] == 200
    assert f"sip:{USER}@127.0.0.1:{daemon.sip_port}" in registrar.rpc("ul.dump")
    registered = [e for e in daemon.events() if e.get("event") == "supervisor.registered"]
    assert registered and registered[0]["expires"] == 60
    assert KAMAILIO_USERS[USER] not in daemon.log.read_text()  # the password is never logged

    # a caller dials the AOR at the registrar: Kamailio finds our binding, we answer
    call = await sipp_uac(
        "uac_auth", f"{registrar.host}:{registrar.port}", service=USER, call_ms=500
    ).wait()
    assert call.ok, call.errors
    ended = [e for e in daemon.events() if e.get("event") == "call.ended"]
    assert ended and ended[0]["cause"] == "remote_hangup" and ended[0]["answered"]

    # draining: the binding goes, so the registrar stops sending calls we would refuse
    assert daemon.request({"op": "drain"})["ok"]
    with trio.fail_after(5):
        while f"sip:{USER}@" in registrar.rpc("ul.dump"):
            await trio.sleep(0.1)


async def test_a_binding_is_refreshed_before_it_lapses(gosipd, kamailio):
    """60 s granted: the refresh goes at 60 - 32 = 28 s, and the binding stays."""
    registrar = kamailio("registrar")
    daemon = gosipd(extra=trunk(registrar, expires=60))
    await registration_of(daemon, "registered")
    first = daemon.request({"op": "status"})["registration"]["expires_in"]
    assert first > 50
    start = time.monotonic()
    with trio.fail_after(40):
        while daemon.request({"op": "status"})["counters"]["registrations"] < 2:
            await trio.sleep(0.5)
    assert 26 <= time.monotonic() - start <= 32
    status = daemon.request({"op": "status"})["registration"]
    assert status["state"] == "registered" and status["expires_in"] > 55
    assert f"sip:{USER}@" in registrar.rpc("ul.dump")


async def test_wrong_credentials_fail_once_and_wait_to_retry(gosipd, kamailio):
    registrar = kamailio("registrar")
    daemon = gosipd(extra=trunk(registrar, password="wrong"))

    status = await registration_of(daemon, "failed")

    assert status["last_status"] == 401 and status["failures"] == 1
    assert 14 <= status["next_attempt_in"] <= 30
    await trio.sleep(1)
    again = daemon.request({"op": "status"})
    assert again["counters"]["registration_failures"] == 1  # no loop of REGISTERs
    assert f"sip:{USER}@" not in registrar.rpc("ul.dump")
    failed = [e for e in daemon.events() if e.get("event") == "supervisor.registration_failed"]
    assert failed and failed[0]["sip_status"] == 401
