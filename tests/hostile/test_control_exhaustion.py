"""Control clients that exhaust the supervisor or stall a call (the hardening issue, item 6).

Before the fix ``accept`` failing with EMFILE raised out of the supervisor (every call's
control gone with it), and a subscriber that stopped reading blocked the call's event
publication until the call itself was stuck.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import structlog
import trio
import trio.testing

from gosipd.control import ControlRequest
from gosipd.publication import SEND_TIMEOUT, EventBus, serve_stream
from tests.hostile.attacker import Attacker, options
from tests.supervisor.daemon import Daemon

Start = Callable[..., Daemon]
NOFILE = 96  # the supervisor's RLIMIT_NOFILE: a few dozen clients use it up


def test_out_of_file_descriptors_the_supervisor_backs_off_and_keeps_serving(
    gosipd: Start, attacker: Callable[[int], Attacker]
) -> None:
    daemon = gosipd(nofile=NOFILE)
    held: list[socket.socket] = []
    try:
        for _ in range(NOFILE * 2):  # each accepted one takes an fd; the rest wait queued
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(5)
            try:
                client.connect(str(daemon.socket))
            except OSError:
                client.close()  # the listen backlog is full: exhausted either way
                break
            held.append(client)
        deadline = time.monotonic() + 10
        while "control.accept_failed" not in daemon.log.read_text():
            assert time.monotonic() < deadline, daemon.log.read_text()[-2000:]
            time.sleep(0.05)
        # out of descriptors, the public SIP port still answers
        probe = attacker(daemon.sip_port)
        assert [r.status for r in probe.ask(options(probe.port))] == [200]
        assert daemon.process is not None and daemon.process.poll() is None
    finally:
        for client in held:
            client.close()
    # descriptors back: the control socket serves again, within the backoff's cap
    deadline = time.monotonic() + 10
    while True:
        try:
            status = daemon.request({"op": "status"}, timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert status["ok"] and status["counters"]["accept_backoff"] >= 1
    assert daemon.process.poll() is None


async def _no_requests(request: ControlRequest) -> dict[str, Any]:
    raise AssertionError(f"a subscriber sent {request.op}")


def test_a_subscriber_that_never_reads_is_dropped_and_the_call_goes_on() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    events = EventBus()
    ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    published = 0
    padding = "x" * 400
    with structlog.testing.capture_logs() as logs:

        async def main() -> None:
            nonlocal published
            async with trio.open_nursery() as nursery:
                served = trio.Event()

                async def subscriber() -> None:
                    await serve_stream(
                        trio.SocketStream(ours), _no_requests, events, subscribed=True
                    )
                    served.set()

                nursery.start_soon(subscriber)
                # the call: an event every 20 ms for a minute, as a busy media loop might
                for n in range(3000):
                    events.publish({"event": "call.dtmf", "call": "c1", "n": n, "pad": padding})
                    published += 1
                    await trio.sleep(0.02)
                with trio.fail_after(1):
                    await served.wait()  # long gone
            theirs.close()

        trio.run(main, clock=clock)
    assert published == 3000  # the call never waited for its subscriber
    dropped = [entry for entry in logs if entry["event"] == "subscriber.dropped"]
    assert len(dropped) == 1
    assert dropped[0]["reason"] in (
        f"did not read an event within {SEND_TIMEOUT:g} s",
        "fell more than 256 events behind",
    )
    assert clock.current_time() >= 3000 * 0.02
