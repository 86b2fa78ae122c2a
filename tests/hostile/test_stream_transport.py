"""A hostile SIP server at the other end of our TCP connection.

The server is the test's own TCP listener: it reads our INVITE and then
misbehaves. Each way ends the call with a cause and a reason that says what
happened, never a hung worker or unbounded memory.
"""

from __future__ import annotations

from typing import Any

import trio

from gosipd.sip.framing import PING, PONG
from tests.hostile.attacker import Behaviour, serve_raw
from tests.worker.conftest import config_with, ended_event, place_call

__all__ = ["place_call"]


def response_head(invite: bytes, status: str, length: int) -> bytes:
    keep = [
        line
        for line in invite.split(b"\r\n")
        if line.lower().startswith((b"via:", b"from:", b"to:", b"call-id:", b"cseq:"))
    ]
    keep = [line + b";tag=hostile" if line.lower().startswith(b"to:") else line for line in keep]
    return b"\r\n".join([f"SIP/2.0 {status}".encode(), *keep, b"Content-Length: %d" % length])


async def call_against(behaviour: Behaviour, place_call: Any, **config: Any) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(serve_raw, behaviour)
        port = listener.socket.getsockname()[1]
        runtime = await place_call(
            f"sip:victim@127.0.0.1:{port};transport=tcp", None, config=config_with(**config)
        )
        nursery.cancel_scope.cancel()
    return ended_event(runtime)


async def test_a_10_mb_message_closes_the_connection_without_reading_it(place_call: Any) -> None:
    sent = 0

    async def huge(stream: trio.SocketStream, invite: bytes) -> None:
        nonlocal sent
        await stream.send_all(response_head(invite, "200 OK", 10_000_000) + b"\r\n\r\n")
        chunk = b"x" * 65536
        try:
            while sent < 10_000_000:
                await stream.send_all(chunk)
                sent += len(chunk)
        except trio.BrokenResourceError:
            pass  # closed on us, as it should be

    end = await call_against(huge, place_call)

    assert end["cause"] == "unreachable" and not end["answered"]
    assert "a body of 10000000 octets (limit 65536)" in end["reason"]
    assert sent < 10_000_000


async def test_a_server_that_stalls_mid_message_loses_the_connection(place_call: Any) -> None:
    async def stall(stream: trio.SocketStream, invite: bytes) -> None:
        await stream.send_all(response_head(invite, "180 Ringing", 0)[:40])
        await trio.sleep_forever()

    with trio.fail_after(10):  # no failover timer: the stall is what ends it
        end = await call_against(stall, place_call, attempt_timeout_s=5.0)

    assert end["cause"] == "unreachable"
    assert "stalled mid-message" in end["reason"]
    assert end["duration_s"] < 3  # 16·T1 (T1 = 100 ms here), before Timer B


async def test_a_message_without_content_length_is_refused(place_call: Any) -> None:
    async def no_length(stream: trio.SocketStream, invite: bytes) -> None:
        head = response_head(invite, "200 OK", 0).rsplit(b"\r\n", 1)[0]
        await stream.send_all(head + b"\r\n\r\n")
        await trio.sleep_forever()

    end = await call_against(no_length, place_call)

    assert end["cause"] == "unreachable"
    assert "no Content-Length" in end["reason"]


async def test_a_keepalive_ping_gets_its_pong_and_the_call_goes_on(place_call: Any) -> None:
    pongs = []

    async def pinging(stream: trio.SocketStream, invite: bytes) -> None:
        await stream.send_all(PING)
        pongs.append(await stream.receive_some(2))
        await stream.send_all(response_head(invite, "486 Busy Here", 0) + b"\r\n\r\n")
        await stream.receive_some(65536)  # our ACK
        await trio.sleep_forever()

    end = await call_against(pinging, place_call)

    assert pongs == [PONG]
    assert end["cause"] == "busy" and end["sip_status"] == 486
