"""Fuzz the SIP message layer on demand: a million random and mutated inputs.

    .venv/bin/python tests/fuzz/fuzz_sip.py                 # 1,000,000 inputs, all cores
    .venv/bin/python tests/fuzz/fuzz_sip.py -n 20000 -j 1   # a quick look
    .venv/bin/python tests/fuzz/fuzz_sip.py --seed 7 --out /tmp/crashes

Every input goes through everything a caller may do with a datagram (parse, every typed
read, validation, serialisation and re-parsing, building a reply). Anything but
SIPParseError, a serialisation that does not re-parse to the same bytes, or an input
that takes longer than --slow seconds is a finding: it is written to --out as a .sip
file and the run exits non-zero. Not collected by pytest (the file name has no test_).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script

from gosipd import sip
from tests.sip.exercise import PIECES, corpus, exercise


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    choice = rng.random()
    if choice < 0.1:
        return rng.randbytes(rng.randrange(0, 600))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 12)):
        at = rng.randrange(0, len(data) + 1)
        kind = rng.randrange(6)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = rng.choice(PIECES)
        elif kind == 2:
            del data[at : at + rng.randrange(1, 24)]
        elif kind == 3:
            other = rng.choice(seeds)
            start = rng.randrange(0, len(other) + 1)
            data[at:at] = other[start : start + rng.randrange(1, 80)]
        elif kind == 4:
            piece = rng.choice(PIECES)
            data[at:at] = piece * rng.randrange(2, 300)
        else:
            end = data.find(b"\r\n", at)
            if end > 0:
                line = data.rfind(b"\n", 0, at) + 1
                data[line:line] = data[line : end + 2]  # duplicate a line
    if rng.random() < 0.5:
        _fix_content_length(data)  # so that more inputs get past framing
    return bytes(data)


def _fix_content_length(data: bytearray) -> None:
    split = data.find(b"\r\n\r\n")
    at = data.find(b"\nContent-Length:", 0, split)
    if split < 0 or at < 0:
        return
    end = data.find(b"\r\n", at + 1)
    data[at + 1 : end] = b"Content-Length: %d" % (len(data) - split - 4)


def _cpu_seconds(data: bytes) -> float:
    start = time.process_time()
    exercise(data)
    return time.process_time() - start


def worker(args: tuple[int, int, str, float]) -> tuple[int, int, int, float, list[str]]:
    seed, count, out, slow = args
    rng = random.Random(seed)
    seeds = corpus()
    parsed = refused = 0
    worst = 0.0
    findings: list[str] = []
    for number in range(count):
        data = mutate(rng, seeds)
        start = time.perf_counter()
        try:
            exercise(data)
        except Exception:  # any other exception is the finding
            path = Path(out) / f"crash-{seed}-{number}.sip"
            path.write_bytes(data)
            findings.append(f"{path}: {traceback.format_exc().splitlines()[-1]}")
            continue
        elapsed = time.perf_counter() - start
        if elapsed > slow:  # the machine may just be busy: time it again, on CPU time
            elapsed = min(_cpu_seconds(data) for _ in range(3))
        worst = max(worst, elapsed)
        if elapsed > slow:
            path = Path(out) / f"slow-{seed}-{number}.sip"
            path.write_bytes(data)
            findings.append(f"{path}: took {elapsed * 1e3:.1f} ms")
        try:
            sip.parse(data)
            parsed += 1
        except sip.SIPParseError:
            refused += 1
    return count, parsed, refused, worst, findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=1_000_000)
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", default="/tmp/gosipd-fuzz")
    parser.add_argument("--slow", type=float, default=0.05, help="seconds one input may take")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    chunks = 64
    per_chunk = -(-args.count // chunks)
    tasks = [(args.seed * 1000 + i, per_chunk, args.out, args.slow) for i in range(chunks)]
    started = time.monotonic()
    total = parsed = refused = 0
    worst = 0.0
    findings: list[str] = []
    with multiprocessing.Pool(args.jobs) as pool:
        for count, ok, bad, slowest, found in pool.imap_unordered(worker, tasks):
            total, parsed, refused = total + count, parsed + ok, refused + bad
            worst = max(worst, slowest)
            findings += found
            print(
                f"\r{total:>9,} inputs  {parsed:>9,} parsed  {refused:>9,} refused  "
                f"{len(findings)} findings",
                end="",
                flush=True,
            )
    elapsed = time.monotonic() - started
    print(
        f"\nseed {args.seed}: {total:,} inputs in {elapsed:.0f} s "
        f"({total / elapsed:,.0f}/s), slowest input {worst * 1e3:.2f} ms"
    )
    for line in findings[:50]:
        print(line)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
