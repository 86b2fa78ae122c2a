"""When things go wrong: the far end vanishes, sends garbage, cannot be found; the app
raises. Every call still ends, with a BYE where one is owed and a cause that says why."""

from __future__ import annotations

import signal
import socket

import pytest
import trio

from gosipd.call import Call, CallError
from gosipd.sip import Request, Response, parse
from tests.peers import Host
from tests.worker.conftest import config_with, ended_event, event_names, events_named

pytestmark = pytest.mark.interop


async def answer_one_bye(sock: trio.socket.SocketType, seen: list[Request]) -> None:
    """Stand where the far end was: take its BYE and answer it 200."""
    while True:
        data, source = await sock.recvfrom(65535)
        message = parse(data)
        if isinstance(message, Request):
            seen.append(message)
            if message.method == "BYE":
                await sock.sendto(bytes(Response.for_request(message, 200)), source)


async def test_a_far_end_that_vanishes_mid_call_is_hung_up_on_media_timeout(sipp_uas, place_call):
    echo = sipp_uas("echo")
    config = config_with(limits={"media_timeout_s": 1.0})
    requests: list[Request] = []

    async def app(call: Call) -> None:
        await call.play_tones("1000:600")
        echo.process.stop(signal.SIGKILL)  # no BYE, no more RTP: gone
        stand_in = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await stand_in.bind(echo.address)  # so our BYE can be seen
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_one_bye, stand_in, requests)
            await call.wait_ended()
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        stand_in.close()

    runtime = await place_call(echo.uri(), app, config=config)

    (timeout,) = events_named(runtime, "call.media_timeout")
    assert 0.9 <= timeout["silent_s"] < 2.0
    end = ended_event(runtime)
    assert end["cause"] == "media_timeout"
    assert 1.5 < end["duration_s"] < 3.5
    assert [r.method for r in requests] == ["BYE"]


async def test_a_bye_nobody_answers_still_ends_the_call(sipp_uas, place_call):
    echo = sipp_uas("echo")
    config = config_with(limits={"media_timeout_s": 0.6})

    async def app(call: Call) -> None:
        await trio.sleep(0.3)
        echo.process.stop(signal.SIGKILL)
        stand_in = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await stand_in.bind(echo.address)  # swallows the BYE: no ICMP, no answer
        await call.wait_ended()
        stand_in.close()

    runtime = await place_call(echo.uri(), app, config=config)

    end = ended_event(runtime)
    assert end["cause"] == "media_timeout"
    assert end["reason"] == "BYE unanswered"


async def test_malformed_and_stray_responses_are_counted_and_do_not_disturb_the_call(
    sipp_uas, place_call
):
    echo = sipp_uas("echo")
    garbage = [
        b"\x00\xff\x13garbage",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"SIP/2.0 99999 Huh\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n\r\n",
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnone\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: nobody\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",  # well-formed, but no one's
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKy\r\n"
        b"CSeq: banana\r\nContent-Length: 5\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\n\r\n",
    ]
    counted: dict[str, int] = {}

    async def app(call: Call) -> None:
        host, port = call.status()["sip"]["local"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for datagram in garbage * 3:
                attacker.sendto(datagram, (host, port))
        await trio.sleep(0.5)
        counted.update(call.status()["sip"])
        await call.play_tones("1000:300")

    runtime = await place_call(echo.uri(), app)

    assert counted["malformed"] == 5 * 3  # all but the well-formed stray 180, each time
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert end["answered"] and end["media"]["packets_received"] > 20
    assert echo.received("BYE") == 1


async def test_an_app_that_raises_ends_its_call_with_a_bye_and_app_error(sipp_uas, place_call):
    echo = sipp_uas("echo")

    async def app(call: Call) -> None:
        await trio.sleep(0.2)
        raise ZeroDivisionError("the app's own bug")

    runtime = await place_call(echo.uri(), app)

    end = ended_event(runtime)
    assert end["cause"] == "app_error"
    assert "ZeroDivisionError" in end["app_error"]
    assert end["answered"]
    assert echo.received("BYE") == 1


async def test_an_app_that_plays_a_missing_file_fails_with_the_file_named(sipp_uas, place_call):
    echo = sipp_uas("echo")

    async def app(call: Call) -> None:
        await call.play("no-such-prompt.wav")

    runtime = await place_call(echo.uri(), app)

    end = ended_event(runtime)
    assert end["cause"] == "app_error"
    assert "play: 'no-such-prompt.wav': no such file" in end["app_error"]
    assert echo.received("BYE") == 1


async def test_an_app_keeps_working_after_the_far_end_hangs_up_gets_call_error(
    baresip_uas, place_call
):
    bob = baresip_uas("uas")
    errors: list[str] = []

    async def app(call: Call) -> None:
        await bob.wait_event("CALL_ESTABLISHED", timeout=5)
        await bob.ctrl("hangup")
        await call.wait_ended()
        try:
            await call.play_tones("440:100")
        except CallError as exc:
            errors.append(str(exc))

    runtime = await place_call(bob.uri, app)

    assert errors == ["the call has ended"]
    assert ended_event(runtime)["cause"] == "remote_hangup"


async def test_a_name_that_does_not_resolve_fails_the_call_naming_it(dnsmasq, place_call):
    server = dnsmasq([Host("known.lab.test", "127.0.0.1")])
    host, port = server.nameserver
    config = config_with(dns_nameservers=(host,), dns_port=port)

    runtime = await place_call("sip:someone@unknown.lab.test", None, config=config)

    end = ended_event(runtime)
    assert end["cause"] == "failed"
    assert "unknown.lab.test" in end["reason"]
    assert not end["answered"]
    assert "call.trying" not in event_names(runtime)


async def test_an_answer_with_a_codec_we_did_not_offer_is_hung_up_as_failed(sipp_uas, place_call):
    uas = sipp_uas("codec", keys={"answer_pt": "18", "answer_rtpmap": "G729/8000"})
    app_ran = False

    async def app(call: Call) -> None:
        nonlocal app_ran
        app_ran = True

    runtime = await place_call(uas.uri(), app)

    end = ended_event(runtime)
    assert end["cause"] == "failed"
    assert end["reason"].startswith("unusable SDP answer: ")
    assert end["answered"] and not app_ran
    assert uas.received("ACK") == 1 and uas.received("BYE") == 1  # RFC 3264 §5


async def test_an_answer_that_picks_pcma_from_our_offer_carries_audio(sipp_uas, place_call):
    uas = sipp_uas("codec", keys={"answer_pt": "8", "answer_rtpmap": "PCMA/8000"})
    seen: dict[str, object] = {}

    async def app(call: Call) -> None:
        seen["codec"] = call.status()["media"]["codec"]
        await call.play_tones("1000:500")
        await trio.sleep(0.2)

    runtime = await place_call(uas.uri(), app)

    assert seen["codec"] == "PCMA"
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert end["media"]["packets_received"] > 20  # the echo of our A-law
