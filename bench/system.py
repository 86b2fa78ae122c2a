"""The whole daemon under load: setup rate, dial-to-INVITE latency, memory and media per call.

Everything goes through a real supervisor (``python -m gosipd.supervisor``)
and real call processes, against a real SIPp UAS on loopback; its SDP answer
points the media at bench/media.py's C reflector (batched), which keeps up with
500 calls where SIPp's one echo thread dropped 1.6 % of the packets. References
measured in the same run: SIPp's own UAC against the same UAS (setup rate),
and a fresh Python interpreter that imported the engine (memory).

Figures (medians where repeated):

- call setups per second through the supervisor (budget: >= 200/s);
- dial request -> INVITE on the wire, median (budget: <= 5 ms);
- private memory (USS) of one call process with media running (budget: <= 4 MB);
- N concurrent calls with media (50/100/200/500): worker CPU per call, packets
  lost, and the p99 send lateness the media loops report (budget at 500: <= 2 ms).

Run: ``make bench`` (all benches) or ``.venv/bin/python bench/system.py [--calls 500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from media import compile_helpers, start_reflector  # noqa: E402

from tests.peers import PeerLab, SippStats, free_port  # noqa: E402
from tests.supervisor.daemon import Daemon  # noqa: E402

SETUP_CALLS = 600
SETUP_CONCURRENCY = 48
#: SIPp echoes every call's RTP from one socket in one thread: at 500 calls (25,000
#: packets/s) its default buffer (212 KB) overflowed whenever the host was busy and the
#: loss measured was the peer's (seen in /proc/net/udp). More SIPp processes measured
#: worse (their threads took the CPU our media loops needed), a larger buffer not.
ECHO_BUFFER = 4 << 20
#: The daemon's RTP ports in this bench (its [rtp] section).
RTP_PORTS = range(30000, 60001)
LATENCY_SAMPLES = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_text(pid: int, name: str) -> str | None:
    """``/proc/PID/name``, or None when the process has gone (a call that just ended)."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def uss_kib(pid: int) -> int | None:
    """Private (unshared) memory of a process: Private_Clean + Private_Dirty."""
    text = _proc_text(pid, "smaps_rollup")
    if text is None:
        return None
    return sum(
        int(line.split()[1])
        for line in text.splitlines()
        if line.startswith(("Private_Clean:", "Private_Dirty:"))
    )


def _kind(mapping: str) -> str:
    if mapping == "[heap]":
        return "malloc heap (brk)"
    if mapping in ("", "[anon]"):
        return "anonymous: Python arenas, thread stacks, mmap'd buffers"
    if "libpython" in mapping:
        return "libpython data (static objects, small ints)"
    if "/gosipd/" in mapping and ".so" in mapping:
        return "gosipd extensions"
    if mapping == "[stack]":
        return "main thread stack"
    if ".so" in mapping:
        return "other libraries"
    return "other"


def uss_breakdown(pid: int) -> dict[str, int] | None:
    """Private KiB of one process by kind of mapping (from /proc/PID/smaps)."""
    text = _proc_text(pid, "smaps")
    if text is None:
        return None
    kinds: dict[str, int] = {}
    kind = "other"
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            kind = _kind(head[5].strip() if len(head) > 5 else "")
        elif line.startswith(("Private_Clean:", "Private_Dirty:")):
            kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    return kinds


def host_busy_seconds() -> float:
    """CPU seconds the whole host has spent busy (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def cpu_seconds(pid: int) -> float | None:
    """CPU time of a process, all its threads, from the scheduler's own nanosecond
    clock (``/proc/PID/task/*/schedstat``): the tick counts of ``/proc/PID/stat`` are
    sampled, and came out higher than the whole host's busy time."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    total = 0
    for task in tasks:
        text = _proc_text(pid, f"task/{task}/schedstat")
        if text is not None:
            total += int(text.split()[0])
    return total / 1e9


@dataclass
class Setup:
    """One dial of the setup run: when each stage was reached (Unix time), or why not."""

    requested: float
    replied: float | None = None
    started: float | None = None
    answered: float | None = None
    ended: float | None = None
    gone: float | None = None  # the call's connection closed: its process has exited
    failure: str | None = None


#: (label, from, to) of the stage table.
STAGES = (
    ("dial request -> reply", "requested", "replied"),
    ("dial request -> worker running (call.started)", "requested", "started"),
    ("worker -> answered (INVITE, 100, 200 on the wire)", "started", "answered"),
    ("answered -> ended (200 ms of media, BYE, 200)", "answered", "ended"),
    ("ended -> process gone (teardown, exit)", "ended", "gone"),
    ("dial request -> process gone", "requested", "gone"),
)


def _one_setup(daemon: Daemon, uri: str, hold: float, ended: Callable[[], None]) -> Setup:
    """One dial held ``hold`` s; ``ended()`` is called at call.ended (or failure), then the
    connection is read to its end: when the call's process has gone."""
    setup = Setup(requested=time.time())
    try:
        return _follow_setup(daemon, uri, hold, setup, ended)
    finally:
        ended()


def _follow_setup(
    daemon: Daemon, uri: str, hold: float, setup: Setup, ended: Callable[[], None]
) -> Setup:
    try:
        conn = daemon.connect(30)
    except OSError as exc:
        setup.failure = f"connect: {exc.__class__.__name__}"
        return setup
    try:
        conn.send({"id": 1, "op": "dial", "to": uri, "max_duration": hold})
        reply = conn.read(30)
        setup.replied = time.time()
        if reply is None:
            setup.failure = "dial: connection closed without a reply"
            return setup
        if not reply.get("ok"):
            setup.failure = f"dial refused: {(reply.get('error') or {}).get('code', reply)}"
            return setup
        for message in conn.lines(60):
            event, ts = message.get("event"), message.get("ts")
            if event == "call.started":
                setup.started = ts
            elif event == "call.answered":
                setup.answered = ts
            elif event == "call.ended":
                setup.ended = ts
                ended()
                if not message.get("answered"):
                    setup.failure = f"not answered: {message.get('cause')}"
        setup.gone = time.time()
        if setup.ended is None and setup.failure is None:
            setup.failure = "the connection closed before call.ended"
    except TimeoutError:
        setup.failure = "timeout: no event for 60 s"
    except (OSError, ValueError) as exc:
        setup.failure = f"{exc.__class__.__name__}: {exc}"
    finally:
        conn.close()
    return setup


def setup_rate(daemon: Daemon, uri: str, calls: int = SETUP_CALLS) -> tuple[float, list[Setup]]:
    """Calls answered per second with ``SETUP_CONCURRENCY`` dials in flight, each held
    200 ms (as SIPp's reference holds its calls)."""
    setups: list[Setup] = []
    semaphore = threading.Semaphore(SETUP_CONCURRENCY)
    lock = threading.Lock()

    def one() -> None:
        semaphore.acquire()
        released = threading.Event()

        def ended() -> None:  # the next dial may start: the call is over, its process going
            if not released.is_set():
                released.set()
                semaphore.release()

        setup = _one_setup(daemon, uri, 0.2, ended)
        with lock:
            setups.append(setup)

    start = time.time()
    threads = [threading.Thread(target=one) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # until the last call ended: the processes' exits after it are not setups
    last = max((s.ended for s in setups if s.ended is not None), default=time.time())
    answered = sum(1 for s in setups if s.answered is not None)
    return answered / max(last - start, 1e-3), setups


def stage_table(setups: list[Setup]) -> list[tuple[str, float, float, int]]:
    """(stage, median ms, p90 ms, samples) over the setups that reached both ends."""
    rows = []
    for label, first, last in STAGES:
        spans = sorted(
            (getattr(s, last) - getattr(s, first)) * 1000
            for s in setups
            if getattr(s, first) is not None and getattr(s, last) is not None
        )
        if spans:
            rows.append((label, statistics.median(spans), spans[int(len(spans) * 0.9)], len(spans)))
    return rows


def sipp_rate(workdir: Path, calls: int = SETUP_CALLS) -> tuple[float, int]:
    """The reference: SIPp's built-in UAC against SIPp's built-in UAS (INVITE, 200, ACK,
    200 ms, BYE, 200), with the same number of calls in flight. Returns (answered calls
    per second, failed calls)."""
    host = "127.0.0.1"
    port = free_port(host)
    uas = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", host, "-p", str(port), "-nostdin"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    screen = workdir / "sipp-ref-screen.log"
    try:
        time.sleep(0.3)
        start = time.monotonic()
        argv = [
            "sipp", "-sn", "uac", "-i", host, "-p", "0",
            "-m", str(calls), "-r", "10000", "-l", str(SETUP_CONCURRENCY), "-d", "200",
            "-nostdin", "-timeout", "120s",
            "-trace_screen", "-screen_file", str(screen),
            f"{host}:{port}",
        ]  # fmt: skip
        subprocess.run(
            argv,
            capture_output=True,
            timeout=180,
            cwd=workdir,
        )
        elapsed = time.monotonic() - start
    finally:
        uas.kill()
        uas.wait()
    stats = SippStats.from_screen(screen.read_text(errors="replace") if screen.exists() else "")
    return stats.successful / elapsed, stats.failed


def dial_to_invite_latency(daemon: Daemon, samples: int = LATENCY_SAMPLES) -> list[float]:
    """Milliseconds from sending the dial request to the INVITE arriving at a UDP socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    latencies = []
    seen: set[str] = set()
    for _ in range(samples):
        conn = daemon.connect()
        sent = time.perf_counter()
        conn.send({"id": 1, "op": "dial", "to": f"sip:busy@127.0.0.1:{port}", "wait": False})
        while True:  # skip retransmissions of earlier INVITEs
            data, source = sock.recvfrom(65535)
            text = data.decode(errors="replace")
            call_id = next(
                (line for line in text.split("\r\n") if line.lower().startswith("call-id:")), ""
            )
            if text.startswith("INVITE") and call_id not in seen:
                break
        arrived = time.perf_counter()
        seen.add(call_id)
        latencies.append((arrived - sent) * 1000)
        conn.close()
        # refuse the call so the worker ends at once
        headers = [
            line
            for line in text.split("\r\n")
            if line.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        busy = (
            "SIP/2.0 486 Busy Here\r\n"
            + "\r\n".join(h + (";tag=b" if h.lower().startswith("to:") else "") for h in headers)
            + "\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(busy.encode(), source)
        time.sleep(0.02)
    sock.close()
    return latencies


def fresh_interpreter_uss() -> int:
    """USS of a fresh interpreter that imported what a call needs: the per-call cost
    without the zygote's fork and gc.freeze()."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import gosipd.call, gosipd.worker, sys, time; print('ready', flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.readline()
    try:
        kib = uss_kib(child.pid)
        if kib is None:
            raise RuntimeError("the reference interpreter exited before it was measured")
        return kib
    finally:
        child.kill()
        child.wait()


def udp_drops() -> dict[int, int]:
    """Datagrams the kernel dropped for want of buffer, per local UDP port (all sockets
    on that port summed), from /proc/net/udp and udp6."""
    drops: Counter[int] = Counter()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            drops[int(fields[1].rsplit(":", 1)[1], 16)] += int(fields[-1])
    return dict(drops)


def concurrent(
    daemon: Daemon,
    uri: str,
    count: int,
    hold: float = 10.0,
    app: str = "silence",
    peer_ports: tuple[int, ...] = (),
) -> dict[str, Any]:
    """``count`` calls up at once with media for ``hold`` seconds (the ``silence`` app:
    what is measured is the media path itself, comfort noise out, the echo back in).
    Datagrams the kernel dropped are counted apart for
    the peers' media sockets (``peer_ports``) and for ours, so a loss says whose it was.

    Whatever goes wrong with one call (refused, never answered, ended early, its process
    gone before it was read) is counted in ``problems``, never raised."""
    problems: Counter[str] = Counter()
    conns = []
    peer_drops_before = udp_drops()
    for _ in range(count):
        try:
            # hung up by us after the hold: max_duration is only the safety net, and dialing
            # 500 calls takes longer than the hold itself
            reply, conn = daemon.dial(uri, max_duration=hold + count + 60, app=app)
        except (OSError, AssertionError) as exc:
            problems[f"dial failed: {exc.__class__.__name__}"] += 1
            continue
        if not reply.get("ok"):
            problems[f"dial refused: {(reply.get('error') or {}).get('code')}"] += 1
            conn.close()
            continue
        conns.append(conn)
    answered = []
    for conn in conns:
        try:
            conn.until_event("call.answered", timeout=120)
            answered.append(conn)
        except (OSError, AssertionError, ValueError):
            problems["not answered"] += 1
            conn.close()
    time.sleep(1.0)
    pids = list(daemon.worker_pids().values())
    before = {pid: cpu_seconds(pid) for pid in pids}
    host_before = host_busy_seconds()
    started = time.monotonic()
    time.sleep(hold)
    elapsed = time.monotonic() - started
    host_cores = (host_busy_seconds() - host_before) / elapsed
    cpu = []
    for pid in pids:
        was, now = before[pid], cpu_seconds(pid)
        if was is None or now is None:
            problems["process gone before it was measured"] += 1
        else:
            cpu.append(now - was)
    drops = udp_drops()  # before the hangups: our sockets close with their calls
    peer_dropped = sum(drops.get(p, 0) - peer_drops_before.get(p, 0) for p in peer_ports)
    our_dropped = sum(n for p, n in drops.items() if p in RTP_PORTS and p not in peer_ports)
    memory = [kib for pid in pids[:50] if (kib := uss_kib(pid)) is not None]
    breakdown = next((b for pid in pids[:1] if (b := uss_breakdown(pid)) is not None), {})
    try:
        calls = daemon.request({"op": "calls"})["calls"]
    except (OSError, AssertionError, KeyError) as exc:
        problems[f"calls op failed: {exc.__class__.__name__}"] += 1
        calls = []
    for call in calls:
        try:
            reply = daemon.request({"op": "hangup", "call": call["call"]})
        except (OSError, AssertionError) as exc:
            problems[f"hangup failed: {exc.__class__.__name__}"] += 1
            continue
        if not reply.get("ok"):  # it ended on its own meanwhile (no_such_call)
            problems[f"hangup: {(reply.get('error') or {}).get('code')}"] += 1
    ended = []
    for conn in answered:
        try:
            event = _until_ended(conn, problems)
        except (OSError, AssertionError, ValueError):
            problems["no call.ended"] += 1
        else:
            ended.append(event)
            if event.get("cause") != "local_hangup":
                problems[f"ended early: {event.get('cause')}"] += 1
        finally:
            conn.close()
    media = [e.get("media") or {} for e in ended]
    lateness = [m.get("send_lateness_p99_ms") or 0.0 for m in media]
    return {
        "calls": count,
        "answered": len(answered),
        # the mean: one process's ticks over the hold are too few for a median to resolve
        "cpu_per_call_pct": sum(cpu) / len(cpu) / elapsed * 100 if cpu else 0.0,
        "host_busy_cores": host_cores,
        "processes_measured": len(cpu),
        "packets_sent": sum(m.get("packets_sent", 0) for m in media),
        "packets_lost": sum(m.get("packets_lost", 0) for m in media),
        "dropped_by_our_sockets": our_dropped,
        "dropped_by_peer_sockets": peer_dropped,
        "p99_lateness_ms_median_call": statistics.median(lateness) if lateness else 0.0,
        "p99_lateness_ms_worst_call": max(lateness, default=0.0),
        "uss_kib_median": statistics.median(memory) if memory else 0,
        "uss_breakdown_kib": breakdown,
        "problems": dict(problems),
    }


def _until_ended(conn: Any, problems: Counter[str]) -> dict[str, Any]:
    """The call's ``call.ended``; a failed media stream on the way is counted with why."""
    for message in conn.lines(120):
        if message.get("event") == "call.stream" and message.get("state") == "failed":
            problems[f"stream failed: {message.get('reason')}"] += 1
        if message.get("event") == "call.ended":
            return message
    raise AssertionError("the connection closed before call.ended")


def _measured(name: str, failures: dict[str, str], measure: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one measurement; a failure is reported (and misses its budget), not raised."""
    try:
        return measure(*args, **kwargs)
    except Exception as exc:
        failures[name] = f"{exc.__class__.__name__}: {exc}"
        return None


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, nargs="*", default=[50, 100, 200, 500])
    parser.add_argument("--setup-calls", type=int, default=SETUP_CALLS)
    args = parser.parse_args(argv if argv is not None else [])
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gosipd-bench-") as tmp:
        work = Path(tmp)
        lab = PeerLab(work / "peers")
        (work / "peers").mkdir()
        daemon = Daemon(
            work / "daemon",
            listen=False,
            extra="[limits]\nmax_calls = 2000\nmax_calls_per_second = 100000\n"
            f"[rtp]\nport_min = {RTP_PORTS.start}\nport_max = {RTP_PORTS.stop - 1}\n",
        )
        reflector = None
        try:
            # SIPp answers; the media goes to the C reflector (bench/media.py's), which
            # keeps up with 500 calls: SIPp's one echo thread dropped 1.6 % of them. At
            # normal priority: under SCHED_FIFO it starved the calls' media at 1,000.
            helpers = compile_helpers(work)
            if helpers is not None:
                reflector = start_reflector(work, helpers, None)
            uas = lab.sipp_uas(
                "echo",
                rtp_buffer=ECHO_BUFFER,
                answer_port=reflector.port if reflector is not None else None,
            )
            daemon.start()
            uri = uas.uri("echo")
            far_end = reflector.name if reflector else "SIPp -rtp_echo"
            peer_ports = (reflector.port,) if reflector else (uas.media_port, uas.media_port + 2)
            latency = _measured("dial -> INVITE", failures, dial_to_invite_latency, daemon) or []
            rate, setups = _measured(
                "setup rate", failures, setup_rate, daemon, uri, args.setup_calls
            ) or (0.0, [])
            reference, reference_failed = _measured(
                "SIPp reference", failures, sipp_rate, work, args.setup_calls
            ) or (0.0, 0)
            fresh = _measured("fresh interpreter", failures, fresh_interpreter_uss) or 0
            curve = [
                row
                for n in args.calls
                if (
                    row := _measured(
                        f"{n} concurrent calls",
                        failures,
                        concurrent,
                        daemon,
                        uri,
                        n,
                        peer_ports=peer_ports,
                    )
                )
            ]
        finally:
            if failures:
                print("the daemon's log, last lines:\n" + daemon.log.read_text()[-4000:])
            daemon.stop()
            lab.close()
            if reflector is not None:
                reflector.stop()
    return report(
        latency, rate, setups, reference, reference_failed, fresh, curve, failures, far_end
    )


def report(
    latency: list[float],
    rate: float,
    setups: list[Setup],
    reference: float,
    reference_failed: int,
    fresh: int,
    curve: list[dict[str, Any]],
    failures: dict[str, str],
    far_end: str,
) -> bool:
    print("\nSystem (through the supervisor, real call processes, SIPp UAS on loopback)")
    print(f"the far end's media echoed by {far_end}")
    median_latency = statistics.median(latency) if latency else float("inf")
    if latency:
        print(
            f"dial request -> INVITE on the wire: median {median_latency:.2f} ms, "
            f"p90 {sorted(latency)[int(len(latency) * 0.9)]:.2f} ms   (budget <= 5 ms)"
        )
    setup_failures = Counter(s.failure for s in setups if s.failure)
    print(
        f"call setups: {rate:.0f}/s with {SETUP_CONCURRENCY} in flight; SIPp UAC -> SIPp UAS "
        f"reaches {reference:.0f}/s (ratio {rate / reference if reference else 0:.2f}"
        f"{f', SIPp failed {reference_failed}' if reference_failed else ''}); "
        f"failed setups {sum(setup_failures.values())}   (budget >= 200/s, 0 failed)"
    )
    for failure, n in setup_failures.most_common(5):
        print(f"  {n:>5} x {failure}")
    print(f"  {'stage (per setup)':<52} {'median':>9} {'p90':>9} {'n':>6}")
    for label, median, p90, n in stage_table(setups):
        print(f"  {label:<52} {median:>7.1f}ms {p90:>7.1f}ms {n:>6}")
    print(f"memory: fresh interpreter with the engine imported {fresh / 1024:.1f} MB USS")
    print(
        f"{'calls':>6} {'CPU/call':>9} {'USS/call':>9} {'sent':>9} {'lost':>6} "
        f"{'p99 late (median call)':>23} {'(worst call)':>13}"
    )
    for row in curve:
        print(
            f"{row['calls']:>6} {row['cpu_per_call_pct']:>8.3f}% "
            f"{row['uss_kib_median'] / 1024:>7.2f}MB {row['packets_sent']:>9} "
            f"{row['packets_lost']:>6} {row['p99_lateness_ms_median_call']:>21.2f}ms "
            f"{row['p99_lateness_ms_worst_call']:>11.2f}ms"
        )
        if row["dropped_by_our_sockets"] or row["dropped_by_peer_sockets"]:
            print(
                f"{'':>8}dropped for want of buffer: {row['dropped_by_our_sockets']} by our "
                f"sockets, {row['dropped_by_peer_sockets']} by the far end's ({far_end})"
            )
        for problem, n in row["problems"].items():
            print(f"{'':>8}{n:>5} x {problem}")
    if curve and curve[0]["uss_breakdown_kib"]:
        print(f"one call's private memory by mapping ({curve[0]['calls']} calls up):")
        for kind, kib in sorted(curve[0]["uss_breakdown_kib"].items(), key=lambda kv: -kv[1]):
            print(f"  {kib / 1024:>6.2f} MB  {kind}")
    checks = {
        "dial -> INVITE median <= 5 ms": median_latency <= 5.0,
        "setups >= 200/s, 0 failed": rate >= 200 and not setup_failures,
        "USS per call <= 4 MB": bool(curve) and all(r["uss_kib_median"] <= 4096 for r in curve),
    }
    big = [r for r in curve if r["calls"] >= 500]
    if big:
        checks["500 calls: p99 lateness <= 2 ms, no loss"] = (
            big[0]["p99_lateness_ms_median_call"] <= 2.0 and big[0]["packets_lost"] == 0
        )
    for name, reason in failures.items():
        checks[f"{name} measured ({reason})"] = False
    for name, passed in checks.items():
        print(f"  {'ok    ' if passed else 'MISSED'} {name}")
    print(
        json.dumps(
            {
                "latency_ms": median_latency if latency else None,
                "setup_rate": rate,
                "sipp_rate": reference,
                "stages_ms": {label: median for label, median, _, _ in stage_table(setups)},
                "fresh_uss_kib": fresh,
                "curve": curve,
            }
        )
    )
    return all(checks.values())


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
