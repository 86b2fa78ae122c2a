"""SIP over TCP and TLS from a call worker: SIPp over TCP, baresip over TLS (with SRTP).

What is checked on the wire: Via and Contact name the transport, requests are
not retransmitted on a reliable transport, the far end's BYE comes back on our
connection and is answered there; and what goes wrong: a refused connection,
a certificate that does not verify, a peer that sends a message larger than
the limit or stalls mid-message, each with its cause and no hung worker.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from gosipd.call import Call
from tests.peers import NAPTR, SRV, Host, LoopbackCapture, clearest, read_wav_mono
from tests.worker.conftest import config_with, ended_event, events_named, place_call

__all__ = ["place_call"]

pytestmark = pytest.mark.interop


async def test_a_call_over_tcp_to_sipp(sipp_uas: Any, place_call: Any) -> None:
    uas = sipp_uas("echo", transport="tcp")

    async def app(call: Call) -> None:
        await call.play_tones("1000:1000")

    runtime = await place_call(uas.uri(), app)

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup", end
    assert end["sip"]["transport"] == "tcp"
    assert end["media"]["packets_received"] > 40
    messages = uas.message_log()
    assert "SIP/2.0/TCP" in messages and ";transport=tcp" in messages
    assert uas.received("INVITE") == 1 and uas.received("BYE") == 1


async def test_a_refused_tcp_connection_fails_the_call_as_unreachable(place_call: Any) -> None:
    # A port held by a bound socket that does not listen: a connection to it is refused.
    # A port merely found free could be handed to our own connect as its source port
    # (the kernel's ephemeral range), and TCP then connects to itself: our INVITE came
    # back to us and was answered 486.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        runtime = await place_call(f"sip:nobody@127.0.0.1:{port};transport=tcp", None)

    end = ended_event(runtime)
    assert end["cause"] == "unreachable" and not end["answered"]
    assert end["setup_ms"] is None and end["duration_s"] < 2
    (failed,) = events_named(runtime, "locate.failover")
    assert failed["reason"] == "icmp_port_unreachable"


async def test_a_call_over_tls_with_srtp_to_baresip(
    baresip_uas: Any, place_call: Any, certificates: dict[str, Path], tmp_path: Path
) -> None:
    """What OpenAI's SIP endpoint and TLS trunks ask for: TLS signalling, SRTP media."""
    bob = baresip_uas("uas", tone_hz=440, mediaenc="srtp-mand", certificate=certificates["server"])
    recording = place_call.files / "bob.wav"

    async def app(call: Call) -> None:
        async with call.record(recording.name):
            await trio.sleep(1.5)

    config = config_with(rtp_srtp="required", tls_ca_file=str(certificates["ca"]))
    capture = LoopbackCapture(tmp_path / "capture")
    try:
        runtime = await place_call(f"sips:bob@127.0.0.1:{bob.tls_port}", app, config=config)
        await bob.wait_event("CALL_CLOSED", timeout=5)
    finally:
        capture.stop()

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup", end
    assert end["sip"]["transport"] == "tls"
    assert end["media"]["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    samples, rate = read_wav_mono(recording)
    assert clearest(samples, rate, 440) > 0.8
    assert "SRTP is Enabled" in bob.log()
    # nothing of the signalling is in the clear: no SIP, so no key, on UDP either
    assert not any(b"SIP/2.0" in d.payload for d in capture.datagrams())


@pytest.mark.parametrize(
    ("server", "trust_ours", "words"),
    [
        ("server", False, "unable to get local issuer certificate"),  # a CA we do not trust
        ("wrong_name", True, "mismatch"),  # signed, but for another name
    ],
)
async def test_a_certificate_that_does_not_verify_fails_the_call_as_tls_failed(
    baresip_uas: Any,
    place_call: Any,
    certificates: dict[str, Path],
    server: str,
    trust_ours: bool,
    words: str,
) -> None:
    bob = baresip_uas("uas", certificate=certificates[server])
    config = config_with(tls_ca_file=str(certificates["ca"])) if trust_ours else config_with()

    runtime = await place_call(f"sips:bob@127.0.0.1:{bob.tls_port}", None, config=config)

    end = ended_event(runtime)
    assert end["cause"] == "tls_failed" and not end["answered"], end
    assert words in end["reason"], end["reason"]
    assert end["duration_s"] < 3


async def test_rfc_3263_picks_tcp_from_naptr_when_we_allow_it(
    sipp_uas: Any, dnsmasq: Any, place_call: Any
) -> None:
    """NAPTR prefers SIP+D2T, then SIP+D2U: with [sip] transports = tcp, udp the call goes
    over TCP; with the default (udp only) the TCP records are passed over."""
    tcp = sipp_uas("echo", transport="tcp")
    udp = sipp_uas("echo")
    server = dnsmasq(
        [
            NAPTR("trunk.lab.test", 10, 10, "S", "SIP+D2T", "_sip._tcp.trunk.lab.test"),
            NAPTR("trunk.lab.test", 20, 10, "S", "SIP+D2U", "_sip._udp.trunk.lab.test"),
            SRV("_sip._tcp.trunk.lab.test", "tcp.lab.test", tcp.port),
            SRV("_sip._udp.trunk.lab.test", "udp.lab.test", udp.port),
            Host("tcp.lab.test", tcp.host),
            Host("udp.lab.test", udp.host),
        ]
    )
    host, port = server.nameserver

    async def app(call: Call) -> None:
        await trio.sleep(0.3)

    for transports, peer, scheme in ((("tcp", "udp"), tcp, "tcp"), (("udp",), udp, "udp")):
        config = config_with(dns_nameservers=(host,), dns_port=port, transports=transports)
        runtime = await place_call("sip:echo@trunk.lab.test", app, config=config)
        assert ended_event(runtime)["cause"] == "local_hangup"
        (chosen,) = events_named(runtime, "locate.target")
        assert chosen["target"] == f"{scheme}:{peer.host}:{peer.port}"
        assert peer.received("INVITE") == 1


async def test_an_invite_over_1300_octets_goes_over_tcp_when_tcp_is_allowed(
    sipp_uas: Any, place_call: Any
) -> None:
    """RFC 3261 §18.1.1 (path MTU unknown): a 1300+ octet request must not go over UDP.
    With [sip] transports = udp, tcp the same target is tried over TCP; with udp only
    (the default) the INVITE goes over UDP as it is."""
    big = [("X-Context", "a" * 600)]  # with an SRTP offer: well over 1300 octets

    async def app(call: Call) -> None:
        await trio.sleep(0.2)

    tcp = sipp_uas("echo", transport="tcp")
    uri = tcp.uri().removesuffix(";transport=tcp")  # nothing asks for a transport
    config = config_with(transports=("udp", "tcp"), rtp_srtp="offer")
    runtime = await place_call(uri, app, config=config, headers=big)

    assert ended_event(runtime)["cause"] == "local_hangup"
    assert events_named(runtime, "locate.target")[-1]["target"].startswith("tcp:")
    assert tcp.received("INVITE") == 1 and "X-Context: " + "a" * 600 in tcp.message_log()

    udp = sipp_uas("echo")
    runtime = await place_call(udp.uri(), app, config=config_with(rtp_srtp="offer"), headers=big)
    assert ended_event(runtime)["cause"] == "local_hangup"
    assert udp.received("INVITE") == 1
