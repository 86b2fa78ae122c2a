"""ICMP errors as failover outcomes on one UDP socket (IP_RECVERR), against real dead ends:
closed loopback ports and the black-hole network namespace."""

from __future__ import annotations

import socket

import pytest
import trio

from gosipd.locate import Datagram, IcmpError, Reason, UdpEndpoint

PAYLOAD = b"OPTIONS sip:probe@example SIP/2.0\r\nContent-Length: 0\r\n\r\n"


def closed_port(host: str) -> int:
    """A port on ``host`` that nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def next_outcome(endpoint: UdpEndpoint, seconds: float = 1.0) -> Datagram | IcmpError | None:
    with trio.move_on_after(seconds):
        return await endpoint.receive()
    return None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_a_closed_port_is_reported_as_port_unreachable_naming_the_destination(host):
    port = closed_port(host)
    with UdpEndpoint("::" if ":" in host else "0.0.0.0") as endpoint:
        await endpoint.send(PAYLOAD, (host, port))
        outcome = await next_outcome(endpoint)
    assert isinstance(outcome, IcmpError)
    assert outcome.destination == (host, port)
    assert outcome.reason is Reason.PORT_UNREACHABLE
    assert outcome.description == "ECONNREFUSED"


async def test_a_dual_stack_endpoint_reports_ipv4_destinations_in_plain_form():
    port = closed_port("127.0.0.1")
    with UdpEndpoint("::") as endpoint:
        await endpoint.send(PAYLOAD, ("127.0.0.1", port))
        outcome = await next_outcome(endpoint)
    assert isinstance(outcome, IcmpError)
    assert outcome.destination == ("127.0.0.1", port)


async def test_datagrams_still_arrive_and_an_old_error_does_not_stick_to_the_next_target():
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        UdpEndpoint("127.0.0.1") as endpoint,
    ):
        server.bind(("127.0.0.1", 0))
        alive = server.getsockname()
        dead = ("127.0.0.1", closed_port("127.0.0.1"))
        await endpoint.send(PAYLOAD, dead)
        await trio.sleep(0.05)  # the ICMP error is now pending on the socket
        await endpoint.send(PAYLOAD, alive)  # must not fail because of it
        data, source = server.recvfrom(2048)
        assert data == PAYLOAD
        server.sendto(b"SIP/2.0 200 OK\r\n\r\n", source)
        first = await next_outcome(endpoint)
        second = await next_outcome(endpoint)
    assert isinstance(first, IcmpError) and first.destination == dead
    assert second == Datagram(b"SIP/2.0 200 OK\r\n\r\n", alive)


async def test_receive_can_be_cancelled_while_nothing_arrives():
    with UdpEndpoint("127.0.0.1") as endpoint:
        assert await next_outcome(endpoint, 0.05) is None
        assert endpoint.local_address[0] == "127.0.0.1"


@pytest.mark.interop
@pytest.mark.root
async def test_the_black_hole_namespace_gives_each_kind_of_dead_target(blackhole):
    hole = blackhole()
    with UdpEndpoint("0.0.0.0") as endpoint:
        # a host whose kernel refuses: ICMP port unreachable from that host
        await endpoint.send(PAYLOAD, (hole.refusing_addr, 5060))
        refused = await next_outcome(endpoint)
        assert isinstance(refused, IcmpError)
        assert (refused.destination, refused.reason) == (
            (hole.refusing_addr, 5060),
            Reason.PORT_UNREACHABLE,
        )
        assert refused.reporter == hole.refusing_addr

        # a silent host: nothing at all; only the failover timer can tell
        await endpoint.send(PAYLOAD, (hole.silent_addr, 5060))
        assert await next_outcome(endpoint, 1.0) is None
        assert hole.dropped_packets() == 1

        # nobody answers ARP: host unreachable after ~3 s (reported only thanks to IP_RECVERR)
        await endpoint.send(PAYLOAD, (hole.unreachable_addr, 5060))
        unreachable = await next_outcome(endpoint, 6.0)
        assert isinstance(unreachable, IcmpError)
        assert unreachable.destination == (hole.unreachable_addr, 5060)
        assert unreachable.reason is Reason.HOST_UNREACHABLE
        assert unreachable.description == "EHOSTUNREACH"


@pytest.mark.interop
@pytest.mark.root
async def test_a_send_that_cannot_leave_the_host_is_reported_like_an_icmp_error(blackhole):
    hole = blackhole()
    with UdpEndpoint("127.0.0.1") as endpoint:  # loopback source: cannot go out on the veth
        await endpoint.send(PAYLOAD, (hole.silent_addr, 5060))
        outcome = await next_outcome(endpoint)
    assert isinstance(outcome, IcmpError)
    assert (outcome.destination, outcome.reason) == (
        (hole.silent_addr, 5060),
        Reason.HOST_UNREACHABLE,
    )
    assert hole.dropped_packets() == 0


async def test_an_ipv4_endpoint_refuses_an_ipv6_destination_at_once():
    with (
        UdpEndpoint("127.0.0.1") as endpoint,
        pytest.raises(ValueError, match="open the UdpEndpoint on '::'"),
    ):
        await endpoint.send(PAYLOAD, ("::1", 5060))
