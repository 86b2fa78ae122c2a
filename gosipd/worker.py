"""The entry point of one call process: forked by the supervisor's zygote, or run by hand.

``run_forked(spec, client_fd)`` is what the zygote calls in a fresh child:
it binds the call id into every log line, takes over the dial client's
connection when there is one, and runs the call in its own ``trio.run``.
``python -m gosipd.worker TARGET`` runs one call without a supervisor, which
is handy for trying a trunk from the shell.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import structlog
import trio

from gosipd.call import CallRuntime, CallSpec
from gosipd.config import Config, ConfigError, load_config
from gosipd.log import configure_logging
from gosipd.paths import drop_cwd_from_sys_path, private_dir

__all__ = ["CONFIG", "run_call", "run_forked"]

#: The configuration the supervisor loaded before it forked the zygote; workers inherit it.
CONFIG = Config()
#: How an answered call may end and still count as a success (exit status 0).
NORMAL_ENDS = ("local_hangup", "remote_hangup", "max_duration")


async def run_call(
    spec: CallSpec,
    config: Config,
    fds: dict[str, int] | None = None,
    runtime_dir: Path | None = None,
    control_listener: tuple[socket.socket, Path] | None = None,
) -> int:
    """One call; ``fds`` are what the supervisor handed over, by name: ``client``, the
    dial's connection, which gets the call's events."""
    fds = fds or {}
    client = None
    if (client_fd := fds.pop("client", None)) is not None:
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=client_fd))
        client = trio.SocketStream(sock)
    for unknown in fds.values():
        os.close(unknown)
    runtime = CallRuntime(spec, config, runtime_dir=runtime_dir, control_listener=control_listener)
    return await runtime.run(client)


def run_forked(spec: dict[str, Any], fds: dict[str, int]) -> int:
    """The zygote's entry: one call in this freshly forked process."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(call=spec.get("call"), pid=os.getpid())
    runtime_dir = Path(spec["runtime_dir"]) if spec.get("runtime_dir") else None
    return trio.run(run_call, CallSpec.from_dict(spec), CONFIG, fds, runtime_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gosipd.worker", description=__doc__)
    parser.add_argument("target", help="a SIP URI, or a number for the configured trunk")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--app", default="echo")
    parser.add_argument("--from", dest="from_")
    parser.add_argument("--max-duration", type=float)
    parser.add_argument("--runtime-dir", type=Path)
    args = parser.parse_args(argv)
    drop_cwd_from_sys_path()  # the app is imported from where it is installed, not from here
    try:
        config = load_config(args.config)
        runtime_dir = private_dir(args.runtime_dir or config.resolved_runtime_dir())
        private_dir(runtime_dir / "calls", what="calls directory")
    except ConfigError as exc:
        print(f"gosipd.worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    spec = CallSpec(
        call=secrets.token_hex(8),
        to=args.target,
        app=args.app,
        from_=args.from_,
        max_duration=args.max_duration,
    )
    runtime = CallRuntime(spec, config, runtime_dir=runtime_dir)
    trio.run(runtime.run)
    end = runtime._end_event or {}
    print(json.dumps(end))
    return 0 if end.get("answered") and end.get("cause") in NORMAL_ENDS else 1


if __name__ == "__main__":
    sys.exit(main())
