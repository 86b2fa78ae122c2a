"""``gosipd``: run the supervisor in the foreground (systemd runs it as Type=notify)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import grp
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import trio

from gosipd.config import Config, ConfigError, load_config
from gosipd.log import configure_logging, get_logger
from gosipd.paths import check_socket_dir, drop_cwd_from_sys_path, private_dir

from . import systemd
from .server import Supervisor
from .zygote import Zygote

PR_SET_CHILD_SUBREAPER = 36


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gosipd",
        description="Run the gosipd supervisor: one process per SIP call.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file (default: none)")
    parser.add_argument("--socket", type=Path, help="control socket path")
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        help="the runtime directory: the control socket, the calls' sockets and state",
    )
    parser.add_argument("--listen", help="inbound SIP address host:port (overrides the config)")
    return parser


def _control_socket(config: Config, inherited: dict[str, int]) -> socket.socket:
    if "control" in inherited:
        return socket.socket(fileno=inherited["control"])
    activated = systemd.listen_fds()
    if activated:
        return activated[0]
    path = config.resolved_socket_path().absolute()
    if path.parent != config.resolved_runtime_dir():  # that one private_dir checked
        check_socket_dir(path.parent)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket from a supervisor that is gone
        else:
            probe.close()
            raise ConfigError(f"another gosipd is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.bind(str(path))
    os.chmod(path, 0o660)
    if config.socket_group:
        try:
            os.chown(path, -1, grp.getgrnam(config.socket_group).gr_gid)
        except KeyError:
            raise ConfigError(f"socket_group {config.socket_group!r} does not exist") from None
    sock.listen(4096)
    return sock


def _sip_socket(config: Config, inherited: dict[str, int]) -> socket.socket | None:
    if "sip" in inherited:
        return socket.socket(fileno=inherited["sip"])
    if config.inbound.listen is None:
        return None
    host, port = config.inbound.listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    _grow_receive_buffer(sock)
    sock.bind((host, port))
    return sock


def _stream_listeners(config: Config, inherited: dict[str, int]) -> dict[str, socket.socket]:
    """The TCP and TLS listeners ([inbound] listen_tcp, listen_tls), or the ones the
    previous process held (an upgrade keeps them, so no connection is refused)."""
    listeners = {}
    for transport, address in (
        ("tcp", config.inbound.listen_tcp),
        ("tls", config.inbound.listen_tls),
    ):
        if f"sip_{transport}" in inherited:
            listeners[transport] = socket.socket(fileno=inherited[f"sip_{transport}"])
            continue
        if address is None:
            continue
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        listeners[transport] = sock
    return listeners


#: The public SIP port's receive buffer: a scanner's burst must not crowd out the
#: trunk's INVITEs while the supervisor works through it (the kernel's default holds
#: about a hundred datagrams).
SIP_RECEIVE_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; not in the socket module


def _grow_receive_buffer(sock: socket.socket) -> None:
    """As large as allowed: past net.core.rmem_max with CAP_NET_ADMIN, else up to it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SIP_RECEIVE_BUFFER)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SIP_RECEIVE_BUFFER)


def _max_fd() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _start_zygote() -> socket.socket:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        # The zygote and the workers it forks must hold none of the supervisor's sockets:
        # a worker holding the control or SIP listener would outlive a restart and keep it.
        keep = theirs.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
        code = 1
        try:
            code = Zygote(theirs).serve()
        finally:
            os._exit(code)
    theirs.close()
    return ours


def main(argv: list[str] | None = None) -> int:
    # Whatever started us, nothing from here on (apps, the zygote, every call) imports
    # from the directory we were started in.
    drop_cwd_from_sys_path()
    # A reload (SIGHUP) that arrives while we start up must not kill us; trio takes the
    # signal over once it runs.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
        if args.socket:
            config = config.with_overrides(socket_path=args.socket)
        if args.runtime_dir:
            config = config.with_overrides(runtime_dir=args.runtime_dir)
        if args.listen:
            from dataclasses import replace

            from gosipd.config import parse_hostport

            # only the address changes: the limits and listeners of [inbound] stay
            config = config.with_overrides(
                inbound=replace(
                    config.inbound, listen=parse_hostport(args.listen, 5060, "--listen")
                )
            )
        configure_logging(config.log_level)
        inherited: dict[str, Any] = json.loads(os.environ.pop("GOSIPD_INHERIT_FDS", "{}"))
        carried: list[dict[str, Any]] = inherited.pop("connections", [])
        for connection in carried:
            os.set_inheritable(connection["fd"], False)
        upgrade_state = json.loads(os.environ.pop("GOSIPD_UPGRADE_STATE", "{}"))
        # Workers orphaned by an old zygote are re-parented to us, so we can reap them.
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        runtime_dir = private_dir(config.resolved_runtime_dir())
        private_dir(runtime_dir / "calls", what="calls directory")
        config = config.with_overrides(runtime_dir=runtime_dir)
        control = _control_socket(config, inherited)
        sip = _sip_socket(config, inherited)
        listeners = _stream_listeners(config, inherited)
        old_zygote = socket.socket(fileno=inherited["zygote"]) if "zygote" in inherited else None
        for sock in (control, sip, old_zygote, *listeners.values()):
            if sock is not None:
                sock.set_inheritable(False)
        import gosipd.worker

        gosipd.worker.CONFIG = config  # the zygote, and every worker it forks, inherit it
        zygote = _start_zygote()
    except (ConfigError, OSError) as exc:
        print(f"gosipd: {exc}", file=sys.stderr)
        return 2
    from .inbound import crash_bye, handle_inbound, relay_answers

    supervisor = Supervisor(
        config,
        control=control,
        zygote=zygote,
        sip=sip,
        listeners=listeners,
        old_zygote=old_zygote,
        argv=raw_argv,
        crash_bye=crash_bye,
        inbound=handle_inbound,
        relay=relay_answers,
        carried=carried,
    )
    if upgrade_state.get("draining"):
        supervisor.draining = True
    get_logger().debug("supervisor.start", argv=raw_argv)
    return trio.run(supervisor.run)


if __name__ == "__main__":
    sys.exit(main())
