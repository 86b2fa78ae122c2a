"""Attacks on the supervisor's TCP and TLS listeners: each costs the attacker its own
connection, never the listener, another connection or a call."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.attacker import stream_options
from tests.supervisor.daemon import Daemon
from tests.supervisor.test_sip_connections import stream_daemon

Start = Callable[..., Daemon]

pytestmark = pytest.mark.interop


def connect(port: int, timeout: float = 5) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One response with no body, read off the stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    return data


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long until the far end closed (EOF or reset); fails past ``seconds``."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s") from None
    return time.monotonic() - start


def counter(daemon: Daemon, name: str) -> int:
    value: int = daemon.request({"op": "status"})["counters"][name]
    return value


def wait_for_counter(daemon: Daemon, name: str, at_least: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while counter(daemon, name) < at_least:
        assert time.monotonic() < deadline, f"{name} stayed below {at_least}"
        time.sleep(0.05)


def test_options_over_tcp_is_answered_on_its_connection_and_a_ping_gets_its_pong(
    gosipd: Start,
) -> None:
    daemon: Any = stream_daemon(gosipd)
    with connect(daemon.tcp_port) as sock:
        sock.sendall(stream_options())
        reply = read_response(sock)
        assert reply.startswith(b"SIP/2.0 200 OK\r\n")
        assert b"Via: SIP/2.0/TCP 127.0.0.1:9;" in reply
        sock.sendall(b"\r\n\r\n")  # RFC 5626 ping
        assert sock.recv(16) == b"\r\n"
        # two messages in one segment, then one split across three
        sock.sendall(stream_options() + stream_options())
        data = b""
        while data.count(b"SIP/2.0 200 OK") < 2:
            chunk = sock.recv(65536)
            assert chunk, "closed before both answers"
            data += chunk
        message = stream_options()
        for part in (message[:10], message[10:-5], message[-5:]):
            sock.sendall(part)
            time.sleep(0.05)
        assert read_response(sock).startswith(b"SIP/2.0 200 OK")


def test_a_10_mb_message_costs_only_its_own_connection(gosipd: Start) -> None:
    daemon: Any = stream_daemon(gosipd)
    with connect(daemon.tcp_port) as sock:
        head = stream_options().replace(b"Content-Length: 0", b"Content-Length: 10000000")
        sock.sendall(head)
        # closed while we are still sending, as it should be
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"x" * 10_000_000)
        closed_within(sock, 5)
    assert counter(daemon, "connections_dropped") == 1
    log = daemon.log.read_text()
    assert "a body of 10000000 octets (limit 65536)" in log
    with connect(daemon.tcp_port) as sock:
        sock.sendall(stream_options())
        assert read_response(sock).startswith(b"SIP/2.0 200 OK")


def test_a_connection_that_stalls_mid_message_or_says_nothing_is_closed_after_16_t1(
    gosipd: Start,
) -> None:
    daemon: Any = stream_daemon(gosipd, extra="t1 = 0.1\n")  # in [sip]: 16·T1 = 1.6 s
    with connect(daemon.tcp_port) as silent, connect(daemon.tcp_port) as stalled:
        stalled.sendall(stream_options()[:40])
        assert 1.0 < closed_within(stalled, 6) < 4
        assert closed_within(silent, 6) < 4
    assert counter(daemon, "connections_dropped") == 2
    log = daemon.log.read_text()
    assert "stalled mid-message for 1.6 s" in log and "no message in 1.6 s" in log
    with connect(daemon.tcp_port) as sock:
        sock.sendall(stream_options())
        assert read_response(sock).startswith(b"SIP/2.0 200 OK")


def test_connections_from_one_address_are_capped(gosipd: Start) -> None:
    daemon: Any = stream_daemon(gosipd, inbound="max_connections_per_source = 3")
    held = [connect(daemon.tcp_port) for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(stream_options())
            assert read_response(sock).startswith(b"SIP/2.0 200 OK")
        with connect(daemon.tcp_port) as fourth:
            assert closed_within(fourth, 3) < 1
        assert counter(daemon, "connections_refused") == 1
        for sock in held:  # the ones it holds still serve
            sock.sendall(stream_options())
            assert read_response(sock).startswith(b"SIP/2.0 200 OK")
    finally:
        for sock in held:
            sock.close()
    # closing one frees its place
    time.sleep(0.2)
    with connect(daemon.tcp_port) as again:
        again.sendall(stream_options())
        assert read_response(again).startswith(b"SIP/2.0 200 OK")


def test_a_stranger_outside_allowed_sources_is_closed_unread(gosipd: Start) -> None:
    daemon: Any = stream_daemon(gosipd, inbound='allowed_sources = ["192.0.2.0/24"]')
    with connect(daemon.tcp_port) as sock:
        sock.sendall(stream_options())
        assert closed_within(sock, 3) < 1
    assert counter(daemon, "connections_refused") == 1
    assert counter(daemon, "inbound_dropped") == 0  # nothing it sent was read


def test_a_peer_that_stops_reading_loses_its_connection_and_delays_no_one(
    gosipd: Start,
) -> None:
    daemon: Any = stream_daemon(gosipd)
    greedy = socket.socket()
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(("127.0.0.1", daemon.tcp_port))
    greedy.settimeout(10)
    burst = stream_options() * 200
    try:
        # requests and never a read: its answers pile up in the supervisor
        for _ in range(60):
            greedy.sendall(burst)
        with connect(daemon.tcp_port) as polite:
            start = time.monotonic()
            polite.sendall(stream_options())
            assert read_response(polite).startswith(b"SIP/2.0 200 OK")
            assert time.monotonic() - start < 2
    except (BrokenPipeError, ConnectionResetError):
        pass  # already closed on it
    finally:
        greedy.close()
    wait_for_counter(daemon, "connections_dropped", 1, timeout=15)
    assert "the peer is not reading" in daemon.log.read_text()


def test_plain_text_on_the_tls_port_is_closed_and_counted(
    gosipd: Start, certificates: dict[str, Path]
) -> None:
    daemon: Any = stream_daemon(gosipd, certificates)
    with connect(daemon.tls_port) as sock:
        sock.sendall(stream_options("TLS"))
        assert closed_within(sock, 5) < 3
    wait_for_counter(daemon, "tls_failures", 1)
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    with (
        connect(daemon.tls_port) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.sendall(stream_options("TLS"))
        assert read_response(tls).startswith(b"SIP/2.0 200 OK")
    assert counter(daemon, "inbound") == 0


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_older_than_1_2_is_refused(gosipd: Start, certificates: dict[str, Path]) -> None:
    daemon: Any = stream_daemon(gosipd, certificates)
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with connect(daemon.tls_port) as raw, pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    wait_for_counter(daemon, "tls_failures", 1)
