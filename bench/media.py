"""Media budgets: concurrent call processes on this machine, each sending and receiving G.711.

Like the supervisor will, a parent that imported everything (and ran one
call's code once, see ``warm_up``) calls ``gc.freeze()`` and forks one
process per call. Each call process binds a socket, starts a
``MediaSession`` (the native paced loop) towards one far end that echoes
every packet back, and runs trio with ``gosipd.media.events`` exactly as a
call worker would. Every process measures the same window: send lateness
(histogram), CPU (getrusage, all threads), packets sent and echoed back
(after a drain, so nothing in flight counts as lost), and its USS from
/proc/self/smaps_rollup with media running.

The far end is as light as it can be made, so that it is never the
bottleneck: a C reflector built from ``_rtp_helpers.c`` (recvmmsg/sendmmsg
batches, a 16 MiB receive buffer, SCHED_FIFO when allowed); SIPp
``-rtp_echo`` or a Python reflector when no C compiler is found. Its CPU is
reported separately.

References measured in the same run: the same media work paced by a trio
task (``trio.sleep_until``, encode, ``sendto``, drain; the ratio is what the
native loop saves), and a bare C pacer (sleep, ``sendto``, drain: what the
kernel alone costs per tick on this host).

The curve runs at normal priority; the budget level runs once more with the
media threads under SCHED_FIFO (``realtime_priority``), the production
setting when the worker may use it, and the budgets are judged on that row.

SRTP (AES_CM_128_HMAC_SHA1_80, protect and unprotect in the media thread)
is measured as a ratio to plain RTP: three pairs of runs at 200 calls, plain
then SRTP, and the median of the pairs' CPU ratios (the reflector echoes the
SRTP packets as they are, so each call unprotects its own stream with the
same key: the same work as a real far end's).

Run alone: ``python bench/media.py [--calls 50,100,200,500] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import mmap
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trio

from gosipd import _dsp
from gosipd.media import MediaSession, events
from gosipd.sdes import SUITES, SrtpKeys
from gosipd.sdp import NegotiatedMedia

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Budgets (docs: DESIGN.md "Performance budgets", issue 5).
MAX_CPU_US_PER_TICK = 30.0
MAX_P99_LATENESS_MS = 2.0
MAX_USS_MB = 4.0
MIN_RATIO_VS_TRIO = 5.0
BUDGET_CALLS = 500
#: SRTP's CPU per call as a ratio to plain RTP (issue 14), at SRTP_CALLS calls.
MAX_SRTP_RATIO = 1.3
SRTP_CALLS = 200
SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"


def _uss_kb() -> int:
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def _process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


#: Whether the calls of a level use SRTP.
SRTP = False


def _media_to(port: int) -> NegotiatedMedia:
    # ours and, since the reflector echoes us, the far end's
    key = os.urandom(sum(SUITES[SRTP_SUITE]))
    return NegotiatedMedia(
        "127.0.0.1", port, "127.0.0.1", port + 1, False, "PCMU", 0, 101, 101,
        ((0, "PCMU"),), 20, "sendrecv", srtp=SrtpKeys(SRTP_SUITE, key, key) if SRTP else None,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# One call process
# ---------------------------------------------------------------------------


class Window:
    """The measurement window, shared with the forked call processes.

    The parent publishes it once every process is forked and running, so a
    slow fork on a busy host shortens nobody's window.
    """

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 16)  # anonymous and shared across fork

    def publish(self, t0: float, t1: float) -> None:
        self._memory[8:16] = struct.pack("d", t1)
        self._memory[0:8] = struct.pack("d", t0)  # t0 last: non-zero means complete

    def read(self) -> tuple[float, float] | None:
        t0 = struct.unpack("d", self._memory[0:8])[0]
        return None if t0 == 0.0 else (t0, struct.unpack("d", self._memory[8:16])[0])

    async def wait(self) -> tuple[float, float]:
        while (window := self.read()) is None:
            await trio.sleep(0.05)
        return window


#: SCHED_FIFO priority for the media threads in a level (None: normal scheduling).
REALTIME: int | None = None


def _call_process(echo_port: int, window: Window, out: Path) -> None:
    """The body of one forked call process (never returns)."""
    status = 0
    try:
        result = trio.run(_call, echo_port, window)
        out.write_text(json.dumps(result))
    except BaseException as exc:  # report, never hang the bench
        out.write_text(json.dumps({"error": repr(exc)}))
        status = 1
    os._exit(status)


async def _call(echo_port: int, window: Window) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    session = MediaSession(sock, _media_to(echo_port), media_timeout=0, realtime_priority=REALTIME)
    session.play(_dsp.ToneGenerator(1000, -16.0).frame(8000))  # a second of tone, then noise
    session.start()
    loop = session._loop
    result: dict[str, object] = {}
    async with trio.open_nursery() as nursery:

        async def drive() -> None:
            async for _event in events(session):
                pass

        nursery.start_soon(drive)
        t0, t1 = await window.wait()
        result["late_start_s"] = max(0.0, time.monotonic() - t0)  # > 0: a partial window
        await trio.sleep(max(0.0, t0 - time.monotonic()))
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        counters0 = loop.counters()
        hist0 = loop.lateness_histogram()[1]
        await trio.sleep(max(0.0, t1 - time.monotonic()))
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        counters1 = loop.counters()
        hist1 = loop.lateness_histogram()[1]
        result["uss_kb"] = _uss_kb()
        result["window_sent"] = counters1["packets_sent"] - counters0["packets_sent"]
        session.hold()  # stop sending, then let the echoes in flight come back
        await trio.sleep(0.2)
        final = loop.counters()
        give_up = time.monotonic() + 3.0
        while final["packets_received"] < final["packets_sent"] and time.monotonic() < give_up:
            await trio.sleep(0.1)
            final = loop.counters()
        nursery.cancel_scope.cancel()
    session.close()
    ticks = counters1["ticks"] - counters0["ticks"]
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    result.update(
        ticks=ticks,
        cpu_s=cpu,
        thread_cpu_s=(counters1["thread_cpu_ns"] - counters0["thread_cpu_ns"]) / 1e9,
        sent=final["packets_sent"],
        received=final["packets_received"],
        skipped=counters1["ticks_skipped"] - counters0["ticks_skipped"],
        send_errors=final["send_errors"],
        lateness={i: b - a for i, (a, b) in enumerate(zip(hist0, hist1, strict=True)) if b != a},
    )
    return result


# ---------------------------------------------------------------------------
# The reference: the same work paced by a trio task
# ---------------------------------------------------------------------------


def _trio_pacer_process(echo_port: int, window: Window, out: Path) -> None:
    status = 0
    try:
        out.write_text(json.dumps(trio.run(_trio_pacer, echo_port, window)))
    except BaseException as exc:
        out.write_text(json.dumps({"error": repr(exc)}))
        status = 1
    os._exit(status)


async def _trio_pacer(echo_port: int, window: Window) -> dict[str, object]:
    """The same work as one tick of the native loop, paced by ``trio.sleep_until``."""
    t0, t1 = await window.wait()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    noise = _dsp.ComfortNoise(-60.0)
    dest = ("127.0.0.1", echo_port)
    header = bytearray(12)
    header[0] = 0x80
    seq = ts = 0
    offset = trio.current_time() - time.monotonic()
    deadline = time.monotonic()
    ticks = 0
    cpu0 = None
    while True:
        deadline += 0.02
        await trio.sleep_until(deadline + offset)
        now = time.monotonic()
        if cpu0 is None and now >= t0:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu0 = usage.ru_utime + usage.ru_stime
            ticks = 0
        if now >= t1:
            break
        header[2:4] = (seq & 0xFFFF).to_bytes(2, "big")
        header[4:8] = (ts & 0xFFFFFFFF).to_bytes(4, "big")
        sock.sendto(bytes(header) + _dsp.ulaw_encode(noise.frame(160)), dest)
        seq += 1
        ts += 160
        while True:  # drain what came back and decode it, as the loop does
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            _dsp.ulaw_decode(data[12:])
        ticks += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sock.close()
    return {"ticks": ticks, "cpu_s": usage.ru_utime + usage.ru_stime - (cpu0 or 0.0)}


# ---------------------------------------------------------------------------
# The far end
# ---------------------------------------------------------------------------


@dataclass
class Reflector:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    for port in range(47000, 48000, 10):
        socks = []
        try:
            for p in (
                port,
                port + 2,
                port + 5,
                port + 7,
            ):  # SIPp binds media, media+2, SIP, control
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port for the reflector")


def compile_helpers(workdir: Path) -> Path | None:
    """Build bench/_rtp_helpers.c (the C reflector and the floor pacer); None without cc."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = workdir / "rtp_helpers"
    result = subprocess.run(
        [cc, "-O2", "-o", str(out), str(HERE / "_rtp_helpers.c")], capture_output=True
    )
    return out if result.returncode == 0 else None


def start_reflector(workdir: Path, helpers: Path | None, priority: int | None) -> Reflector:
    """The far end: the C reflector (batched, 16 MiB buffer, SCHED_FIFO when allowed),
    else SIPp -rtp_echo, else a Python reflector."""
    port = _free_port()
    sipp = shutil.which("sipp")
    if helpers is not None:
        cmd = [str(helpers), "reflect", str(port), str(priority or 0)]
        name = "the C reflector" + (f" (SCHED_FIFO {priority})" if priority else "")
    elif sipp:
        cmd = [
            sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port + 5), "-mi", "127.0.0.1",
            "-mp", str(port), "-rtp_echo", "-nostdin", "-bind_local", "-cp", str(port + 7),
        ]  # fmt: skip
        name = "SIPp -rtp_echo"
    else:
        cmd = [sys.executable, str(HERE / "_reflector.py"), str(port)]
        name = "a Python reflector"
    process = subprocess.Popen(
        cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(0.1)
    for _ in range(50):
        probe.sendto(b"\x80" + bytes(11), ("127.0.0.1", port))
        try:
            probe.recvfrom(64)
            break
        except TimeoutError:
            continue
    else:
        process.kill()
        raise RuntimeError(f"{name} did not echo on port {port}")
    probe.close()
    return Reflector(name, port, process)


def floor_cpu_per_tick(calls: int, seconds: float, reflector: Reflector, helpers: Path) -> float:
    """CPU per tick of the C floor pacer (sleep, sendto, drain; nothing else), ``calls`` at once."""
    t0 = time.monotonic() + 1.5
    t1 = t0 + seconds
    pacers = [
        subprocess.Popen(
            [str(helpers), "pace", str(reflector.port), f"{t0:.6f}", f"{t1:.6f}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(calls)
    ]
    ticks = cpu = 0
    for p in pacers:
        out, _ = p.communicate()
        t, c = (int(v) for v in out.split())
        ticks += t
        cpu += c
    return cpu / max(1, ticks) / 1000


# ---------------------------------------------------------------------------
# Running a level
# ---------------------------------------------------------------------------


@dataclass
class Level:
    calls: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    sent: int  # in the window
    lost: int  # of everything sent
    cpu_us_per_tick: float
    thread_us_per_tick: float
    uss_mean_mb: float
    uss_max_mb: float
    reflector_cpu_pct: float
    machine_busy_pct: float
    errors: int
    late_starts: int


_EDGES_US = [10 * (i + 1) for i in range(500)] + [5000 + 1000 * (i + 1) for i in range(100)]


def _percentile(counts: np.ndarray, q: float) -> float:
    total = counts.sum()
    if total == 0:
        return 0.0
    index = int(np.searchsorted(np.cumsum(counts), q * total))
    return _EDGES_US[index] / 1000 if index < len(_EDGES_US) else float("inf")


def run_level(
    calls: int, seconds: float, reflector: Reflector, workdir: Path, *, body: object = None
) -> list[dict[str, object]]:
    """Fork ``calls`` processes; every one measures the same window. Returns their reports."""
    target = body or _call_process
    window = Window()
    gc.collect()
    gc.freeze()
    pids = []
    for i in range(calls):
        pid = os.fork()
        if pid == 0:
            target(reflector.port, window, workdir / f"call-{i}.json")  # type: ignore[operator]
        pids.append(pid)
    gc.unfreeze()
    t0 = time.monotonic() + 1.0 + calls * 0.002  # every call is running by then
    t1 = t0 + seconds
    window.publish(t0, t1)
    time.sleep(max(0.0, t0 - time.monotonic()))
    cpu0, busy0 = _process_cpu(reflector.process.pid), _machine_busy()
    time.sleep(max(0.0, t1 - time.monotonic()))
    cpu1, busy1 = _process_cpu(reflector.process.pid), _machine_busy()
    for pid in pids:
        os.waitpid(pid, 0)
    reports = []
    for i in range(calls):
        path = workdir / f"call-{i}.json"
        reports.append(json.loads(path.read_text()) if path.exists() else {"error": "no report"})
        path.unlink(missing_ok=True)
    span = t1 - t0
    reports.append(
        {
            "reflector_cpu_pct": 100 * (cpu1 - cpu0) / span,
            "machine_busy_pct": 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        }
    )
    return reports


def summarise(calls: int, reports: list[dict[str, object]]) -> Level:
    meta = reports[-1]
    good = [r for r in reports[:-1] if "error" not in r]
    counts = np.zeros(len(_EDGES_US) + 1, dtype=np.int64)
    for r in good:
        for index, count in r["lateness"].items():  # type: ignore[attr-defined]
            counts[int(index)] += count
    ticks = sum(int(r["ticks"]) for r in good)  # type: ignore[call-overload]
    sent = sum(int(r["sent"]) for r in good)  # type: ignore[call-overload]
    received = sum(int(r["received"]) for r in good)  # type: ignore[call-overload]
    window_sent = sum(int(r["window_sent"]) for r in good)  # type: ignore[call-overload]
    uss = [int(r["uss_kb"]) / 1024 for r in good]  # type: ignore[call-overload]
    max_index = int(np.nonzero(counts)[0].max()) if counts.any() else 0
    return Level(
        calls=calls,
        p50_ms=_percentile(counts, 0.5),
        p99_ms=_percentile(counts, 0.99),
        max_ms=_EDGES_US[max_index] / 1000 if max_index < len(_EDGES_US) else float("inf"),
        sent=window_sent,
        lost=sent - received,
        cpu_us_per_tick=1e6 * sum(float(r["cpu_s"]) for r in good) / max(1, ticks),  # type: ignore[arg-type]
        thread_us_per_tick=1e6 * sum(float(r["thread_cpu_s"]) for r in good) / max(1, ticks),  # type: ignore[arg-type]
        uss_mean_mb=float(np.mean(uss)) if uss else 0.0,
        uss_max_mb=max(uss) if uss else 0.0,
        reflector_cpu_pct=float(meta["reflector_cpu_pct"]),  # type: ignore[arg-type]
        machine_busy_pct=float(meta["machine_busy_pct"]),  # type: ignore[arg-type]
        errors=len(reports) - 1 - len(good),
        late_starts=sum(1 for r in good if float(r["late_start_s"]) > 0.0),  # type: ignore[arg-type]
    )


def reference_cpu_per_tick(
    calls: int, seconds: float, reflector: Reflector, workdir: Path
) -> float:
    reports = run_level(calls, seconds, reflector, workdir, body=_trio_pacer_process)
    good = [r for r in reports[:-1] if "error" not in r]
    ticks = sum(int(r["ticks"]) for r in good)  # type: ignore[call-overload]
    return 1e6 * sum(float(r["cpu_s"]) for r in good) / max(1, ticks)  # type: ignore[arg-type]


def warm_up(port: int) -> None:
    """Run the call processes' own code once in the parent, as a supervisor should.

    CPython 3.11 specialises bytecode in place the first times it runs it, and
    trio and the media session build lazily cached state: done once in the
    parent before ``gc.freeze()``, those pages stay shared with every child
    instead of being copied into each one.
    """
    window = Window()
    now = time.monotonic()
    window.publish(now + 0.2, now + 0.4)
    trio.run(_call, port, window)


def _udp_drops() -> int:
    """Datagrams the host dropped for want of socket buffer (all sockets, from /proc/net/snmp)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _may_use_realtime() -> bool:
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] > 0


def main(
    levels: tuple[int, ...] = (50, 100, 200, 500),
    seconds: float = 10.0,
    realtime: bool = True,
) -> bool:
    """The curve at normal priority, then (if allowed) the budget level under SCHED_FIFO."""
    global REALTIME, SRTP
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
    rows: list[tuple[str, Level, int]] = []
    floor = None
    with tempfile.TemporaryDirectory(prefix="gosipd-bench-media-") as tmp:
        workdir = Path(tmp)
        helpers = compile_helpers(workdir)
        reflector = start_reflector(workdir, helpers, 20 if _may_use_realtime() else None)
        try:
            warm_up(reflector.port)
            reference = reference_cpu_per_tick(min(levels), seconds / 2, reflector, workdir)
            if helpers is not None:
                floor = floor_cpu_per_tick(min(levels), seconds / 2, reflector, helpers)
            plan: list[tuple[str, int, int | None]] = [("normal", n, None) for n in levels]
            if realtime and BUDGET_CALLS in levels and _may_use_realtime():
                plan.append(("FIFO 10", BUDGET_CALLS, 10))
            for label, calls, priority in plan:
                REALTIME = priority
                drops = _udp_drops()
                level = summarise(calls, run_level(calls, seconds, reflector, workdir))
                rows.append((label, level, _udp_drops() - drops))
            REALTIME = None
            srtp_calls = SRTP_CALLS if SRTP_CALLS in levels else max(levels)
            srtp_pairs: list[tuple[Level, Level]] = []
            for _ in range(3):
                pair = []
                for secure in (False, True):
                    SRTP = secure
                    pair.append(
                        summarise(
                            srtp_calls, run_level(srtp_calls, seconds / 2, reflector, workdir)
                        )
                    )
                srtp_pairs.append((pair[0], pair[1]))
        finally:
            REALTIME = None
            SRTP = False
            reflector.stop()
    print("\nMedia: N call processes forked after gc.freeze(), G.711 20 ms both ways,")
    print(f"echoed by {reflector.name}; {seconds:g} s window per level")
    header = (
        f"{'sched':>7} {'calls':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'sent':>8}"
        f" {'lost':>5} {'drops':>5} {'µs/tick':>8} {'thread':>7} {'%core':>6} {'USS MB':>11}"
        f" {'reflector':>9} {'machine':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, r, drops in rows:
        print(
            f"{label:>7} {r.calls:>5} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.max_ms:>7.1f}"
            f" {r.sent:>8} {r.lost:>5} {drops:>5} {r.cpu_us_per_tick:>8.1f}"
            f" {r.thread_us_per_tick:>7.1f} {r.cpu_us_per_tick / 200:>5.2f}%"
            f" {r.uss_mean_mb:>5.2f}/{r.uss_max_mb:<5.2f}"
            f" {r.reflector_cpu_pct:>8.1f}% {r.machine_busy_pct:>7.1f}%"
            + (f"  ({r.errors} call processes failed)" if r.errors else "")
            + (f"  ({r.late_starts} started late)" if r.late_starts else "")
        )
    print("(µs/tick, %core: CPU of one call process, all threads; thread: its media thread;")
    print(" drops: UDP receive-buffer drops on the host; reflector: % of one core;")
    print(" machine: both cores busy, everything on this shared host included)")
    lowest = rows[0][1]
    if floor is not None:
        print(
            f"\nthe bare C pacer (sleep, sendto, drain) costs {floor:.1f} µs/tick here at"
            f" {lowest.calls} calls: the kernel's share; the media loop adds"
            f" {lowest.cpu_us_per_tick - floor:.1f} µs (codec, jitter buffer, rings, trio)"
        )
    ratio = reference / lowest.cpu_us_per_tick
    # CPU per call is judged where the capacity claim is made: the budget level at normal
    # priority (on this VM an idle-ish CPU pays more per wake-up than a busy one).
    normal = [r for label, r, _ in rows if label == "normal" and r.calls == BUDGET_CALLS]
    judged = normal[0] if normal else lowest
    checks = [
        (f"CPU per call, {judged.calls} calls", f"{judged.cpu_us_per_tick:.1f} µs/tick",
         f"<= {MAX_CPU_US_PER_TICK:g}", judged.cpu_us_per_tick <= MAX_CPU_US_PER_TICK),
        (f"vs a trio-paced loop ({reference:.0f} µs/tick, {lowest.calls} calls)", f"{ratio:.1f}x",
         f">= {MIN_RATIO_VS_TRIO:g}x", ratio >= MIN_RATIO_VS_TRIO),
    ]  # fmt: skip
    budget_rows = [(label, r) for label, r, _ in rows if r.calls == BUDGET_CALLS]
    if budget_rows:
        label, r = budget_rows[-1]  # the production setting: SCHED_FIFO when allowed
        checks += [
            (f"p99 send lateness, {r.calls} calls ({label})", f"{r.p99_ms:.2f} ms",
             f"<= {MAX_P99_LATENESS_MS:g}", r.p99_ms <= MAX_P99_LATENESS_MS),
            (f"packets lost, {r.calls} calls ({label})", str(r.lost), "0",
             r.lost == 0 and not r.errors),
            (f"USS per call process, {r.calls} calls", f"{r.uss_max_mb:.2f} MB",
             f"<= {MAX_USS_MB:g}", r.uss_max_mb <= MAX_USS_MB),
        ]  # fmt: skip
    print(f"\nSRTP ({SRTP_SUITE}) against plain RTP, {srtp_calls} calls, {seconds / 2:g} s each:")
    columns = ("plain µs/tick", "SRTP µs/tick", "ratio", "SRTP lost", "SRTP p99 ms")
    print(" ".join(f"{c:>13}" for c in columns))
    ratios = []
    for plain, secure in srtp_pairs:
        ratios.append(secure.cpu_us_per_tick / max(1e-9, plain.cpu_us_per_tick))
        print(
            f"{plain.cpu_us_per_tick:>13.1f} {secure.cpu_us_per_tick:>13.1f} {ratios[-1]:>12.2f}x"
            f" {secure.lost:>13} {secure.p99_ms:>13.2f}"
        )
    srtp_ratio = float(np.median(ratios))
    checks.append(
        (f"SRTP CPU per call vs plain, {srtp_calls} calls (median)", f"{srtp_ratio:.2f}x",
         f"<= {MAX_SRTP_RATIO:g}x", srtp_ratio <= MAX_SRTP_RATIO
         and all(s.lost == 0 and not s.errors for _, s in srtp_pairs)),
    )  # fmt: skip
    print()
    for name, value, budget, met in checks:
        print(f"{name:<52} {value:>14} {budget:>8}  {'ok' if met else 'MISSED'}")
    return all(met for *_, met in checks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="50,100,200,500")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-realtime", action="store_true", help="skip the SCHED_FIFO row")
    parser.add_argument(
        "--srtp-suite",
        default=SRTP_SUITE,
        choices=("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"),
        help="the suite of the SRTP pairs",
    )
    args = parser.parse_args()
    SRTP_SUITE = args.srtp_suite
    levels = tuple(int(n) for n in args.calls.split(","))
    sys.exit(0 if main(levels, args.seconds, not args.no_realtime) else 1)
