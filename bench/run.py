"""Run every benchmark in bench/ and exit non-zero if any budget was missed."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    missed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name.startswith("_") or script.name == "run.py":
            continue
        module = runpy.run_path(str(script), run_name="bench")
        if not module["main"]():
            missed.append(script.stem)
    if missed:
        print(f"\nbudgets missed in: {', '.join(missed)}")
        return 1
    print("\nall budgets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
