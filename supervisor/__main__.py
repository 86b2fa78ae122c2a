"""``gosipd``: run the supervisor in the foreground."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gosipd",
        description="Run the gosipd supervisor: one process per SIP call.",
    )
    parser.add_argument("--config", help="TOML configuration file (default: built-in defaults)")
    parser.add_argument("--socket", help="control socket path")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("gosipd: the supervisor is not part of this build yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
