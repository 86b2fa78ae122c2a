"""Real SIP peers for the tests: SIPp, baresip, Kamailio, dnsmasq and a black-hole netns.

Everything here starts a real third-party program (never a stand-in), on loopback or in a
network namespace it creates, with ports picked at run time so that several test runs and
other jobs can share the machine. Every process is one we started with ``subprocess.Popen``
and is stopped through that handle (signal to its own PID / process group, never a name).
Logs, traces and recordings go to a directory the caller gives (pytest's ``tmp_path``).

The pytest fixtures in ``tests/conftest.py`` wrap a :class:`PeerLab` per test; use them
rather than this module directly. The files the peers read (SIPp scenarios and pcaps,
Kamailio configs, the dnsmasq template) live in ``tests/lab/``; they were ported from the
team's manual lab and keep its comments.

A missing binary skips the test locally and fails it when ``CI=true`` (see :func:`missing`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import trio

LAB_DIR = Path(__file__).resolve().parent / "lab"
SCENARIO_DIR = LAB_DIR / "sipp" / "scenarios"
MEDIA_DIR = LAB_DIR / "sipp" / "media"
KAMAILIO_DIR = LAB_DIR / "kamailio"

#: Default digest credentials the SIPp auth UASes and the Kamailio registrar accept.
AUTH_USER, AUTH_PASS = "labuser", "labpass"
#: Extra accounts the Kamailio registrar knows (user -> password).
KAMAILIO_USERS = {AUTH_USER: AUTH_PASS, "alice": "alicepass", "bob": "bobpass"}

#: Contiguous port ranges (RTP) are picked here: above the kernel's ephemeral range
#: (32768-60999, where single ports come from bind(0)), so the two never meet.
RANGE_PORTS = range(61000, 65500)
STARTUP_TIMEOUT = 10.0  # seconds a peer may take to bind its socket
STOP_GRACE = 5.0  # seconds between a polite signal and SIGKILL
LOG_TAIL_LINES = 60  # lines of each log printed when a test fails


# --------------------------------------------------------------------------- binaries, CI


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """A peer cannot run here: skip locally, fail under CI=true (the CI installs them all)."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: .ci/run installs every peer, so this is a failure)")
    pytest.skip(what)


def require_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        missing(f"{name} is not installed (Debian: see .ci/run)")
        raise AssertionError("unreachable")  # pragma: no cover - skip/fail raised
    return path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        missing(f"{what} needs root (network namespaces)")


class PeerError(RuntimeError):
    """A peer did not start or misbehaved; the message carries the tail of its log."""


# --------------------------------------------------------------------------- ports


def _port_free(host: str, port: int, kinds: Iterable[int]) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in kinds:
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1", *, tcp: bool = False) -> int:
    """A port the kernel says is free right now on ``host`` (UDP, and TCP when asked)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if not tcp or _port_free(host, port, (socket.SOCK_STREAM,)):
            return port
    raise PeerError(f"no free port on {host}")


def free_port_range(host: str = "127.0.0.1", count: int = 4, *, tcp: bool = False) -> int:
    """The first of ``count`` consecutive free UDP ports (an even one, as RTP likes)."""
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp else (socket.SOCK_DGRAM,)
    for _ in range(200):
        base = random.randrange(RANGE_PORTS.start, RANGE_PORTS.stop - count) & ~1
        if all(_port_free(host, base + i, kinds) for i in range(count)):
            return base
    raise PeerError(f"no {count} consecutive free ports on {host}")


def _hex_endpoint(host: str, port: int) -> tuple[str, str]:
    """How /proc/net/{udp,tcp}[6] spells host:port (and the wildcard address)."""
    addr = ip_address(host)
    if addr.version == 4:
        packed = addr.packed[::-1].hex().upper()
        return f"{packed}:{port:04X}", f"{'0' * 8}:{port:04X}"
    words = [addr.packed[i : i + 4][::-1].hex().upper() for i in range(0, 16, 4)]
    return f"{''.join(words)}:{port:04X}", f"{'0' * 32}:{port:04X}"


def port_bound(host: str, port: int, *, proto: str = "udp") -> bool:
    """Whether some socket is bound (UDP) or listening (TCP) on host:port or the wildcard."""
    exact, wildcard = _hex_endpoint(host, port)
    table = f"/proc/net/{proto}{'6' if ':' in host else ''}"
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if fields[1] in (exact, wildcard) and (proto == "udp" or fields[3] == "0A"):
            return True
    return False


def uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def sip_options(host: str, port: int, *, user: str = "probe", timeout: float = 2.0) -> str:
    """Send one OPTIONS over UDP (a connected socket) and return the final response's
    status line and headers as text ("" on timeout). ICMP port unreachable raises
    ConnectionRefusedError. An empty ``user`` asks the server itself (keepalive)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        s.connect((host, port))
        local = uri_host(s.getsockname()[0]) + f":{s.getsockname()[1]}"
        ruri = f"sip:{user + '@' if user else ''}{uri_host(host)}:{port}"
        request = (
            f"OPTIONS {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{local}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{ruri}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@probe\r\n"
            "CSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:probe@{local}>\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.send(request.encode())
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                text = s.recv(65535).decode(errors="replace")
            except TimeoutError:
                break
            if not text.startswith("SIP/2.0 1"):
                return text
    return ""


# --------------------------------------------------------------------------- processes


class Process:
    """One program we started: its argv, its log file, and the Popen handle we stop it by."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we can signal its children
        )
        self.pid = self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def send_signal(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, grace: float = STOP_GRACE) -> int:
        """Signal our process (and the group it leads), wait, then SIGKILL; the exit status."""
        if self.alive:
            self._signal_group(sig)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(5)
        # children that outlived the leader (Kamailio workers) are still in our group
        self._signal_group(signal.SIGKILL, leader_gone_ok=True)
        self._log.close()
        return self.popen.returncode

    def _signal_group(self, sig: int, *, leader_gone_ok: bool = False) -> None:
        # The group id is our child's PID; it cannot be reused while the group has members.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leader_gone_ok or self.alive:
                os.killpg(self.pid, sig)

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_bound(self, host: str, port: int, *, proto: str = "udp") -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not port_bound(host, port, proto=proto):
            if not self.alive:
                raise PeerError(
                    f"{self.name} exited with status {self.returncode} before binding "
                    f"{proto} {host}:{port}; log {self.log_path}:\n{self.log_tail(20)}"
                )
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{self.name} did not bind {proto} {host}:{port} within "
                    f"{STARTUP_TIMEOUT} s; log {self.log_path}:\n{self.log_tail(20)}"
                )
            time.sleep(0.02)


def _address_in_use(text: str) -> bool:
    return "in use" in text.lower() or "errno = 98" in text or "EADDRINUSE" in text


# --------------------------------------------------------------------------- SIPp


@dataclass(frozen=True)
class SipTraceEntry:
    """One datagram in SIPp's ``-trace_msg`` log."""

    sent: bool  # True: SIPp sent it; False: SIPp received it
    start_line: str  # "INVITE sip:echo@127.0.0.1:5060 SIP/2.0", "SIP/2.0 200 OK"
    text: str

    @property
    def name(self) -> str:
        """The method of a request or the status code of a response ("INVITE", "200")."""
        first, _, rest = self.start_line.partition(" ")
        return rest.split(" ", 1)[0] if first == "SIP/2.0" else first


def parse_sip_trace(text: str) -> list[SipTraceEntry]:
    """SIPp's ``-trace_msg`` file as a list of datagrams, oldest first."""
    entries = []
    for block in re.split(r"^-{20,} \S+ \S+\n", text, flags=re.M):
        header, _, message = block.partition("\n")
        if not header.startswith(("UDP message", "TCP message")):
            continue
        message = message.lstrip("\r\n")
        entries.append(
            SipTraceEntry(
                sent="sent" in header,
                start_line=message.split("\r\n", 1)[0].split("\n", 1)[0],
                text=message,
            )
        )
    return entries


class _SipTrace:
    """Counting what a SIPp instance sent and received (retransmissions included)."""

    messages_path: Path

    def trace(self) -> list[SipTraceEntry]:
        if not self.messages_path.exists():
            return []
        return parse_sip_trace(self.messages_path.read_text(errors="replace"))

    def message_log(self) -> str:
        """Every SIP datagram SIPp sent and received, as text (``-trace_msg``)."""
        return self.messages_path.read_text(errors="replace") if self.messages_path.exists() else ""

    def received(self, name: str) -> int:
        """How many ``name`` datagrams (a method or a status code) SIPp received so far."""
        return sum(1 for e in self.trace() if not e.sent and e.name == name)

    def sent(self, name: str) -> int:
        return sum(1 for e in self.trace() if e.sent and e.name == name)


@dataclass(frozen=True)
class SippMessage:
    """One row of SIPp's scenario screen: a scenario step and its counters."""

    name: str  # "INVITE", "200", "Pause" ...
    sent: bool  # True if SIPp sends it in this step, False if it receives it
    count: int
    retrans: int


@dataclass(frozen=True)
class SippStats:
    """SIPp's own counters (a UAS counts every OPTIONS probe as a call, too)."""

    created: int
    successful: int
    failed: int
    current: int
    messages: tuple[SippMessage, ...]
    echoed_rtp_packets: int | None = None  # only in the final screen
    screen: str = ""

    @classmethod
    def from_screen(cls, screen: str) -> SippStats:
        """Parse the last screens SIPp printed (at exit, or with ``-trace_screen``)."""

        def last_int(label: str) -> int:
            found = re.findall(rf"^\s*{label}\s*\|.*?(\d+)\s*$", screen, re.M)
            return int(found[-1]) if found else 0

        current = re.findall(r"^\s*Current Calls\s*\|\s*(\d+)", screen, re.M)
        echo = re.findall(r"^\s*(\d+) Total echo RTP pckts 1st stream", screen, re.M)
        tables = re.findall(r"Messages\s+Retrans.*?\n(.*?)(?:\n-{5,}|\Z)", screen, re.S)
        messages: list[SippMessage] = []
        for line in tables[-1].splitlines() if tables else []:
            row = re.match(r"^\s*(\S+)?\s*(-{10}>|<-{10})\s*(\S+)?\s*(?:E-RTD\d\s+)?(.*)$", line)
            if row:
                before, arrow, after, counters = row.groups()
                numbers = [int(n) for n in counters.split() if n.isdigit()] + [0, 0]
                client_style = before is not None  # "INVITE ---------->" (SIPp as UAC)
                outgoing = arrow.startswith("-")
                messages.append(
                    SippMessage(
                        name=str(before if client_style else after),
                        sent=outgoing if client_style else not outgoing,
                        count=numbers[0],
                        retrans=numbers[1],
                    )
                )
                continue
            pause = re.match(r"^\s*\[\s*\S+\]\s*Pause\s+(\d+)", line)
            if pause:
                messages.append(SippMessage("Pause", False, int(pause.group(1)), 0))
        return cls(
            created=last_int("Total Calls created"),
            successful=last_int("Successful call"),
            failed=last_int("Failed call"),
            current=int(current[-1]) if current else 0,
            messages=tuple(messages),
            echoed_rtp_packets=int(echo[-1]) if echo else None,
            screen=screen,
        )

    @classmethod
    def from_csv(cls, stat_csv: str, counts_csv: str) -> SippStats:
        """Parse the newest rows of ``-trace_stat`` and ``-trace_counts`` (every second)."""

        def last_row(text: str) -> dict[str, str]:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if len(lines) < 2:
                return {}
            return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))

        stat, counts = last_row(stat_csv), last_row(counts_csv)
        messages = []
        for column, value in counts.items():
            step = re.fullmatch(r"\d+_(\S+)_(Recv|Sent|Sessions)", column)
            if step:
                name, kind = step.groups()
                retrans = counts.get(column.rsplit("_", 1)[0] + "_Retrans", "0")
                messages.append(SippMessage(name, kind == "Sent", int(value), int(retrans or 0)))
        return cls(
            created=int(stat.get("TotalCallCreated", 0)),
            successful=int(stat.get("SuccessfulCall(C)", 0)),
            failed=int(stat.get("FailedCall(C)", 0)),
            current=int(stat.get("CurrentCall", 0)),
            messages=tuple(messages),
        )


@dataclass(frozen=True)
class SippVariant:
    scenario: str
    rtp_echo: bool
    #: More SIPp options (``-aa``: a 200 for an unexpected NOTIFY, a retransmission of
    #: one already answered, rather than aborting the call).
    options: tuple[str, ...] = ()


SIPP_UAS_VARIANTS: dict[str, SippVariant] = {
    "echo": SippVariant("uas_echo.xml", rtp_echo=True),
    "silent": SippVariant("uas_echo.xml", rtp_echo=False),
    "100rel": SippVariant("uas_100rel.xml", rtp_echo=True),
    "302": SippVariant("uas_302.xml", rtp_echo=False),
    "503": SippVariant("uas_503.xml", rtp_echo=False),
    "auth401": SippVariant("uas_auth401.xml", rtp_echo=True),
    "auth407": SippVariant("uas_auth407.xml", rtp_echo=True),
    "reinvite": SippVariant("uas_reinvite.xml", rtp_echo=True),
    "info": SippVariant("uas_info.xml", rtp_echo=True),
    "codec": SippVariant("uas_codec.xml", rtp_echo=True),
    "timer": SippVariant("uas_timer.xml", rtp_echo=True),
    "refer": SippVariant("uas_refer.xml", rtp_echo=True),
    "transferor": SippVariant("uas_transferor.xml", rtp_echo=True, options=("-aa",)),
}
SIPP_UAC_SCENARIOS = (
    "uac_pcmu",
    "uac_100rel",
    "uac_302",
    "uac_503",
    "uac_auth",
    "uac_register",
    "uac_cancel",
    "uac_identity",
)
SIPP_STATS_PERIOD = 1  # seconds between SIPp's statistics rows (-fd)


class SippUAS(_SipTrace):
    """A SIPp UAS variant in the background (see tests/lab/sipp/scenarios/uas_*.xml).

    ``echo``: 100/180/200 with a PCMU SDP answer, RTP echoed (``-rtp_echo``), BYE -> 200.
    ``silent``: the same, sending no RTP at all (a far end on mute, or that suppresses silence).
    ``100rel``: reliable 180 with SDP (RSeq 1) until PRACK; 421 without ``100rel``.
    ``302``: redirects to ``redirect_to``.  ``503``: 503 + Retry-After (INVITE and OPTIONS).
    ``auth401``: digest challenge verified by SIPp (``user``/``password``), then a call.
    ``auth407``: proxy challenge (structure-checked only), then a call.
    ``reinvite``: answers, moves the media with a re-INVITE, moves it back, sends BYE.
    ``info``: answers, sends DTMF as SIP INFO, sends BYE.
    ``codec``: answers with ``keys["answer_pt"]``/``keys["answer_rtpmap"]`` as its codec.
    ``timer``: RFC 4028, ``keys["session_expires"]`` and ``keys["refresher"]`` in its 200;
    answers UPDATE refreshes until the BYE.
    ``refer``: a transferee: 202 to our REFER, NOTIFYs 100 then ``keys["transfer_status"]``.
    ``transferor``: answers, then REFERs us to ``keys["refer_to"]``; BYEs us once a NOTIFY
    reports a 2xx, else waits for our BYE.
    ``keys``: extra ``-key NAME VALUE`` pairs for the scenario (see each XML file).
    Every variant answers OPTIONS (200, or 503 for ``503``) and copies Record-Route.
    """

    def __init__(
        self,
        variant: str,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        redirect_to: str | None = None,
        retry_after: int = 30,
        user: str = AUTH_USER,
        password: str = AUTH_PASS,
        keys: dict[str, str] | None = None,
        transport: str = "udp",
        rtp_buffer: int | None = None,
        answer_port: int | None = None,
    ) -> None:
        """``transport``: "udp" or "tcp" (one connection, ``-t t1``). ``rtp_buffer``: the
        echo socket's buffer in bytes (``-rtp_buffsize``), for hundreds of calls at once.
        ``answer_port`` (``echo``, ``silent``): the media port its SDP answer names, when a
        reflector of the caller's own echoes the media rather than SIPp."""
        if variant not in SIPP_UAS_VARIANTS:
            raise ValueError(f"unknown SIPp UAS variant {variant!r}: {sorted(SIPP_UAS_VARIANTS)}")
        binary = require_binary("sipp")
        self.variant = variant
        self.host = host
        self.final_stats: SippStats | None = None
        spec = SIPP_UAS_VARIANTS[variant]
        for attempt in range(3):
            self.transport = transport
            tcp = transport == "tcp"
            self.port = port if port is not None else free_port(host, tcp=tcp)
            self.media_port = free_port_range(host, 4)  # SIPp binds media and media+2
            name = f"sipp-{variant}-{self.port}"
            self.dir = workdir / name
            self.dir.mkdir(parents=True, exist_ok=True)
            self.errors_path = self.dir / "errors.log"
            self.messages_path = self.dir / "messages.log"
            self.stat_path = self.dir / "stat.csv"
            argv = [
                binary,
                "-sf", str(SCENARIO_DIR / spec.scenario),
                "-i", host, "-p", str(self.port), "-bind_local", "-t", "t1" if tcp else "u1",
                "-mi", host, "-mp", str(self.media_port),
                "-cp", str(free_port("0.0.0.0")),  # SIPp's remote control binds the wildcard
                "-nostdin",
                "-trace_err", "-error_file", str(self.errors_path),
                "-trace_msg", "-message_file", str(self.messages_path),
                "-trace_stat", "-stf", str(self.stat_path), "-trace_counts",
                "-fd", str(SIPP_STATS_PERIOD),
            ]  # fmt: skip
            if spec.rtp_echo:
                argv.append("-rtp_echo")
                if rtp_buffer is not None:
                    argv += ["-rtp_buffsize", str(rtp_buffer)]
            argv += spec.options
            if variant == "302":
                target = redirect_to or f"sip:echo@{uri_host(host)}:5060"
                argv += ["-key", "redirect_to", target]
            if variant == "503":
                argv += ["-key", "retry_after", str(retry_after)]
            if variant.startswith("auth"):
                argv += ["-key", "auth_user", user, "-key", "auth_pass", password]
            if spec.scenario == "uas_echo.xml":  # echo and silent
                argv += ["-key", "answer_port", str(answer_port or self.media_port)]
            for key, value in (keys or {}).items():
                argv += ["-key", key, value]
            self.process = Process(name, argv, self.dir / "sipp.log", self.dir)
            try:
                self.process.wait_bound(host, self.port, proto="tcp" if tcp else "udp")
                return
            except PeerError as exc:
                text = str(exc) + self._errors()
                self.process.stop(signal.SIGKILL)
                if attempt == 2 or port is not None or not _address_in_use(text):
                    raise PeerError(text) from None

    def _errors(self) -> str:
        return self.errors_path.read_text(errors="replace") if self.errors_path.exists() else ""

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def uri(self, user: str = "echo") -> str:
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}@{uri_host(self.host)}:{self.port}{suffix}"

    def stats(self) -> SippStats:
        """SIPp's counters: live ones are up to a second old, and a call counts as
        successful only after the scenario's 4 s timewait; after :meth:`stop`, the final
        screen (with ``echoed_rtp_packets``)."""
        if self.final_stats is not None:
            return self.final_stats
        counts = sorted(self.dir.glob("*_counts.csv"))
        return SippStats.from_csv(
            self.stat_path.read_text() if self.stat_path.exists() else "",
            counts[-1].read_text() if counts else "",
        )

    def stop(self) -> SippStats:
        """Stop SIPp (SIGTERM: it prints its final screen) and return its final counters."""
        if self.final_stats is None:
            self.process.stop(signal.SIGTERM)
            self.final_stats = SippStats.from_screen(self.process.log_text())
        return self.final_stats

    def logs(self) -> dict[str, str]:
        return {
            f"{self.process.name} output": self.process.log_tail(),
            f"{self.process.name} errors": _tail(self._errors()),
            f"{self.process.name} messages": _tail(self.message_log(), 150),
        }


@dataclass(frozen=True)
class SippResult:
    """How a SIPp UAC run ended: SIPp's exit status (0 all calls OK, 1 some failed,
    97/99/255 aborted/no calls/fatal or timeout), its final counters, its error log and
    the SIP datagrams it sent and received."""

    exit_status: int
    stats: SippStats
    errors: str
    messages: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def successful(self) -> int:
        return self.stats.successful

    @property
    def failed(self) -> int:
        return self.stats.failed

    def received(self, name: str) -> int:
        return sum(1 for e in parse_sip_trace(self.messages) if not e.sent and e.name == name)

    def sent(self, name: str) -> int:
        return sum(1 for e in parse_sip_trace(self.messages) if e.sent and e.name == name)


class SippUAC(_SipTrace):
    """A SIPp UAC run (tests/lab/sipp/scenarios/uac_*.xml) against ``target`` (host:port).

    Started at construction; ``await run.wait()`` returns a :class:`SippResult`. The
    scenarios: ``uac_pcmu`` (a call sending PCMU from a pcap), ``uac_100rel`` (PRACK),
    ``uac_302`` (follows the redirect), ``uac_503`` (expects 503 + Retry-After),
    ``uac_auth`` (answers 401/407 with -au/-ap), ``uac_register`` (REGISTER + digest),
    ``uac_cancel`` (INVITE, 180, CANCEL after ``call_ms``, expects 487), ``uac_identity``
    (identity, Diversion and X- headers on the INVITE, no media).
    """

    def __init__(
        self,
        scenario: str,
        target: str,
        workdir: Path,
        *,
        calls: int = 1,
        rate: float = 10.0,
        call_ms: int = 1000,
        service: str = "echo",
        user: str = AUTH_USER,
        password: str = AUTH_PASS,
        contact: str | None = None,
        expires: int = 300,
        pcap: Path | None = None,
        timeout: float | None = None,
        host: str = "127.0.0.1",
        extra: Sequence[str] = (),
        transport: str = "udp",
    ) -> None:
        """``transport``: "udp", or "tcp" (one connection to ``target``, ``-t t1``)."""
        scenario = scenario.removesuffix(".xml")
        if scenario not in SIPP_UAC_SCENARIOS:
            raise ValueError(f"unknown SIPp UAC scenario {scenario!r}: {SIPP_UAC_SCENARIOS}")
        binary = require_binary("sipp")
        self.scenario = scenario
        self.target = target
        self.host = host
        self.timeout = timeout if timeout is not None else calls / rate + call_ms / 1000 + 20
        # The ports are free when chosen, but another process may take one before SIPp
        # binds it (its remote-control port, say): then SIPp exits at once, having sent
        # nothing, and is started again on other ports.
        for attempt in range(3):
            self.port = free_port(host)
            self.media_port = free_port_range(host, 4 * max(1, calls))
            name = f"sipp-{scenario}-{self.port}"
            self.dir = workdir / name
            self.dir.mkdir(parents=True, exist_ok=True)
            self.screen_path = self.dir / "screen.log"
            self.errors_path = self.dir / "errors.log"
            self.messages_path = self.dir / "messages.log"
            scenario_file = SCENARIO_DIR / f"{scenario}.xml"
            if pcap is not None:
                # play_pcap_audio takes a literal path: a copy of the scenario that names it
                text = scenario_file.read_text()
                scenario_file = self.dir / f"{scenario}.xml"
                scenario_file.write_text(
                    re.sub(r'play_pcap_audio="[^"]*"', f'play_pcap_audio="{pcap.resolve()}"', text)
                )
            argv = [
                binary,
                "-sf", str(scenario_file),
                "-i", host, "-p", str(self.port), "-bind_local",
                "-t", "t1" if transport == "tcp" else "u1",
                "-mi", host, "-mp", str(self.media_port),
                "-cp", str(free_port("0.0.0.0")),
                "-m", str(calls), "-r", str(rate), "-rp", "1000", "-d", str(call_ms),
                "-s", service, "-au", user, "-ap", password,
                "-key", "auth_from", user,
                "-key", "contact_hostport", contact or f"{uri_host(host)}:{self.port}",
                "-key", "expires", str(expires),
                "-nostdin", "-timeout", f"{self.timeout:.0f}s", "-timeout_error",
                "-trace_err", "-error_file", str(self.errors_path),
                "-trace_screen", "-screen_file", str(self.screen_path),
                "-trace_msg", "-message_file", str(self.messages_path),
                *extra,
                target,
            ]  # fmt: skip
            self.process = Process(name, argv, self.dir / "sipp.log", self.dir)
            if not self._lost_a_port_race() or attempt == 2:
                break

    def _lost_a_port_race(self) -> bool:
        """Whether SIPp exited at start because a port it was given is in use now."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while self.process.alive and time.monotonic() < deadline:
            if port_bound(self.host, self.port):
                return False
            time.sleep(0.02)
        if self.process.alive:
            return False
        errors = self.errors_path.read_text(errors="replace") if self.errors_path.exists() else ""
        if not _address_in_use(errors + self.process.log_text()):
            return False
        self.process.stop()
        return True

    async def wait(self) -> SippResult:
        """Wait (trio) until SIPp exits; cancelling kills it."""
        try:
            while self.process.alive:
                await trio.sleep(0.05)
        finally:
            if self.process.alive:
                self.process.stop(signal.SIGKILL)
        return self.result()

    def result(self) -> SippResult:
        status = self.process.stop()
        screen = self.screen_path.read_text(errors="replace") if self.screen_path.exists() else ""
        errors = self.errors_path.read_text(errors="replace") if self.errors_path.exists() else ""
        return SippResult(status, SippStats.from_screen(screen), errors, self.message_log())

    def stop(self) -> None:
        self.process.stop(signal.SIGKILL)

    def logs(self) -> dict[str, str]:
        errors = self.errors_path.read_text(errors="replace") if self.errors_path.exists() else ""
        return {
            f"{self.process.name} output": self.process.log_tail(),
            f"{self.process.name} errors": _tail(errors),
            f"{self.process.name} messages": _tail(self.message_log(), 150),
        }


# --------------------------------------------------------------------------- baresip

BARESIP_MODULES = Path("/usr/lib/baresip/modules")
BARESIP_MODES = ("uas", "echo", "ring", "uac")
RTP_PORTS_PER_BARESIP = 40


def _baresip_config(
    directory: Path,
    *,
    host: str,
    sip_port: int,
    ctrl_port: int,
    rtp_base: int,
    mode: str,
    users: Sequence[str],
    tone_hz: int,
    wav: Path | None,
    record: bool,
    dns: tuple[str, int] | None,
    registrar: str | None,
    password: str,
    mediaenc: str | None = None,
    certificate: Path | None = None,
    cafile: Path | None = None,
) -> None:
    """Write baresip 1.0.0's ``config`` and ``accounts`` (headless, loopback only).

    ``certificate``: a PEM with the certificate and its key: baresip then listens
    for TLS too. ``cafile``: the CAs it trusts as a TLS client.

    ``mediaenc``: the srtp module's mode, ``srtp`` (best effort: RTP/AVP with
    a=crypto), ``srtp-mand`` (RTP/SAVP) or ``srtp-mandf`` (RTP/SAVPF)."""
    directory.mkdir(parents=True, exist_ok=True)
    source_lines = ""
    if mode == "echo":
        source = "aubridge,nil"  # echo.so renames the devices per call
    elif wav is not None:
        source = f"aufile,{wav.resolve()}"
    else:
        source = f"ausine,{tone_hz}"
        # ausine produces 48 kHz stereo only; baresip resamples to 8 kHz mono
        source_lines = "ausrc_srate\t\t48000\nausrc_channels\t\t2\n"
    recordings = directory / "recordings"
    recordings.mkdir(exist_ok=True)
    lines = [
        "poll_method\t\tepoll",
        f"sip_listen\t\t{uri_host(host)}:{sip_port}",
        f"net_interface\t\t{host}",  # an IP works; "lo" does not
        f"dns_server\t\t{uri_host(dns[0])}:{dns[1]}" if dns else "",
        "call_local_timeout\t120",
        "call_max_calls\t\t16",
        "audio_player\t\taubridge,nil",  # aubridge with no peer = a null player
        f"audio_source\t\t{source}",
        "audio_alert\t\taubridge,nil",
        source_lines.rstrip("\n"),
        "audio_level\t\tno",
        f"rtp_ports\t\t{rtp_base}-{rtp_base + RTP_PORTS_PER_BARESIP - 1}",
        "rtcp_mux\t\tno",
        "jitter_buffer_delay\t5-10",
        "rtp_stats\t\tyes",
        "statmode_default\toff",
        "ringback_disabled\tyes",
        f"snd_path\t\t{recordings}",
        f"ctrl_tcp_listen\t\t{uri_host(host)}:{ctrl_port}",
        f"module_path\t\t{BARESIP_MODULES}",
        "module\t\t\tg711.so",
        "module\t\t\taubridge.so",
        "module\t\t\tausine.so",
        "module\t\t\taufile.so",
        "module\t\t\tsndfile.so" if record else "",
        "module_tmp\t\tuuid.so",
        "module_tmp\t\taccount.so",
        "module_app\t\tmenu.so",
        "module_app\t\tctrl_tcp.so",
        "module_app\t\techo.so" if mode == "echo" else "",
        "module\t\t\tsrtp.so" if mediaenc else "",
        f"sip_certificate\t\t{certificate}" if certificate else "",
        f"sip_cafile\t\t{cafile}" if cafile else "",
    ]
    (directory / "config").write_text("\n".join(line for line in lines if line) + "\n")
    answer = {"uas": ";answermode=auto", "echo": ";answermode=manual", "ring": ";answermode=manual"}
    accounts = []
    for user in users:
        if registrar:
            aor = (
                f"<sip:{user}@{registrar};transport=udp>;auth_user={user};auth_pass={password}"
                f';regint=300;outbound="sip:{registrar};lr"'
            )
        else:
            aor = f"<sip:{user}@{uri_host(host)}:{sip_port}>;regint=0"
        encryption = f";mediaenc={mediaenc}" if mediaenc else ""
        accounts.append(f"{aor}{answer.get(mode, '')};audio_codecs=pcmu{encryption}")
    (directory / "accounts").write_text("\n".join(accounts) + "\n")


class _CtrlConnection:
    """baresip's ctrl_tcp (JSON in netstrings): a reader thread keeps every event."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.settimeout(None)
        self.events: list[dict[str, Any]] = []
        self.responses: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self.changed:
                    self.closed = True
                    self.changed.notify_all()
                return
            buffer += chunk
            while True:
                length, colon, rest = buffer.partition(b":")
                if not colon or not length.isdigit() or len(rest) < int(length) + 1:
                    break
                body, buffer = rest[: int(length)], rest[int(length) + 1 :]
                message = json.loads(body)
                with self.changed:
                    if message.get("response"):
                        self.responses[str(message.get("token"))] = message
                    else:
                        self.events.append(message)
                    self.changed.notify_all()

    def command(self, command: str, params: str, timeout: float) -> dict[str, Any]:
        token = secrets.token_hex(4)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")
        with self.changed:
            if not self.changed.wait_for(lambda: token in self.responses or self.closed, timeout):
                raise PeerError(f"baresip ctrl_tcp: no response to {command!r} in {timeout} s")
            if token not in self.responses:
                raise PeerError(f"baresip ctrl_tcp closed before answering {command!r}")
            return self.responses.pop(token)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(2)


class BaresipUA:
    """A running baresip 1.0.0 (headless, PCMU only, loopback).

    ``uas``: auto-answers and sends a ``tone_hz`` sine (or ``wav``).  ``echo``: echo.so
    answers and loops the caller's audio back.  ``ring``: rings (180) and never answers;
    ``await ua.ctrl("accept")`` answers later, CANCEL gets 487.  Only Request-URI users
    in ``users`` are answered (baresip 1.0.0 sends 404 to others).  With ``record=True``
    the sndfile module writes what it sent and received to WAVs (:attr:`recording_path`).
    ``ctrl`` talks to its ctrl_tcp (menu commands: ``dial URI``, ``accept``, ``hangup``,
    ``listcalls`` ...); every ctrl_tcp event is kept in :attr:`events`.
    """

    def __init__(
        self,
        mode: str,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        users: Sequence[str] | None = None,
        tone_hz: int = 440,
        wav: Path | None = None,
        record: bool = False,
        dns: tuple[str, int] | None = None,
        registrar: str | None = None,
        password: str = AUTH_PASS,
        mediaenc: str | None = None,
        certificate: Path | None = None,
    ) -> None:
        """``certificate`` (a PEM with the key): TLS too, on ``tls_port`` (port + 1)."""
        if mode not in ("uas", "echo", "ring"):
            raise ValueError(f"unknown baresip mode {mode!r}: uas, echo or ring")
        binary = require_binary("baresip")
        self.mode = mode
        self.host = host
        self.users = tuple(users or ({"uas": "bob", "echo": "echo", "ring": "ring"}[mode],))
        for attempt in range(3):
            self.port = free_port(host, tcp=True)
            self.ctrl_port = free_port(host, tcp=True)
            rtp_base = free_port_range(host, RTP_PORTS_PER_BARESIP)
            name = f"baresip-{mode}-{self.port}"
            self.dir = workdir / name
            _baresip_config(
                self.dir,
                host=host,
                sip_port=self.port,
                ctrl_port=self.ctrl_port,
                rtp_base=rtp_base,
                mode=mode,
                users=self.users,
                tone_hz=tone_hz,
                wav=wav,
                record=record,
                dns=dns,
                registrar=registrar,
                password=password,
                mediaenc=mediaenc,
                certificate=certificate,
            )
            self.recording_dir = self.dir / "recordings"
            self.process = Process(
                name, [binary, "-f", str(self.dir)], self.dir / "baresip.log", self.dir
            )
            try:
                self.process.wait_bound(host, self.port)
                self.process.wait_bound(host, self.ctrl_port, proto="tcp")
                if certificate is not None:
                    self.process.wait_bound(host, self.port + 1, proto="tcp")
                break
            except PeerError as exc:
                self.process.stop(signal.SIGKILL)
                if attempt == 2 or not _address_in_use(str(exc)):
                    raise
        self._ctrl = _CtrlConnection(host, self.ctrl_port)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tls_port(self) -> int:
        return self.port + 1  # baresip's TLS listener (with a certificate)

    @property
    def uri(self) -> str:
        return self.uri_for(self.users[0])

    def uri_for(self, user: str) -> str:
        return f"sip:{user}@{uri_host(self.host)}:{self.port}"

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._ctrl.changed:
            return list(self._ctrl.events)

    async def ctrl(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send a ctrl_tcp command; the response (``ok``, ``data``) as a dict."""
        return await trio.to_thread.run_sync(self._ctrl.command, command, params, timeout)

    async def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first ctrl_tcp event of ``kind`` (``CALL_INCOMING``, ``CALL_ESTABLISHED``,
        ``CALL_CLOSED`` ...) seen since start, waiting for it if needed."""
        with trio.fail_after(timeout):
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        return event
                await trio.sleep(0.02)

    @property
    def recordings(self) -> list[Path]:
        return sorted(self.recording_dir.glob("dump-*"), key=lambda p: p.stat().st_mtime)

    @property
    def recording_path(self) -> Path:
        """The newest WAV of what baresip *received* (sndfile's ``dump-*-dec`` WAV)."""
        received = [p for p in self.recordings if p.name.removesuffix(".wav").endswith("-dec")]
        if not received:
            raise PeerError(f"baresip wrote no received-audio WAV in {self.recording_dir}")
        return received[-1]

    def log(self) -> str:
        return self.process.log_text()

    def stop(self) -> int:
        self._ctrl.close()
        return self.process.stop(signal.SIGTERM)

    def logs(self) -> dict[str, str]:
        return {self.process.name: self.process.log_tail()}


@dataclass(frozen=True)
class BaresipCallResult:
    """How a one-shot baresip UAC call went."""

    established: bool
    exit_status: int
    log: str
    recording_dir: Path

    @property
    def recording_path(self) -> Path:
        """The WAV of what the baresip UAC received (sndfile's ``dump-*-dec`` WAV)."""
        received = sorted(self.recording_dir.glob("dump-*-dec*"))
        if not received:
            raise PeerError(f"baresip wrote no received-audio WAV in {self.recording_dir}")
        return received[-1]

    @property
    def status_lines(self) -> list[str]:
        """The SIP outcome lines of baresip's log (``... 404 Not Found``, ``terminated``)."""
        keep = re.compile(r"established|terminated|Progress|closed|\b[3-6]\d\d\b|packets")
        return [ln for ln in self.log.splitlines() if keep.search(ln) and not ln.startswith("/")]


class BaresipCall:
    """A one-shot baresip UAC: ``baresip -e "/dial URI" -t seconds``, then it quits."""

    def __init__(
        self,
        uri: str,
        workdir: Path,
        *,
        seconds: float = 5.0,
        host: str = "127.0.0.1",
        user: str = "alice",
        tone_hz: int = 700,
        wav: Path | None = None,
        record: bool = True,
        dns: tuple[str, int] | None = None,
        registrar: str | None = None,
        password: str = AUTH_PASS,
        mediaenc: str | None = None,
        cafile: Path | None = None,
    ) -> None:
        """``cafile``: the CAs baresip trusts, to dial a ``sips:`` URI."""
        binary = require_binary("baresip")
        self.uri = uri
        self.port = free_port(host, tcp=True)
        name = f"baresip-uac-{self.port}"
        self.dir = workdir / name
        _baresip_config(
            self.dir,
            host=host,
            sip_port=self.port,
            ctrl_port=free_port(host, tcp=True),
            rtp_base=free_port_range(host, RTP_PORTS_PER_BARESIP),
            mode="uac",
            users=(user,),
            tone_hz=tone_hz,
            wav=wav,
            record=record,
            dns=dns,
            registrar=registrar,
            password=password,
            mediaenc=mediaenc,
            cafile=cafile,
        )
        self.seconds = seconds
        argv = [
            binary,
            "-f",
            str(self.dir),
            "-e",
            f"/dial {uri}",
            "-t",
            str(max(1, round(seconds))),
        ]
        self.process = Process(name, argv, self.dir / "baresip.log", self.dir)

    async def wait(self) -> BaresipCallResult:
        deadline = trio.current_time() + self.seconds + 15
        try:
            while self.process.alive and trio.current_time() < deadline:
                await trio.sleep(0.05)
        finally:
            status = self.process.stop(signal.SIGTERM)
        text = self.process.log_text()
        return BaresipCallResult(
            established="Call established" in text,
            exit_status=status,
            log=text,
            recording_dir=self.dir / "recordings",
        )

    def stop(self) -> None:
        self.process.stop(signal.SIGKILL)

    def logs(self) -> dict[str, str]:
        return {self.process.name: self.process.log_tail()}


# --------------------------------------------------------------------------- PJSIP


class Pjsua:
    """PJSIP's pjsua2 (``tests/pjsua_peer.py``) in a process of its own, with ``args``: a
    URI to call, or ``--listen PORT --cert PEM`` to answer one call over TLS."""

    def __init__(self, workdir: Path, *args: str) -> None:
        try:
            import pjsua2  # noqa: F401
        except ImportError:
            missing("PJSIP's Python binding (pip install pjsua2-python)")
        self.dir = workdir / f"pjsua-{free_port(tcp=True)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "tests.pjsua_peer", *args]
        self.process = Process(self.dir.name, argv, self.dir / "pjsua.log", LAB_DIR.parent.parent)
        if "--listen" in args:
            port = int(args[args.index("--listen") + 1])
            self.process.wait_bound("127.0.0.1", port, proto="tcp")

    async def result(self, timeout: float = 30) -> dict[str, Any]:
        """What it printed when it was done (see tests/pjsua_peer.py)."""
        deadline = trio.current_time() + timeout
        while self.process.alive and trio.current_time() < deadline:
            await trio.sleep(0.05)
        self.process.stop(signal.SIGKILL)
        for line in reversed(self.process.log_text().splitlines()):
            if line.startswith('{"confirmed"'):
                result: dict[str, Any] = json.loads(line)
                return result
        raise PeerError(f"pjsua printed no result:\n{self.process.log_tail()}")

    def stop(self) -> None:
        self.process.stop(signal.SIGKILL)

    def logs(self) -> dict[str, str]:
        return {self.process.name: self.process.log_tail()}


# --------------------------------------------------------------------------- captures


@dataclass(frozen=True)
class CapturedDatagram:
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


class LoopbackCapture:
    """dumpcap on ``lo`` (UDP only, libpcap format), for checking what went on the wire.

    Needs root (or the capture capabilities); ``datagrams()`` after ``stop()``.
    """

    def __init__(self, workdir: Path) -> None:
        require_root("capturing on the loopback")
        binary = require_binary("dumpcap")
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / f"capture-{secrets.token_hex(3)}.pcap"
        argv = [binary, "-i", "lo", "-f", "udp", "-P", "-w", str(self.path)]
        self.process = Process("dumpcap", argv, workdir / "dumpcap.log", workdir)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "Capturing on" not in self.process.log_text():
            if not self.process.alive or time.monotonic() > deadline:
                raise PeerError(f"dumpcap did not start: {self.process.log_tail(10)}")
            time.sleep(0.02)
        time.sleep(0.5)  # it says so a moment before the filter is attached

    def stop(self) -> None:
        time.sleep(0.2)  # let the last packets reach the file
        self.process.stop(signal.SIGINT)

    def datagrams(self) -> list[CapturedDatagram]:
        """Every IPv4 UDP datagram captured, in order (libpcap, Ethernet link type)."""
        data = self.path.read_bytes()
        if len(data) < 24 or data[:4] != b"\xd4\xc3\xb2\xa1":
            raise PeerError(f"{self.path} is not a little-endian libpcap file")
        out = []
        offset = 24
        while offset + 16 <= len(data):
            captured = int.from_bytes(data[offset + 8 : offset + 12], "little")
            frame = data[offset + 16 : offset + 16 + captured]
            offset += 16 + captured
            if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            header = (ip[0] & 0x0F) * 4
            if ip[9] != 17:
                continue
            udp = ip[header:]
            length = int.from_bytes(udp[4:6], "big")
            out.append(
                CapturedDatagram(
                    (socket.inet_ntoa(ip[12:16]), int.from_bytes(udp[0:2], "big")),
                    (socket.inet_ntoa(ip[16:20]), int.from_bytes(udp[2:4], "big")),
                    bytes(udp[8:length]),
                )
            )
        return out


# --------------------------------------------------------------------------- audio checks


def read_wav_mono(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit WAV as float samples of its first channel, and its sample rate."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV, want 16-bit")
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return frames[:: w.getnchannels()].astype(np.float64), w.getframerate()


def tone_ratio(samples: np.ndarray, rate: int, hz: float) -> float:
    """Share of the energy at ``hz`` over up to 1 s from the middle (1.0 = a pure tone)."""
    middle = len(samples) // 2
    segment = samples[max(0, middle - rate // 2) : middle + rate // 2]
    if len(segment) < rate // 10:
        return 0.0
    coefficient = 2 * np.cos(2 * np.pi * hz / rate)
    s1 = s2 = 0.0
    for value in segment:  # Goertzel
        s1, s2 = value + coefficient * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
    energy = float(np.dot(segment, segment)) or 1e-9
    return float(2 * power / (energy * len(segment)))


def clearest(samples: np.ndarray, rate: int, hz: float) -> float:
    """The clearest half second of the tone (``tone_ratio``), from 0.25 s on: baresip's
    own source may stutter for a frame on a loaded host, which no window should fail."""
    windows = [samples[int(rate * (0.25 + k / 2)) : int(rate * (0.75 + k / 2))] for k in range(3)]
    return max(tone_ratio(w, rate, hz) for w in windows if w.size >= rate // 4)


# --------------------------------------------------------------------------- Kamailio


def _kamailio_module_path() -> Path:
    candidates = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    for candidate in [*candidates, Path("/usr/lib/kamailio/modules")]:
        if (candidate / "tm.so").exists():
            return candidate
    missing("Kamailio modules directory not found (Debian package kamailio)")
    raise AssertionError("unreachable")  # pragma: no cover


class Kamailio:
    """Kamailio 5.6 from tests/lab/kamailio, in the foreground (``-DD``) as our child.

    ``registrar``: registrar + proxy, digest realm ``realm`` (users :data:`KAMAILIO_USERS`
    plus ``user``/``password``); REGISTER gets 401, other initial requests 407; a request
    for a registered AOR is relayed to its contact, a foreign R-URI is proxied; INVITEs are
    record-routed; OPTIONS to the server itself gets ``200 Keepalive``.
    ``dispatcher``: round-robin over ``backends`` (host:port), OPTIONS probing every
    ``ping_interval`` s (only 200 counts as alive); 500/503/timeout fails over to the next.
    ``tls_proxy``: an edge proxy on UDP ``port`` and TLS ``tls_port`` (``certificate``, a
    PEM with its key; as a client it verifies servers against ``ca``): a new request that
    came over TLS goes to ``inner`` over UDP, one that came over UDP to ``outer`` over
    TLS; record-routed, so the whole dialog goes through it.
    ``rpc("dispatcher.list")`` / ``rpc("ul.dump")`` run kamcmd over its control socket.
    """

    def __init__(
        self,
        role: str,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        realm: str = "lab.test",
        user: str = AUTH_USER,
        password: str = AUTH_PASS,
        backends: Sequence[tuple[str, int]] = (),
        ping_interval: int = 2,
        probe_fail: int = 1,
        probe_ok: int = 1,
        debug: int = 2,
        certificate: Path | None = None,
        ca: Path | None = None,
        inner: tuple[str, int] = ("127.0.0.1", 9),
        outer: tuple[str, int] = ("127.0.0.1", 9),
    ) -> None:
        if role not in ("registrar", "dispatcher", "tls_proxy"):
            raise ValueError(f"unknown Kamailio role {role!r}: registrar, dispatcher or tls_proxy")
        if role == "tls_proxy" and (certificate is None or ca is None):
            raise ValueError("the TLS proxy needs certificate= and ca=")
        if role == "tls_proxy" and not (_kamailio_module_path() / "tls.so").exists():
            missing("Kamailio's tls module (Debian package kamailio-tls-modules)")
        if role == "dispatcher" and not backends:
            raise ValueError("the dispatcher needs backends=[(host, port), ...]")
        binary = require_binary("kamailio")
        self.kamcmd = require_binary("kamcmd")
        self.role = role
        self.host = host
        self.realm = realm
        self.backends = tuple(backends)
        for attempt in range(3):
            self.port = free_port(host, tcp=True)
            self.tls_port = free_port(host, tcp=True)
            name = f"kamailio-{role}-{self.port}"
            self.dir = workdir / name
            self.dir.mkdir(parents=True, exist_ok=True)
            # a Unix socket path has at most 104 bytes: the control socket lives in /tmp
            self._ctl_dir = Path(tempfile.mkdtemp(prefix="gosipd-kam-"))
            self.control_socket = self._ctl_dir / "ctl"
            values = {
                "IP": host,
                "PORT": str(self.port),
                "RUNDIR": str(self.dir),
                "CTLSOCK": str(self.control_socket),
                "REALM": realm,
                "AUTH_USER": user,
                "AUTH_PASS": password,
                "PING_S": str(ping_interval),
                "PROBE_FAIL": str(probe_fail),
                "PROBE_OK": str(probe_ok),
                "MPATH": str(_kamailio_module_path()) + "/",
                "TLSPORT": str(self.tls_port),
                "INNER": f"{uri_host(inner[0])}:{inner[1]}",
                "OUTER": f"{uri_host(outer[0])}:{outer[1]}",
                "CERT": str(certificate),
                "CA": str(ca),
            }
            if role == "tls_proxy":
                tls = self._render(KAMAILIO_DIR / "tls.cfg.in", values)
                (self.dir / "tls.cfg").write_text(tls)
            config = self._render(KAMAILIO_DIR / f"{role}.cfg.in", values)
            config = config.replace("debug=2", f"debug={debug}", 1)
            self.config_path = self.dir / "kamailio.cfg"
            self.config_path.write_text(config)
            if role == "dispatcher":
                rows = [
                    f"1 sip:{uri_host(h)}:{p} 0 0 duid=backend-{i}"
                    for i, (h, p) in enumerate(self.backends)
                ]
                (self.dir / "dispatcher.list").write_text("\n".join(rows) + "\n")
            check = subprocess.run(
                [binary, "-c", "-f", str(self.config_path)],
                capture_output=True,
                text=True,
                check=False,
            )
            if check.returncode != 0:
                raise PeerError(f"kamailio -c rejected {self.config_path}:\n{check.stderr[-3000:]}")
            argv = [
                binary, "-f", str(self.config_path), "-DD", "-E", "-m", "64", "-M", "8",
                "-Y", str(self.dir), "-P", str(self.dir / "kamailio.pid"),
            ]  # fmt: skip
            self.process = Process(name, argv, self.dir / "kamailio.log", self.dir)
            try:
                self.process.wait_bound(host, self.port)
                if role == "tls_proxy":
                    self.process.wait_bound(host, self.tls_port, proto="tcp")
                else:
                    self.process.wait_bound(host, self.port, proto="tcp")
                self._wait_rpc()
                return
            except PeerError as exc:
                self.stop()
                if attempt == 2 or not _address_in_use(str(exc)):
                    raise

    @staticmethod
    def _render(template: Path, values: dict[str, str]) -> str:
        text = template.read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        return text

    def _wait_rpc(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            probe = self._kamcmd("core.version")
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline or not self.process.alive:
                raise PeerError(
                    f"{self.process.name} control socket not answering: {probe.stderr}\n"
                    f"{self.process.log_tail(20)}"
                )
            time.sleep(0.05)

    def _kamcmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kamcmd, "-s", f"unix:{self.control_socket}", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def uri(self, user: str | None = None) -> str:
        return f"sip:{user + '@' if user else ''}{uri_host(self.host)}:{self.port}"

    def rpc(self, *args: str) -> str:
        """A kamcmd RPC (``ul.dump``, ``dispatcher.list`` ...); its output, or PeerError."""
        done = self._kamcmd(*args)
        if done.returncode != 0:
            raise PeerError(f"kamcmd {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def log(self) -> str:
        return self.process.log_text()

    def stop(self) -> int:
        status = self.process.stop(signal.SIGTERM)
        shutil.rmtree(self._ctl_dir, ignore_errors=True)
        return status

    def logs(self) -> dict[str, str]:
        return {self.process.name: self.process.log_tail()}


# --------------------------------------------------------------------------- dnsmasq


@dataclass(frozen=True)
class Host:
    """A (IPv4) or AAAA (IPv6) record; several for one name give several addresses."""

    name: str
    address: str


@dataclass(frozen=True)
class SRV:
    name: str  # "_sip._udp.lab.test"
    target: str
    port: int
    priority: int = 10
    weight: int = 0


@dataclass(frozen=True)
class NAPTR:
    name: str
    order: int
    preference: int
    flags: str  # "S" for SRV, "A" for A/AAAA
    service: str  # "SIP+D2U", "SIP+D2T", "SIPS+D2T", "SIP+D2S"
    replacement: str
    regexp: str = ""


@dataclass(frozen=True)
class CNAME:
    name: str
    target: str


Record = Host | SRV | NAPTR | CNAME


def failover_zone(hole: Blackhole, busy: SippUAS, echo: SippUAS) -> list[Record]:
    """``trunk.lab.test``: NAPTR -> SRV to, in priority order, a black hole, an ICMP
    refusal, a UAS that answers 503 (``busy``) and one that answers (``echo``)."""
    srv = "_sip._udp.trunk.lab.test"
    return [
        NAPTR("trunk.lab.test", 10, 10, "S", "SIP+D2U", srv),
        SRV(srv, "silent.lab.test", 5060, priority=10),
        SRV(srv, "refusing.lab.test", 5060, priority=20),
        SRV(srv, "busy.lab.test", busy.port, priority=30),
        SRV(srv, "echo.lab.test", echo.port, priority=40),
        Host("silent.lab.test", hole.silent_addr),
        Host("refusing.lab.test", hole.refusing_addr),
        Host("busy.lab.test", busy.host),
        Host("echo.lab.test", echo.host),
    ]


def _zone_lines(records: Iterable[Record]) -> list[str]:
    lines = []
    for record in records:
        match record:
            case Host(name, address):
                lines.append(f"host-record={name},{ip_address(address)}")
            case SRV(name, target, port, priority, weight):
                lines.append(f"srv-host={name},{target},{port},{priority},{weight}")
            case NAPTR(name, order, preference, flags, service, replacement, regexp):
                lines.append(
                    f"naptr-record={name},{order},{preference},{flags},{service},"
                    f"{regexp},{replacement}"
                )
            case CNAME(name, target):
                lines.append(f"cname={name},{target}")
    return lines


#: The manual lab's lab.test zone (tests/lab/dns/dnsmasq.conf.in), as records.
LAB_ZONE: tuple[Record, ...] = (
    Host("sip-a.lab.test", "127.0.0.1"),
    Host("sip-a.lab.test", "::1"),
    Host("sip-b.lab.test", "127.0.0.2"),
    Host("sip-c.lab.test", "127.0.0.3"),
    Host("registrar.lab.test", "127.0.0.1"),
    Host("plain.lab.test", "127.0.0.1"),
    Host("v6only.lab.test", "::1"),
    Host("dual.lab.test", "127.0.0.1"),
    Host("dual.lab.test", "::1"),
    SRV("_sip._udp.lab.test", "sip-a.lab.test", 25070, 10, 60),
    SRV("_sip._udp.lab.test", "sip-b.lab.test", 25070, 10, 40),
    SRV("_sip._udp.lab.test", "sip-c.lab.test", 25070, 20, 0),
    SRV("_sip._tcp.lab.test", "registrar.lab.test", 25090, 10, 0),
    NAPTR("lab.test", 10, 10, "S", "SIP+D2U", "_sip._udp.lab.test"),
    NAPTR("lab.test", 20, 10, "S", "SIP+D2T", "_sip._tcp.lab.test"),
)


class DnsServer:
    """dnsmasq answering only from ``records`` for ``domain`` on host:port (UDP and TCP).

    Names under ``domain`` that have no record get NXDOMAIN; other domains get REFUSED;
    nothing is forwarded. Every record has TTL ``ttl``. Point a resolver at
    :attr:`nameserver`. :meth:`queries` lists the queries dnsmasq logged.
    """

    def __init__(
        self,
        records: Iterable[Record],
        workdir: Path,
        *,
        domain: str = "lab.test",
        ttl: int = 60,
        host: str = "127.0.0.1",
    ) -> None:
        binary = require_binary("dnsmasq")
        self.records = tuple(records)
        self.domain = domain
        self.ttl = ttl
        self.host = host
        for attempt in range(3):
            self.port = free_port(host, tcp=True)
            name = f"dnsmasq-{self.port}"
            self.dir = workdir / name
            self.dir.mkdir(parents=True, exist_ok=True)
            config = [
                f"listen-address={host}",
                f"port={self.port}",
                "bind-interfaces",  # exactly this address, never the wildcard
                "no-resolv",  # no upstream: nothing leaves the machine
                "no-hosts",
                "no-poll",
                "no-negcache",
                f"local=/{domain}/",  # ours: unknown names -> NXDOMAIN
                "domain-needed",
                "bogus-priv",
                "log-queries=extra",
                "pid-file=",
                "user=root",
                "cache-size=0",
                f"local-ttl={ttl}",
                *_zone_lines(self.records),
            ]
            self.config_path = self.dir / "dnsmasq.conf"
            self.config_path.write_text("\n".join(config) + "\n")
            check = subprocess.run(
                [binary, "--test", f"--conf-file={self.config_path}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if check.returncode != 0:
                raise PeerError(f"dnsmasq --test rejected {self.config_path}: {check.stderr}")
            argv = [binary, "-k", f"--conf-file={self.config_path}", "--log-facility=-"]
            self.process = Process(name, argv, self.dir / "dnsmasq.log", self.dir)
            try:
                self.process.wait_bound(host, self.port)
                return
            except PeerError as exc:
                self.process.stop(signal.SIGKILL)
                if attempt == 2 or not _address_in_use(str(exc)):
                    raise

    @property
    def nameserver(self) -> tuple[str, int]:
        return (self.host, self.port)

    def queries(self) -> list[tuple[str, str]]:
        """(type, name) of every query dnsmasq logged so far, oldest first."""
        found = re.findall(r"query\[(\w+)\] (\S+) from", self.process.log_text())
        return [(kind, name) for kind, name in found]

    def stop(self) -> int:
        return self.process.stop(signal.SIGTERM)

    def logs(self) -> dict[str, str]:
        return {self.process.name: self.process.log_tail()}


# --------------------------------------------------------------------------- black hole


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise PeerError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


BLACKHOLE_SUPERNET = IPv4Network("169.254.0.0/16")  # link-local: never routed off-host


class Blackhole:
    """A network namespace behind a veth pair with three kinds of dead SIP targets.

    ``silent_addr``: every UDP/TCP packet is dropped inside the namespace (nft) - no
    reply, no ICMP, only timeouts.  ``refusing_addr``: a host with no listener, whose
    kernel answers ICMP port unreachable.  ``unreachable_addr``: an unassigned address on
    the link (ARP fails: EHOSTUNREACH after ~3 s, reported only with IP_RECVERR).
    ``local_addr`` is the host side of the veth. Unique names and a random /29 in
    169.254.0.0/16 keep parallel runs apart; nothing outside the namespace is changed
    except the veth, the /29 route and an ``unreachable`` safety route for the /29
    (so that, if the veth is gone, traffic fails locally instead of leaving the host).
    The host's firewall rules are never touched.
    """

    def __init__(self, workdir: Path) -> None:
        require_root("the black-hole namespace")
        require_binary("ip")
        self.nft = require_binary("nft")
        tag = secrets.token_hex(3)
        self.namespace = f"gosipd-bh-{os.getpid()}-{tag}"
        self.host_link, self.peer_link = f"gbh{tag}h", f"gbh{tag}p"
        self.network = self._pick_network()
        first = int(self.network.network_address)
        self.local_addr = str(IPv4Address(first + 1))
        self.silent_addr = str(IPv4Address(first + 2))
        self.refusing_addr = str(IPv4Address(first + 3))
        self.unreachable_addr = str(IPv4Address(first + 5))
        self.log_path = workdir / f"blackhole-{tag}.log"
        self._created = False
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise

    @staticmethod
    def _pick_network() -> IPv4Network:
        in_use = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
        for _ in range(200):
            third, fourth = random.randrange(1, 255), random.randrange(0, 256, 8)
            candidate = IPv4Network(f"169.254.{third}.{fourth}/29")
            if f"169.254.{third}.{fourth}" not in in_use and not any(
                f"169.254.{third}.{fourth + i}" in in_use for i in range(8)
            ):
                return candidate
        raise PeerError("no free /29 in 169.254.0.0/16 for the black hole")

    def _create(self) -> None:
        self._created = True
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.peer_link)
        _ip("link", "set", self.peer_link, "netns", self.namespace)
        _ip("addr", "add", f"{self.local_addr}/29", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        ns = ("-n", self.namespace)
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "addr", "add", f"{self.silent_addr}/29", "dev", self.peer_link)
        _ip(*ns, "addr", "add", f"{self.refusing_addr}/29", "dev", self.peer_link)
        _ip(*ns, "link", "set", self.peer_link, "up")
        rules = (
            "table inet gosipd_blackhole {\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    ip daddr {self.silent_addr} meta l4proto {{ udp, tcp }} counter drop\n"
            "  }\n"
            "}\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, self.nft, "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PeerError(f"nft inside {self.namespace}: {done.stderr.strip()}")
        _ip("route", "add", "unreachable", str(self.network), "metric", "4242", check=False)
        for address in (self.silent_addr, self.refusing_addr, self.unreachable_addr):
            route = _ip("route", "get", address).stdout
            if f"dev {self.host_link}" not in route:
                raise PeerError(f"{address} is not routed into the black hole: {route}")
        # Wait for the veth to carry traffic (DAD does not apply to IPv4; the link must be up).
        deadline = time.monotonic() + 5
        while "LOWER_UP" not in _ip("link", "show", self.host_link).stdout:
            if time.monotonic() > deadline:
                raise PeerError(f"{self.host_link} did not come up")
            time.sleep(0.02)
        self.log_path.write_text(self.status())

    def dropped_packets(self) -> int:
        """How many packets the namespace's nft rule has dropped (to the silent target)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, self.nft, "list", "table", "inet",
             "gosipd_blackhole"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        found = re.search(r"packets (\d+)", done.stdout)
        return int(found.group(1)) if found else 0

    def status(self) -> str:
        return (
            f"netns {self.namespace}: {self.host_link} {self.local_addr} <-> "
            f"{self.peer_link} {self.silent_addr} (drop) {self.refusing_addr} (ICMP); "
            f"{self.unreachable_addr} unassigned\n"
        )

    def destroy(self) -> None:
        if not self._created:
            return
        self._created = False
        _ip("netns", "del", self.namespace, check=False)  # also removes the veth pair
        if _ip("link", "show", self.host_link, check=False).returncode == 0:
            _ip("link", "del", self.host_link, check=False)
        _ip("route", "del", "unreachable", str(self.network), "metric", "4242", check=False)

    def stop(self) -> None:
        self.destroy()

    def logs(self) -> dict[str, str]:
        return {f"blackhole {self.namespace}": self.status()}


# --------------------------------------------------------------------------- the lab


@dataclass
class PeerLab:
    """The peers one test started; :meth:`close` stops them all (the conftest does)."""

    workdir: Path
    peers: list[Any] = field(default_factory=list)
    peer_kinds: ClassVar[tuple[str, ...]] = (
        "sipp_uas",
        "sipp_uac",
        "baresip_uas",
        "baresip_call",
        "kamailio",
        "dnsmasq",
        "blackhole",
    )

    def _keep(self, peer: Any) -> Any:
        self.peers.append(peer)
        return peer

    def sipp_uas(self, variant: str = "echo", **options: Any) -> SippUAS:
        uas: SippUAS = self._keep(SippUAS(variant, self.workdir, **options))
        return uas

    def sipp_uac(self, scenario: str, target: str, **options: Any) -> SippUAC:
        uac: SippUAC = self._keep(SippUAC(scenario, target, self.workdir, **options))
        return uac

    async def run_sipp_uac(self, scenario: str, target: str, **options: Any) -> SippResult:
        return await self.sipp_uac(scenario, target, **options).wait()

    def baresip_uas(self, mode: str = "uas", **options: Any) -> BaresipUA:
        ua: BaresipUA = self._keep(BaresipUA(mode, self.workdir, **options))
        return ua

    def baresip_call(self, uri: str, **options: Any) -> BaresipCall:
        call: BaresipCall = self._keep(BaresipCall(uri, self.workdir, **options))
        return call

    async def run_baresip_call(self, uri: str, **options: Any) -> BaresipCallResult:
        return await self.baresip_call(uri, **options).wait()

    def pjsua(self, *args: str) -> Pjsua:
        peer: Pjsua = self._keep(Pjsua(self.workdir, *args))
        return peer

    def kamailio(self, role: str = "registrar", **options: Any) -> Kamailio:
        proxy: Kamailio = self._keep(Kamailio(role, self.workdir, **options))
        return proxy

    def dnsmasq(self, records: Iterable[Record] = LAB_ZONE, **options: Any) -> DnsServer:
        server: DnsServer = self._keep(DnsServer(records, self.workdir, **options))
        return server

    def blackhole(self) -> Blackhole:
        hole: Blackhole = self._keep(Blackhole(self.workdir))
        return hole

    def close(self) -> None:
        errors = []
        for peer in reversed(self.peers):
            try:
                peer.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{type(peer).__name__}: {exc}")
        if errors:
            raise PeerError("stopping peers failed: " + "; ".join(errors))

    def logs(self) -> Iterator[tuple[str, str]]:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                yield from peer.logs().items()


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


__all__ = [
    "AUTH_PASS",
    "AUTH_USER",
    "CNAME",
    "KAMAILIO_USERS",
    "LAB_ZONE",
    "NAPTR",
    "SRV",
    "BaresipCall",
    "BaresipCallResult",
    "BaresipUA",
    "Blackhole",
    "DnsServer",
    "Host",
    "Kamailio",
    "PeerError",
    "PeerLab",
    "Process",
    "SipTraceEntry",
    "SippResult",
    "SippStats",
    "SippUAC",
    "SippUAS",
    "free_port",
    "free_port_range",
    "missing",
    "parse_sip_trace",
    "port_bound",
    "read_wav_mono",
    "require_binary",
    "sip_options",
    "tone_ratio",
]
