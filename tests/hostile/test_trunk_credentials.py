"""The trunk's digest credentials go to the trunk and nowhere else (the hardening issue,
item 2), and a 3xx is followed only where the ``[trunk] redirects`` policy allows.

Before the fix a caller who challenged our BYE got an Authorization with the trunk's
username (ready for offline cracking), and a 302 from the trunk to a foreign host that
answered 407 got the trunk's credentials too. Every hop is checked on the wire (SIPp's
message log, or the raw caller's datagrams), not only in our own events.

The trunk here is 127.0.0.1; a foreign host is 127.0.0.2 (loopback answers the whole
127/8 on Linux).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from gosipd.call import Call
from gosipd.config import Config, TrunkConfig
from gosipd.sip import Request, Response, parse
from tests.hostile.raw_caller import RawCaller, answering_front, offer
from tests.worker.conftest import CallPlacer, config_with, ended_event, events_named, place_call

__all__ = ["place_call"]  # the fixture

USER, PASSWORD = "trunkuser", "s3cret"
FOREIGN = "127.0.0.2"


def trunk_config(domain: str = "127.0.0.1", **trunk: Any) -> Config:
    return config_with(trunk=TrunkConfig(domain=domain, username=USER, password=PASSWORD, **trunk))


def carries_credentials(log: str) -> bool:
    return USER in log or "Authorization:" in log


async def test_a_302_from_the_trunk_to_a_foreign_host_that_challenges_gets_no_credentials(
    sipp_uas, place_call: CallPlacer
):
    """``redirects = "any"`` follows the 302; the foreign host's 407 is not answered."""
    foreign = sipp_uas("auth407", host=FOREIGN, user=USER, password=PASSWORD)
    trunk = sipp_uas("302", redirect_to=foreign.uri("premium"))

    runtime = await place_call(trunk.uri("old"), None, config=trunk_config(redirects="any"))

    assert foreign.received("INVITE") == 1  # followed, challenged, not answered
    assert not carries_credentials(foreign.message_log())
    (refused,) = events_named(runtime, "call.auth_refused")
    assert refused["sip_status"] == 407 and refused["reason"] == "not_trunk"
    assert refused["method"] == "INVITE"
    assert refused["destination"] == f"{FOREIGN}:{foreign.port}"
    assert events_named(runtime, "call.auth_challenged") == []
    end = ended_event(runtime)
    assert not end["answered"] and end["sip_status"] == 407


async def test_by_default_a_302_away_from_the_trunk_is_not_followed(
    sipp_uas, place_call: CallPlacer
):
    foreign = sipp_uas("echo", host=FOREIGN)
    trunk = sipp_uas("302", redirect_to=foreign.uri("premium"))

    runtime = await place_call(trunk.uri("old"), None, config=trunk_config())

    assert foreign.received("INVITE") == 0
    (refused,) = events_named(runtime, "call.redirect_refused")
    assert refused["contact"] == foreign.uri("premium")
    assert refused["reason"] == "not the host the call was dialed to"
    assert events_named(runtime, "call.redirected") == []
    end = ended_event(runtime)
    assert not end["answered"] and end["cause"] == "redirect_refused"
    assert end["sip_status"] == 302


async def test_a_302_within_the_trunk_is_followed_and_its_challenge_answered(
    sipp_uas, place_call: CallPlacer
):
    """The policy does not get in the way of the trunk itself: a redirect to another of
    its hosts is followed, and that host's 401 gets the credentials."""
    upstream = sipp_uas("auth401", user=USER, password=PASSWORD)
    trunk = sipp_uas("302", redirect_to=upstream.uri("moved"))

    async def app(call: Call) -> None:
        await trio.sleep(0.3)

    runtime = await place_call(trunk.uri("old"), app, config=trunk_config())

    (redirected,) = events_named(runtime, "call.redirected")
    assert redirected["contact"] == upstream.uri("moved")
    assert redirected["reason"] == "[trunk] redirects = trunk"
    assert upstream.received("INVITE") == 2
    assert f'username="{USER}"' in upstream.message_log()
    assert ended_event(runtime)["answered"]


async def test_with_redirects_none_even_a_302_within_the_trunk_is_refused(
    sipp_uas, place_call: CallPlacer
):
    echo = sipp_uas("echo")
    trunk = sipp_uas("302", redirect_to=echo.uri("moved"))

    runtime = await place_call(trunk.uri("old"), None, config=trunk_config(redirects="none"))

    assert echo.received("INVITE") == 0
    (refused,) = events_named(runtime, "call.redirect_refused")
    assert refused["reason"] == "[trunk] redirects = none"
    assert ended_event(runtime)["cause"] == "redirect_refused"


async def test_redirects_are_followed_at_most_max_redirects_times(sipp_uas, place_call: CallPlacer):
    echo = sipp_uas("echo")
    second = sipp_uas("302", redirect_to=echo.uri("third"))
    first = sipp_uas("302", redirect_to=second.uri("second"))

    runtime = await place_call(first.uri("first"), None, config=trunk_config(max_redirects=1))

    assert second.received("INVITE") == 1
    assert echo.received("INVITE") == 0
    assert len(events_named(runtime, "call.redirected")) == 1
    (refused,) = events_named(runtime, "call.redirect_refused")
    assert refused["contact"] == echo.uri("third")
    assert refused["reason"] == "max_redirects (1)"
    assert not ended_event(runtime)["answered"]


async def test_a_challenge_for_another_realm_than_the_configured_one_is_not_answered(
    sipp_uas, place_call: CallPlacer
):
    uas = sipp_uas("auth401", user=USER, password=PASSWORD)  # realm "sipp.lab"

    runtime = await place_call(uas.uri(), None, config=trunk_config(realm="trunk.example"))

    assert uas.received("INVITE") == 1
    assert not carries_credentials(uas.message_log())
    (refused,) = events_named(runtime, "call.auth_refused")
    assert refused["reason"] == "realm_mismatch" and refused["realms"] == ["sipp.lab"]
    assert ended_event(runtime)["sip_status"] == 401


# ------------------------------------------------------------- a caller challenges our BYE


def challenge(bye: bytes) -> bytes:
    request = parse(bye)
    assert isinstance(request, Request)
    response = bytes(Response.for_request(request, 401))
    header = b'WWW-Authenticate: Digest realm="sipp.lab", nonce="c0ffee", algorithm=MD5\r\n'
    return response.replace(b"Content-Length:", header + b"Content-Length:", 1)


async def challenged_bye(
    tmp_path: Path, caller_host: str, trunk_domain: str
) -> tuple[RawCaller, list[dict[str, Any]]]:
    """An inbound call from ``caller_host`` that our app hangs up at once; the caller answers
    the BYE with a 401 and keeps every datagram it is sent afterwards."""

    async def app(call: Call) -> None:
        await call.hangup()

    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind((caller_host, 0))
    caller = RawCaller(sock, f"byechallenge-{caller_host}")
    config = trunk_config(domain=trunk_domain)
    async with answering_front(tmp_path, app, config) as front, trio.open_nursery() as nursery:
        nursery.start_soon(caller.collect)
        await caller.invite(front.address, offer(caller_host, 40000))
        with trio.fail_after(5):
            await caller.ack()
            bye, source = await caller.wait_for(b"BYE ")
        await caller.sock.sendto(challenge(bye), source)
        with trio.fail_after(10):
            await front.ended.wait()
        await trio.sleep(0.3)  # a second BYE would be on its way
        nursery.cancel_scope.cancel()
        runtime = front.only_call()
    caller.close()
    return caller, runtime.bus.history


def cseq(message: bytes) -> int:
    request = parse(message)
    assert isinstance(request, Request)
    return request.cseq.number


def byes(caller: RawCaller) -> list[bytes]:
    return [data for data, _ in caller.received if data.startswith(b"BYE ")]


async def test_a_caller_who_challenges_our_bye_gets_no_credentials(tmp_path: Path):
    caller, events = await challenged_bye(tmp_path, "127.0.0.1", trunk_domain=FOREIGN)

    sent = byes(caller)
    assert not any(carries_credentials(bye.decode()) for bye in sent)
    assert len({cseq(bye) for bye in sent}) == 1, "the challenged BYE is not sent again"
    (refused,) = [e for e in events if e["event"] == "call.auth_refused"]
    assert refused["reason"] == "not_trunk" and refused["method"] == "BYE"
    assert refused["destination"].startswith("127.0.0.1:")


async def test_the_trunk_challenging_our_bye_gets_its_answer(tmp_path: Path):
    """The same call from the trunk's own address: the BYE is sent again, answered."""
    caller, _ = await challenged_bye(tmp_path, FOREIGN, trunk_domain=FOREIGN)

    sent = byes(caller)
    first, *again = sent
    assert not carries_credentials(first.decode())
    assert again, "the challenged BYE is sent again"
    assert all(f'Authorization: Digest username="{USER}"' in bye.decode() for bye in again)
    assert all(cseq(bye) == cseq(first) + 1 for bye in again)
