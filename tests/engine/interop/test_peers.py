"""The engine against real peers over loopback UDP: SIPp UAS scenarios (plain call, 100rel,
302, 503, 401 digest verified by SIPp), Kamailio's registrar (a cryptographically checked
407, then Record-Route for ACK and BYE), and SIPp UACs calling our UAS."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from gosipd import sip
from gosipd.sip import URI, NameAddr
from gosipd.sip import events as ev
from gosipd.sip.digest import Credentials
from gosipd.sip.ua import CallState

from .harness import UdpAgent, udp_agent

pytestmark = pytest.mark.interop

OFFER = (
    b"v=0\r\no=gosipd 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ANSWER = OFFER.replace(b"40000", b"40002")
ME = NameAddr.parse("<sip:gosipd@127.0.0.1>")
ALICE = NameAddr.parse("<sip:alice@lab.test>")


def dial(agent: UdpAgent, uri: str, destination: tuple[str, int], from_: NameAddr = ME) -> None:
    agent.act(
        lambda ua, now: ua.invite(
            URI.parse(uri), destination=destination, from_=from_, now=now, sdp=OFFER
        )
    )


async def hang_up(agent: UdpAgent) -> ev.Ended:
    agent.act(lambda ua, now: ua.hangup(now))
    return await agent.wait_for(ev.Ended)


# --------------------------------------------------------------------------- as the caller


async def test_a_plain_call_to_the_sipp_echo_uas(sipp_uas):
    echo = sipp_uas("echo")
    async with udp_agent() as agent:
        dial(agent, echo.uri(), echo.address)
        answered = await agent.wait_for(ev.Answered)
        assert answered.sdp is not None and b"m=audio" in answered.sdp
        assert agent.of(ev.Ringing)
        ended = await hang_up(agent)
        assert ended.cause == "local_hangup"
    await eventually(lambda: echo.received("BYE") == 1 and echo.sent("200") == 2)
    assert (echo.received("INVITE"), echo.received("ACK")) == (1, 1)


async def test_the_sipp_100rel_uas_gets_its_prack_before_answering(sipp_uas):
    uas = sipp_uas("100rel")
    async with udp_agent() as agent:
        dial(agent, uas.uri(), uas.address)
        early = await agent.wait_for(ev.EarlyMedia)
        assert early.reliable and early.status == 180
        await agent.wait_for(ev.Answered)
        assert await hang_up(agent) == ev.Ended("local_hangup")
    await eventually(lambda: uas.received("BYE") == 1)
    assert uas.received("PRACK") == 1


async def test_a_302_from_sipp_is_followed_to_the_contact(sipp_uas):
    echo = sipp_uas("echo")
    redirect = sipp_uas("302", redirect_to=echo.uri("moved"))
    async with udp_agent() as agent:
        dial(agent, redirect.uri(), redirect.address)
        redirected = await agent.wait_for(ev.Redirected)
        assert redirected.status == 302
        [contact] = redirected.contacts
        assert contact == URI.parse(echo.uri("moved"))
        assert agent.ua.state is CallState.WAITING
        agent.act(
            lambda ua, now: ua.retry((contact.host, contact.port or 5060), now, request_uri=contact)
        )
        await agent.wait_for(ev.Answered)
        await hang_up(agent)
    await eventually(lambda: echo.received("BYE") == 1)
    assert redirect.received("ACK") == 1  # the 302 is ACKed by the transaction
    assert echo.received("INVITE") == 1


async def test_a_503_from_sipp_is_an_attempt_failed_with_retry_after(sipp_uas):
    busy = sipp_uas("503", retry_after=17)
    async with udp_agent() as agent:
        dial(agent, busy.uri(), busy.address)
        failed = await agent.wait_for(ev.AttemptFailed)
        assert (failed.reason, failed.status, failed.retry_after) == ("status", 503, 17)
        assert failed.destination == busy.address
        agent.act(lambda ua, now: ua.give_up(now))
        assert await agent.wait_for(ev.Failed) == ev.Failed(503, "Service Unavailable", 17)
    await eventually(lambda: busy.received("ACK") == 1)


async def test_a_401_from_sipp_is_answered_with_a_digest_sipp_verifies(sipp_uas):
    uas = sipp_uas("auth401", user="labuser", password="labpass")
    async with udp_agent(credentials=Credentials("labuser", "labpass")) as agent:
        dial(agent, uas.uri(), uas.address)
        challenged = await agent.wait_for(ev.AuthChallenged)
        assert challenged == ev.AuthChallenged(401, ("sipp.lab",))
        await agent.wait_for(ev.Answered)  # SIPp's <verifyauth> accepted it
        await hang_up(agent)
    assert uas.received("INVITE") == 2
    assert "403" not in {line.split()[1] for line in _status_lines(uas.message_log())}


async def test_a_wrong_password_gets_sipps_403(sipp_uas):
    uas = sipp_uas("auth401", user="labuser", password="labpass")
    async with udp_agent(credentials=Credentials("labuser", "wrong")) as agent:
        dial(agent, uas.uri(), uas.address)
        failed = await agent.wait_for(ev.Failed)
        assert failed.status == 403
        assert (await agent.wait_for(ev.Ended)).cause == "rejected"


async def test_kamailio_checks_our_407_digest_and_record_routes_ack_and_bye(
    kamailio, sipp_uas, sipp_uac
):
    registrar = kamailio("registrar")
    echo = sipp_uas("echo")
    registered = await sipp_uac(
        "uac_register",
        f"{registrar.host}:{registrar.port}",
        contact=f"{echo.host}:{echo.port}",
        timeout=5,
    ).wait()
    assert registered.ok, registered.errors
    async with udp_agent(credentials=Credentials("alice", "alicepass")) as agent:
        # Kamailio wants the digest username to be the From user
        dial(agent, registrar.uri("labuser"), registrar.address, ALICE)
        challenged = await agent.wait_for(ev.AuthChallenged)
        assert challenged == ev.AuthChallenged(407, ("lab.test",))
        await agent.wait_for(ev.Answered)
        dialog = agent.ua.dialog
        assert dialog is not None
        assert [r.uri.host_port for r in dialog.route_set] == [f"{registrar.host}:{registrar.port}"]
        assert dialog.route_set[0].uri.lr
        await eventually(lambda: echo.received("ACK") == 1)  # through Kamailio
        await hang_up(agent)
    sent_to = {destination for data, destination in agent.sent if data.startswith(b"BYE ")}
    assert sent_to == {registrar.address}
    await eventually(lambda: echo.received("BYE") == 1)


async def test_kamailio_refuses_a_wrong_password_after_one_retry(kamailio):
    registrar = kamailio("registrar")
    async with udp_agent(credentials=Credentials("alice", "wrong")) as agent:
        dial(agent, registrar.uri("labuser"), registrar.address, ALICE)
        failed = await agent.wait_for(ev.Failed)
        assert failed.status == 407
    invites = [d for d, _ in agent.sent if d.startswith(b"INVITE ")]
    assert len(invites) == 2


# --------------------------------------------------------------------------- as the callee


async def _answer_incoming(agent: UdpAgent, *, ring_sdp: bytes | None = None) -> None:
    await agent.wait_for(ev.IncomingCall)
    if ring_sdp is None:
        agent.act(lambda ua, now: ua.ring(now))
    else:
        agent.act(lambda ua, now: ua.ring(now, status=183, sdp=ring_sdp))
    agent.act(lambda ua, now: ua.answer(now, sdp=ANSWER))


async def test_a_sipp_caller_reaches_our_uas_and_hangs_up(sipp_uac):
    async with udp_agent() as agent:
        host, port = agent.address
        run = sipp_uac("uac_pcmu", f"{host}:{port}", call_ms=500, timeout=15)
        await _answer_incoming(agent)
        await agent.wait_for(ev.AckReceived)
        assert (await agent.wait_for(ev.Ended)).cause == "remote_hangup"
        result = await run.wait()
    assert result.ok, result.errors
    assert result.received("200") == 2


async def test_a_sipp_caller_pracks_our_reliable_provisional(sipp_uac):
    async with udp_agent() as agent:
        host, port = agent.address
        run = sipp_uac("uac_100rel", f"{host}:{port}", call_ms=500, timeout=15)
        await _answer_incoming(agent, ring_sdp=ANSWER)  # the 2xx waits for the PRACK
        await agent.wait_for(ev.AckReceived)
        assert (await agent.wait_for(ev.Ended)).cause == "remote_hangup"
        result = await run.wait()
    assert result.ok, result.errors
    answers = [sip.parse(d) for d, _ in agent.sent if d.startswith(b"SIP/2.0 ")]
    assert [(r.status, r.cseq.method) for r in answers if r.cseq.method == "PRACK"] == [
        (200, "PRACK")
    ]
    [reliable] = [r for r in answers if r.status == 183]
    assert reliable.rseq is not None and "100rel" in reliable.require


async def test_a_sipp_caller_cancels_while_we_ring(sipp_uac):
    async with udp_agent(reliable_provisionals=False) as agent:
        host, port = agent.address
        run = sipp_uac("uac_cancel", f"{host}:{port}", call_ms=300, timeout=15)
        await agent.wait_for(ev.IncomingCall)
        agent.act(lambda ua, now: ua.ring(now))
        await agent.wait_for(ev.CancelReceived)
        assert (await agent.wait_for(ev.Ended)).cause == "cancelled"
        result = await run.wait()
    assert result.ok, result.errors
    assert result.received("487") >= 1


async def eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    """SIPp writes its message log as it goes: give a count a moment to catch up."""
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.05)
    assert check()


def _status_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("SIP/2.0 ")]
