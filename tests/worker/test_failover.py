"""RFC 3263 failover in a real call: dnsmasq serves NAPTR -> SRV, and the INVITE moves on
past targets that answer 503, refuse with ICMP, or say nothing at all."""

from __future__ import annotations

import pytest
import trio

from gosipd.call import Call
from gosipd.config import Config, Limits, TrunkConfig
from gosipd.locate import Reason
from tests.peers import NAPTR, SRV, Host, failover_zone
from tests.worker.conftest import config_with, ended_event, events_named

pytestmark = pytest.mark.interop


async def hold_briefly(call: Call) -> None:
    await trio.sleep(0.3)


async def test_a_503_moves_the_call_to_the_next_srv_target_and_the_events_say_why(
    sipp_uas, dnsmasq, place_call
):
    busy = sipp_uas("503", retry_after=30)
    echo = sipp_uas("echo")
    server = dnsmasq(
        [
            NAPTR("trunk.lab.test", 10, 10, "S", "SIP+D2U", "_sip._udp.trunk.lab.test"),
            SRV("_sip._udp.trunk.lab.test", "busy.lab.test", busy.port, priority=10),
            SRV("_sip._udp.trunk.lab.test", "echo.lab.test", echo.port, priority=20),
            Host("busy.lab.test", busy.host),
            Host("echo.lab.test", echo.host),
        ]
    )
    host, port = server.nameserver
    config = config_with(dns_nameservers=(host,), dns_port=port)

    runtime = await place_call("sip:echo@trunk.lab.test", hold_briefly, config=config)

    chosen = events_named(runtime, "locate.target")
    assert [e["target"] for e in chosen] == [
        f"udp:{busy.host}:{busy.port}",
        f"udp:{echo.host}:{echo.port}",
    ]
    (failover,) = events_named(runtime, "locate.failover")
    assert failover["status"] == 503 and failover["retry_after"] == 30
    assert failover["target"] == f"udp:{busy.host}:{busy.port}"
    assert busy.received("INVITE") == 1 and busy.received("ACK") == 1
    assert echo.received("INVITE") == 1
    assert "INVITE sip:echo@trunk.lab.test SIP/2.0" in echo.message_log()
    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "local_hangup"


async def test_a_bare_number_goes_through_the_trunk_with_its_tech_prefix_and_identity(
    sipp_uas, dnsmasq, place_call
):
    echo = sipp_uas("echo")
    server = dnsmasq(
        [
            SRV("_sip._udp.trunk.lab.test", "sbc.lab.test", echo.port, priority=10),
            Host("sbc.lab.test", echo.host),
        ]
    )
    host, port = server.nameserver
    config = config_with(
        dns_nameservers=(host,),
        dns_port=port,
        trunk=TrunkConfig(
            domain="trunk.lab.test",
            prefix="12345678*",
            from_uri="sip:+15551230000@trunk.lab.test",
            caller_id="Acme Support",
        ),
    )

    runtime = await place_call("+15557654321", hold_briefly, config=config)

    log = echo.message_log()
    assert "INVITE sip:12345678*+15557654321@trunk.lab.test SIP/2.0" in log
    assert 'From: "Acme Support" <sip:+15551230000@trunk.lab.test>;tag=' in log
    assert ended_event(runtime)["answered"]


@pytest.mark.root
async def test_a_call_fails_over_past_a_black_hole_an_icmp_refusal_and_a_503_within_3_s(
    blackhole, sipp_uas, dnsmasq, place_call
):
    hole = blackhole()
    busy = sipp_uas("503", retry_after=30)
    echo = sipp_uas("echo")
    server = dnsmasq(failover_zone(hole, busy, echo))
    host, port = server.nameserver
    # the production defaults (2 s per target, T1 = 500 ms), bound to every address
    config = Config(
        dns_nameservers=(host,),
        dns_port=port,
        limits=Limits(max_duration_s=30, media_timeout_s=10),
    )

    runtime = await place_call("sip:echo@trunk.lab.test", hold_briefly, config=config)

    failovers = events_named(runtime, "locate.failover")
    assert [(e["target"], e["reason"], e.get("status")) for e in failovers] == [
        (f"udp:{hole.silent_addr}:5060", "timeout", None),
        (f"udp:{hole.refusing_addr}:5060", Reason.PORT_UNREACHABLE.value, None),
        (f"udp:{busy.host}:{busy.port}", "response", 503),
    ]
    end = ended_event(runtime)
    assert end["answered"] and end["cause"] == "local_hangup"
    print(f"time to connect with a dead primary: {end['setup_ms']} ms")
    assert 2000 <= end["setup_ms"] < 3000
    assert busy.received("INVITE") == 1
    assert echo.received("INVITE") == 1


@pytest.mark.root
async def test_a_trunk_with_no_live_target_fails_as_unreachable(blackhole, dnsmasq, place_call):
    hole = blackhole()
    server = dnsmasq(
        [
            SRV("_sip._udp.trunk.lab.test", "silent.lab.test", 5060, priority=10),
            SRV("_sip._udp.trunk.lab.test", "refusing.lab.test", 5060, priority=20),
            Host("silent.lab.test", hole.silent_addr),
            Host("refusing.lab.test", hole.refusing_addr),
        ]
    )
    host, port = server.nameserver
    config = Config(dns_nameservers=(host,), dns_port=port, attempt_timeout_s=1.0)

    runtime = await place_call("sip:echo@trunk.lab.test", hold_briefly, config=config)

    end = ended_event(runtime)
    assert end["cause"] == "unreachable"
    assert not end["answered"]
    assert len(events_named(runtime, "locate.failover")) == 2
