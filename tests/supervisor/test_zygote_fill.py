"""The zygote fills the allocator's free blocks before it freezes (see fill_free_blocks)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: CPython 3.11's pool size on 64-bit Linux (obmalloc.c, POOL_BITS = 14).
POOL_SIZE = 16384

PROBE = textwrap.dedent(
    """
    import json
    from supervisor.zygote import _SIZE_CLASS_ROW, allocator_report, fill_free_blocks

    def available():
        rows = allocator_report()
        return {int(m[1]): int(m[2]) for r in rows if (m := _SIZE_CLASS_ROW.match(r))}

    import gosipd.worker  # a heap like the zygote's: the engine imported
    before = available()
    fillers = fill_free_blocks()
    print(json.dumps([before, available(), len(fillers)]))
    """
)


def test_fill_takes_the_free_blocks_of_partly_used_pools() -> None:
    """After the fill, almost no block is left free in a used pool: a worker's new objects
    go to pools of its own instead of into the pages it shares with the zygote."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, after, fillers = json.loads(out)
    assert sum(before.values()) > 1000, "no free blocks read: has the report's format changed?"
    assert fillers >= 0.9 * sum(before.values())  # the fill reads the report anew
    for size, left in after.items():
        # at most the pool the fill (or this probe) opened last: fresh, never shared
        assert left <= POOL_SIZE // int(size), f"{left} blocks of {size} bytes still free"


def test_fill_writes_nothing_to_stderr() -> None:
    """The allocator's report is read from a temporary file, not left on the log."""
    probe = "from supervisor.zygote import fill_free_blocks; fill_free_blocks()"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stderr == ""
