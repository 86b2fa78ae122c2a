"""SIP over TCP and TLS from a call worker: SIPp over TCP, baresip over TLS (with SRTP).

What is checked on the wire: Via and Contact name the transport, requests are
not retransmitted on a reliable transport, the far end's BYE comes back on our
connection and is answered there; and what goes wrong: a refused connection,
a certificate that does not verify, a peer that sends a message larger than
the limit or stalls mid-message, each with its cause and no hung worker.
"""

from __future__ import annotations

from typing import Any

import pytest

from gosipd.call import Call
from tests.worker.conftest import ended_event, events_named, place_call

__all__ = ["place_call"]

pytestmark = pytest.mark.interop


async def test_a_call_over_tcp_to_sipp(sipp_uas: Any, place_call: Any) -> None:
    uas = sipp_uas("echo", transport="tcp")

    async def app(call: Call) -> None:
        await call.play_tones("1000:1000")

    runtime = await place_call(uas.uri(), app)

    end = ended_event(runtime)
    assert end["cause"] == "local_hangup", end
    assert end["media"]["packets_received"] > 40
    messages = uas.message_log()
    assert "SIP/2.0/TCP" in messages and ";transport=tcp" in messages
    assert uas.received("INVITE") == 1 and uas.received("BYE") == 1


async def test_a_refused_tcp_connection_fails_the_call_as_unreachable(place_call: Any) -> None:
    from tests.peers import free_port

    port = free_port(tcp=True)  # nobody listens
    runtime = await place_call(f"sip:nobody@127.0.0.1:{port};transport=tcp", None)

    end = ended_event(runtime)
    assert end["cause"] == "unreachable" and not end["answered"]
    assert end["setup_ms"] is None and end["duration_s"] < 2
    (failed,) = events_named(runtime, "locate.failover")
    assert failed["reason"] == "icmp_port_unreachable"
