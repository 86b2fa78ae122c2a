"""gosipctl: the shell's way into a running gosipd (control protocol over a Unix socket)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gosipctl",
        description="Place, watch and control calls on a running gosipd.",
    )
    parser.add_argument("--socket", help="the daemon's control socket (default: $GOSIPD_SOCKET)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dial = commands.add_parser("dial", help="place a call and follow it to the end")
    dial.add_argument("target", help="a SIP URI, or a number for the configured trunk")
    commands.add_parser("calls", help="list the calls in progress")
    commands.add_parser("status", help="the daemon's state and counters")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage()
        return 2
    print(f"gosipctl: '{args.command}' needs a running gosipd supervisor", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
