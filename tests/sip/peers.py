"""Helpers for the interop tests: real SIP peers (SIPp, baresip) on loopback, and a
few dozen lines of scripted UAC/UAS built on gosipd.sip to talk to them.

The peers run as child processes that the tests start and stop by PID. Every datagram
they send is parsed and validated, and may be saved as a fixture
(GOSIPD_CAPTURE_DIR=tests/data/sip).
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gosipd import sip
from gosipd.sip import URI, NameAddr, Via

LOOPBACK = "127.0.0.1"
SCENARIOS = Path(__file__).resolve().parent.parent / "data" / "sip" / "sipp"


def require(binary: str) -> str:
    """The path of ``binary``; skip the test without it (fail under CI=true)."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (Debian: .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive ports free for UDP and TCP on loopback.

    Drawn from 10000-19999, below the kernel's ephemeral range, so that the sockets
    this test opens itself never land next to them (baresip binds its SIP port for
    UDP and TCP and an RTP pair; SIPp binds a media port and media+2)."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(10_000, 20_000 - count) & ~1  # even: RTP pairs start even
        if all(_free(port) for port in range(base, base + count)):
            return base
    raise RuntimeError("no free loopback ports")


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


@contextmanager
def child(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a peer; stop exactly that process (and its session) afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@dataclass
class Endpoint:
    """Our side: one UDP socket; every datagram received is parsed and kept."""

    sock: socket.socket
    received: list[bytes] = field(default_factory=list)

    @classmethod
    @contextmanager
    def open(cls) -> Iterator[Endpoint]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        try:
            yield cls(sock)
        finally:
            sock.close()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, message: sip.Message, address: tuple[str, int]) -> None:
        self.sock.sendto(bytes(message), address)

    def receive(self, timeout: float = 5.0) -> tuple[sip.Request | sip.Response, tuple[str, int]]:
        """The next SIP message (keep-alives skipped); parsed and validated."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no SIP message from the peer")
            self.sock.settimeout(remaining)
            data, address = self.sock.recvfrom(65535)
            if not data.strip(b"\r\n"):
                continue
            self.received.append(data)
            message = sip.parse(data)  # a SIPParseError fails the test: that is the point
            rejection = sip.check(message, supported=("100rel", "timer", "replaces"))
            assert rejection is None, f"peer sent a message we reject: {rejection}\n{data!r}"
            assert bytes(sip.parse(bytes(message))) == bytes(message)
            return message, address

    def receive_request(
        self, method: str, timeout: float = 5.0
    ) -> tuple[sip.Request, tuple[str, int]]:
        while True:
            message, address = self.receive(timeout)
            if isinstance(message, sip.Request) and message.method == method:
                return message, address

    def save(self, directory: Path, prefix: str) -> None:
        for number, data in enumerate(self.received, 1):
            message = sip.parse(data)
            what = message.method if isinstance(message, sip.Request) else str(message.status)
            (directory / f"{prefix}_{number}_{what.lower()}.sip").write_bytes(data)


def capture(endpoint: Endpoint, prefix: str) -> None:
    """Save what the peer sent when GOSIPD_CAPTURE_DIR is set (refreshing fixtures)."""
    directory = os.environ.get("GOSIPD_CAPTURE_DIR")
    if directory:
        endpoint.save(Path(directory), prefix)


def sdp(port: int, session: str = "gosipd") -> bytes:
    return (
        f"v=0\r\no={session} 1 1 IN IP4 {LOOPBACK}\r\ns={session}\r\nc=IN IP4 {LOOPBACK}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


def branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class Call:
    """What a dialog needs to send its next request (the engine's job later)."""

    call_id: str
    local: NameAddr
    remote: NameAddr
    target: URI
    route: list[NameAddr]
    cseq: int


def answer(
    endpoint: Endpoint, invite: sip.Request, address: tuple[str, int], media_port: int
) -> str:
    """Answer ``invite`` as a UAS: 100, 180, 200 with SDP, until the ACK arrives."""
    tag = secrets.token_hex(4)
    contact = NameAddr(URI(user="gosipd", host=LOOPBACK, port=endpoint.port))
    endpoint.send(sip.Response.for_request(invite, 100), address)
    ringing = sip.Response.for_request(invite, 180, to_tag=tag)
    ringing.contact = [contact]
    endpoint.send(ringing, address)
    ok = sip.Response.for_request(invite, 200, to_tag=tag)
    ok.contact = [contact]
    ok.set_body(sdp(media_port), "application/sdp")
    for interval in (0.5, 1.0, 2.0, 4.0):
        endpoint.send(ok, address)
        try:
            endpoint.receive_request("ACK", timeout=interval)
            return tag
        except TimeoutError:
            continue
    raise TimeoutError("no ACK for our 200")


def invite(
    endpoint: Endpoint, target: URI, address: tuple[str, int], media_port: int
) -> tuple[Call, list[sip.Response]]:
    """Place a call as a UAC; return the confirmed dialog and every response seen."""
    local = NameAddr(
        URI(user="gosipd", host=LOOPBACK, port=endpoint.port),
        "gosipd interop",
        {"tag": secrets.token_hex(4)},
    )
    request = sip.Request.create(
        "INVITE",
        target,
        from_=local,
        to=NameAddr(target),
        call_id=secrets.token_hex(12) + "@gosipd",
        cseq=1,
        via=Via("UDP", LOOPBACK, endpoint.port, branch=branch(), rport=True),
        contact=NameAddr(URI(user="gosipd", host=LOOPBACK, port=endpoint.port)),
        body=sdp(media_port),
        content_type="application/sdp",
        headers=[
            ("Supported", "replaces"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
            ("User-Agent", "gosipd interop"),
        ],
    )
    responses: list[sip.Response] = []
    endpoint.send(request, address)
    while True:
        message, _ = endpoint.receive(timeout=8)
        assert isinstance(message, sip.Response), message
        assert message.cseq == request.cseq and message.call_id == request.call_id
        assert message.via[0].branch == request.via[0].branch
        responses.append(message)
        if message.status >= 200:
            break
    final = responses[-1]
    assert final.status == 200, final
    call = Call(
        request.call_id,
        local,
        final.to,
        final.contact[0].uri,
        list(reversed(final.record_route)),
        1,
    )
    ack = in_dialog(endpoint, call, "ACK", cseq=1)
    endpoint.send(ack, address)
    return call, responses


def in_dialog(endpoint: Endpoint, call: Call, method: str, *, cseq: int) -> sip.Request:
    """A request inside ``call`` (RFC 3261 §12.2.1.1), sent to its remote target."""
    return sip.Request.create(
        method,
        call.target,
        from_=call.local,
        to=call.remote,
        call_id=call.call_id,
        cseq=cseq,
        via=Via("UDP", LOOPBACK, endpoint.port, branch=branch(), rport=True),
        route=call.route,
        contact=NameAddr(URI(user="gosipd", host=LOOPBACK, port=endpoint.port)),
    )


def hang_up(endpoint: Endpoint, call: Call, address: tuple[str, int]) -> sip.Response:
    bye = in_dialog(endpoint, call, "BYE", cseq=call.cseq + 1)
    endpoint.send(bye, address)
    while True:
        message, _ = endpoint.receive(timeout=5)
        if isinstance(message, sip.Response) and message.cseq == bye.cseq:
            return message


def write_baresip_config(directory: Path, sip_port: int, user: str, *, answer: bool) -> None:
    """A headless baresip: SIP on ``sip_port``, RTP on the next ten ports (free_port(12))."""
    rtp = sip_port + 2
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config").write_text(
        "poll_method\tepoll\n"
        f"sip_listen\t{LOOPBACK}:{sip_port}\n"
        f"net_interface\t{LOOPBACK}\n"
        "call_local_timeout\t30\n"
        "audio_player\taubridge,nil\n"
        "audio_source\tausine,440\n"
        "ausrc_srate\t48000\nausrc_channels\t2\n"
        "audio_alert\taubridge,nil\n"
        f"rtp_ports\t{rtp}-{rtp + 9}\n"
        "rtcp_mux\tno\n"
        "statmode_default\toff\n"
        "ringback_disabled\tyes\n"
        "module_path\t/usr/lib/baresip/modules\n"
        "module\tg711.so\nmodule\taubridge.so\nmodule\tausine.so\n"
        "module_tmp\tuuid.so\nmodule_tmp\taccount.so\nmodule_app\tmenu.so\n"
    )
    mode = ";answermode=auto" if answer else ""
    (directory / "accounts").write_text(
        f"<sip:{user}@{LOOPBACK}:{sip_port}>;regint=0{mode};audio_codecs=pcmu\n"
    )


def wait_for_udp(port: int, timeout: float = 5.0) -> None:
    """Until something listens on loopback UDP ``port`` (/proc/net/udp, no probing)."""
    pattern = re.compile(rf"^\s*\d+: 0100007F:{port:04X} ", re.MULTILINE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern.search(Path("/proc/net/udp").read_text()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port}/udp")
