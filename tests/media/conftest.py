"""Fixtures for the media tests: loopback sockets, a SIPp RTP echo, our loop in another process."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gosipd.media import MediaSession, bind_rtp_pair
from gosipd.sdes import SrtpKeys
from gosipd.sdp import NegotiatedMedia

ROOT = Path(__file__).resolve().parents[2]


def need_binary(name: str) -> str:
    """The path of a peer binary; skip locally when missing, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_udp_port(count: int = 1, step: int = 1) -> int:
    """A port p with p, p+step, ... p+(count-1)*step all free on 127.0.0.1 (UDP)."""
    for _ in range(200):
        base = random.randrange(40000, 60000, 2)
        held = []
        try:
            for k in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", base + k * step))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free UDP port found")


@pytest.fixture
def udp() -> Iterator[Callable[[], socket.socket]]:
    """Make UDP sockets bound to 127.0.0.1 (closed after the test)."""
    made: list[socket.socket] = []

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def negotiated(
    remote_port: int,
    *,
    remote_address: str = "127.0.0.1",
    codec: str = "PCMU",
    telephone_event_pt: int | None = 101,
    direction: str = "sendrecv",
    ptime: int = 20,
    rtcp_mux: bool = False,
    rtcp_port: int | None = None,
) -> NegotiatedMedia:
    pt = 0 if codec == "PCMU" else 8
    return NegotiatedMedia(
        remote_address=remote_address,
        remote_port=remote_port,
        remote_rtcp_address=remote_address,
        remote_rtcp_port=rtcp_port or (remote_port if rtcp_mux else remote_port + 1),
        rtcp_mux=rtcp_mux,
        codec=codec,  # type: ignore[arg-type]
        payload_type=pt,
        telephone_event_pt=telephone_event_pt,
        receive_telephone_event_pt=telephone_event_pt,
        receive_payload_types=((pt, codec),),  # type: ignore[arg-type]
        ptime=ptime,
        direction=direction,  # type: ignore[arg-type]
    )


@dataclass
class SippEcho:
    media_port: int
    process: subprocess.Popen[bytes]


@pytest.fixture
def sipp_echo(tmp_path: Path) -> Iterator[SippEcho]:
    """SIPp as a UAS with -rtp_echo: every RTP packet sent to media_port comes back."""
    sipp = need_binary("sipp")
    media = free_udp_port(2, step=2)  # SIPp binds media and media + 2
    sip = free_udp_port()
    control = free_udp_port()
    process = subprocess.Popen(
        [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(sip), "-mi", "127.0.0.1",
         "-mp", str(media), "-rtp_echo", "-nostdin", "-bind_local", "-cp", str(control),
         "-trace_err", "-error_file", str(tmp_path / "sipp.errors")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(0.1)
    try:
        for _ in range(50):  # wait until the echo answers
            probe.sendto(b"\x80" + bytes(11), ("127.0.0.1", media))
            try:
                probe.recvfrom(100)
                break
            except TimeoutError:
                if process.poll() is not None:
                    pytest.fail(f"sipp exited with {process.returncode}")
        else:
            pytest.fail("sipp -rtp_echo did not answer within 5 s")
    finally:
        probe.close()
    yield SippEcho(media, process)
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class FarEnd:
    """Our own media loop in another process (tests/media/far_end.py)."""

    process: subprocess.Popen[str]
    port: int

    def lines(self, timeout: float = 10.0) -> list[str]:
        out, _err = self.process.communicate(timeout=timeout)
        return out.splitlines()


@pytest.fixture
def far_end() -> Iterator[Callable[..., FarEnd]]:
    started: list[subprocess.Popen[str]] = []

    def start(mode: str, remote_port: int, *args: str) -> FarEnd:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.media.far_end", mode, str(remote_port), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # "port N" once bound
        if not line.startswith("port "):
            pytest.fail(f"far end did not start: {line!r}")
        return FarEnd(process, int(line.split()[1]))

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_for(condition: Callable[[], object], timeout: float = 3.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


@contextmanager
def rtcp_exchanged(
    srtp: tuple[SrtpKeys, SrtpKeys] | None = None, timeout: float = 6.0
) -> Iterator[tuple[MediaSession, MediaSession]]:
    """Two media sessions sending to each other (RTCP on its own ports, reports every
    0.5 s), run until both measured a round trip or ``timeout``; closed afterwards.
    ``srtp``: each side's keys (a's, b's)."""
    a_rtp, a_rtcp = bind_rtp_pair("127.0.0.1", range(41000, 49000, 2))
    b_rtp, b_rtcp = bind_rtp_pair("127.0.0.1", range(49000, 57000, 2))
    assert a_rtcp is not None and b_rtcp is not None
    keys_a, keys_b = srtp or (None, None)
    a = MediaSession(
        a_rtp,
        replace(negotiated(b_rtp.getsockname()[1]), srtp=keys_a),
        rtcp_sock=a_rtcp,
        media_timeout=0,
    )
    b = MediaSession(
        b_rtp,
        replace(negotiated(a_rtp.getsockname()[1]), srtp=keys_b),
        rtcp_sock=b_rtcp,
        media_timeout=0,
    )
    try:
        for s in (a, b):
            s.rtcp.min_interval = 0.5
            s.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (a.rtcp.rtt is None or b.rtcp.rtt is None):
            a.process()
            b.process()
            time.sleep(0.01)
        yield a, b
    finally:
        a.close()
        b.close()
        for sock in (a_rtp, a_rtcp, b_rtp, b_rtcp):
            sock.close()
