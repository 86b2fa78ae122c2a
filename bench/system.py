"""The whole daemon under load: setup rate, dial-to-INVITE latency, memory and media per call.

Everything goes through a real supervisor (``python -m gosipd.supervisor``)
and real call processes, against a real SIPp UAS on loopback. References
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import PeerLab  # noqa: E402
from tests.supervisor.daemon import Daemon  # noqa: E402

SETUP_CALLS = 600
SETUP_CONCURRENCY = 48
LATENCY_SAMPLES = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")


def uss_kib(pid: int) -> int:
    """Private (unshared) memory of a process: Private_Clean + Private_Dirty."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _dial_until_answered(
    daemon: Daemon, uri: str, results: list[float], errors: list[str], duration: float
) -> None:
    start = time.monotonic()
    try:
        reply, conn = daemon.dial(uri, max_duration=duration)
        if not reply.get("ok"):
            errors.append(str(reply.get("error")))
            return
        conn.until_event("call.answered", timeout=60)
        results.append(time.monotonic() - start)
        conn.until_event("call.ended", timeout=60)
        conn.close()
    except (OSError, AssertionError) as exc:
        errors.append(repr(exc))


def setup_rate(daemon: Daemon, uri: str, calls: int = SETUP_CALLS) -> tuple[float, list[str]]:
    """Calls answered per second with ``SETUP_CONCURRENCY`` dials in flight."""
    results: list[float] = []
    errors: list[str] = []
    semaphore = threading.Semaphore(SETUP_CONCURRENCY)
    threads = []

    def one() -> None:
        with semaphore:
            _dial_until_answered(daemon, uri, results, errors, 0.2)  # 200 ms, as SIPp's

    start = time.monotonic()
    for _ in range(calls):
        thread = threading.Thread(target=one)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    return len(results) / elapsed, errors


def sipp_rate(workdir: Path, uas_target: str, calls: int = SETUP_CALLS) -> float:
    """SIPp's built-in UAC (INVITE, ACK, 200 ms, BYE) against the same UAS, as fast as it
    can with the same number of calls in flight: the reference setup rate."""
    start = time.monotonic()
    result = subprocess.run(
        [
            "sipp",
            "-sn",
            "uac",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-m",
            str(calls),
            "-r",
            "10000",
            "-l",
            str(SETUP_CONCURRENCY),
            "-d",
            "200",
            "-nostdin",
            "-timeout",
            "120s",
            "-trace_err",
            "-error_file",
            str(workdir / "sipp-ref.err"),
            uas_target,
        ],
        capture_output=True,
        timeout=180,
        cwd=workdir,
    )
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        print(f"(SIPp reference exited {result.returncode})")
    return calls / elapsed


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
        return uss_kib(child.pid)
    finally:
        child.kill()
        child.wait()


def concurrent(daemon: Daemon, uri: str, count: int, hold: float = 10.0) -> dict[str, Any]:
    """``count`` calls up at once with media for ``hold`` seconds (the ``silence`` app:
    what is measured is the media path itself, comfort noise out, the echo back in)."""
    conns = []
    for _ in range(count):
        reply, conn = daemon.dial(uri, max_duration=hold + count * 0.02 + 5, app="silence")
        if not reply.get("ok"):
            raise RuntimeError(f"dial refused: {reply}")
        conns.append(conn)
    for conn in conns:
        conn.until_event("call.answered", timeout=120)
    time.sleep(1.0)
    pids = list(daemon.worker_pids().values())
    before = {pid: cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(hold)
    elapsed = time.monotonic() - started
    cpu = [cpu_seconds(pid) - before[pid] for pid in pids if os.path.exists(f"/proc/{pid}")]
    memory = [uss_kib(pid) for pid in pids[:50] if os.path.exists(f"/proc/{pid}")]
    for call in daemon.request({"op": "calls"})["calls"]:
        daemon.request({"op": "hangup", "call": call["call"]})
    ended = [conn.until_event("call.ended", timeout=120) for conn in conns]
    for conn in conns:
        conn.close()
    lost = sum(e["media"]["packets_lost"] for e in ended)
    sent = sum(e["media"]["packets_sent"] for e in ended)
    lateness = [e["media"].get("send_lateness_p99_ms") or 0.0 for e in ended]
    return {
        "calls": count,
        "cpu_per_call_pct": statistics.median(cpu) / elapsed * 100 if cpu else 0.0,
        "packets_sent": sent,
        "packets_lost": lost,
        "p99_lateness_ms_median_call": statistics.median(lateness),
        "p99_lateness_ms_worst_call": max(lateness),
        "uss_kib_median": statistics.median(memory) if memory else 0,
    }


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, nargs="*", default=[50, 100, 200, 500])
    parser.add_argument("--setup-calls", type=int, default=SETUP_CALLS)
    args = parser.parse_args(argv if argv is not None else [])
    ok = True
    with tempfile.TemporaryDirectory(prefix="gosipd-bench-") as tmp:
        work = Path(tmp)
        lab = PeerLab(work / "peers")
        (work / "peers").mkdir()
        daemon = Daemon(
            work / "daemon",
            listen=False,
            extra="[limits]\nmax_calls = 2000\nmax_calls_per_second = 100000\n"
            "[rtp]\nport_min = 30000\nport_max = 60000\n",
        )
        try:
            uas = lab.sipp_uas("echo")
            daemon.start()
            uri = uas.uri("echo")

            latency = dial_to_invite_latency(daemon)
            median_latency = statistics.median(latency)
            rate, errors = setup_rate(daemon, uri, args.setup_calls)
            reference = sipp_rate(work, f"{uas.host}:{uas.port}", args.setup_calls)
            fresh = fresh_interpreter_uss()
            curve = [concurrent(daemon, uri, n) for n in args.calls]
        except BaseException:
            print("the daemon's log, last lines:\n" + daemon.log.read_text()[-4000:])
            raise
        finally:
            daemon.stop()
            lab.close()

    print("\nSystem (through the supervisor, real call processes, SIPp UAS on loopback)")
    print(
        f"dial request -> INVITE on the wire: median {median_latency:.2f} ms, "
        f"p90 {sorted(latency)[int(len(latency) * 0.9)]:.2f} ms   (budget <= 5 ms)"
    )
    if errors:
        print(f"first setup error: {errors[0]}")
    print(
        f"call setups: {rate:.0f}/s with {SETUP_CONCURRENCY} in flight; SIPp's own UAC "
        f"reaches {reference:.0f}/s on the same UAS (ratio {rate / reference:.2f}); "
        f"errors {len(errors)}   (budget >= 200/s)"
    )
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
    checks = {
        "dial -> INVITE median <= 5 ms": median_latency <= 5.0,
        "setups >= 200/s": rate >= 200 and not errors,
        "USS per call <= 4 MB": all(r["uss_kib_median"] <= 4096 for r in curve),
    }
    big = [r for r in curve if r["calls"] >= 500]
    if big:
        checks["500 calls: p99 lateness <= 2 ms, no loss"] = (
            big[0]["p99_lateness_ms_median_call"] <= 2.0 and big[0]["packets_lost"] == 0
        )
    for name, passed in checks.items():
        print(f"  {'ok    ' if passed else 'MISSED'} {name}")
        ok &= passed
    print(
        json.dumps(
            {
                "latency_ms": median_latency,
                "setup_rate": rate,
                "sipp_rate": reference,
                "fresh_uss_kib": fresh,
                "curve": curve,
            }
        )
    )
    return ok


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
