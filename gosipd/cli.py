"""gosipctl: the shell's way into a running gosipd (the control protocol over its Unix socket).

Every command is one request on one connection. ``dial`` keeps its
connection open and prints the call's events as they come, then a summary;
it exits 0 only for an answered call that ended normally. Errors are one
line on stderr and a non-zero exit. ``--json`` prints the protocol's own
JSON lines instead of text.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gosipd.config import Config
from gosipd.sdp import SRTP_POLICIES

__all__ = ["main"]

#: Exit codes: 0 answered and ended normally; 1 the call failed; 2 usage; 3 the daemon refused
#: or could not be reached.
EXIT_OK, EXIT_CALL_FAILED, EXIT_USAGE, EXIT_DAEMON = 0, 1, 2, 3
#: Causes of a call.ended that count as "answered and ended normally".
NORMAL_CAUSES = frozenset(
    {"local_hangup", "remote_hangup", "max_duration", "app_done", "transferred"}
)
CONNECT_RETRIES = 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_DAEMON) -> None:
        super().__init__(message)
        self.code = code


def default_socket() -> Path:
    env = os.environ.get("GOSIPD_SOCKET")
    if env:
        return Path(env)
    return Config().resolved_socket_path()


class Connection:
    """One control connection: send a request, read JSON lines back."""

    def __init__(self, path: Path, timeout: float | None = 10.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            for _ in range(200):
                try:
                    self.sock.connect(str(path))
                    break
                except BlockingIOError:  # the listen backlog is full for a moment
                    time.sleep(0.01)
            else:
                raise CliError(f"gosipd at {path} is not accepting connections")
        except FileNotFoundError:
            raise CliError(f"no gosipd listening at {path} (is it running? see --socket)") from None
        except PermissionError:
            raise CliError(f"permission denied on {path} (are you in the gosipd group?)") from None
        except OSError as exc:
            raise CliError(f"cannot connect to {path}: {exc.strerror}") from None
        self._buffer = b""

    def send(self, request: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(request).encode() + b"\n")

    def lines(self) -> Iterator[dict[str, Any]]:
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise CliError("gosipd did not answer in time") from None
            if not data:
                return
            self._buffer += data

    def close(self) -> None:
        self.sock.close()


def request(
    path: Path, message: dict[str, Any], timeout: float | None = 10.0
) -> tuple[dict[str, Any], Connection]:
    """Send one request and return its reply (and the connection, for what follows).

    A connection closed before any reply means the request was never read (the
    supervisor was re-executing for an upgrade): it is safe to send it again.
    """
    for attempt in range(CONNECT_RETRIES):
        conn = Connection(path, timeout)
        try:
            conn.send(message)
            for reply in conn.lines():
                if "ok" in reply:
                    return reply, conn
        except (BrokenPipeError, ConnectionResetError):
            pass
        conn.close()
        time.sleep(0.1 * (attempt + 1))
    raise CliError("gosipd closed the connection without answering")


def _check(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        error = reply.get("error") or {}
        field = f" ({error['field']})" if error.get("field") else ""
        raise CliError(f"{error.get('code', 'error')}: {error.get('message', 'refused')}{field}")
    return reply


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj), flush=True)


def describe(event: dict[str, Any]) -> str:
    """One human line for a call event."""
    name = str(event.get("event", "?"))
    short = name.removeprefix("call.").replace("_", " ")
    match name:
        case "call.ringing" | "call.early_media" | "call.trying":
            return f"{short} ({event.get('sip_status', '')})".replace(" ()", "")
        case "call.answered":
            return f"answered after {event.get('setup_ms', '?')} ms"
        case "call.dtmf":
            return f"dtmf {event.get('digit')} ({event.get('duration_ms', '?')} ms)"
        case "locate.failover":
            return f"failover from {event.get('target')}: {event.get('reason')}"
        case "locate.target":
            return f"trying {event.get('target')}"
        case "call.ended":
            status = event.get("sip_status")
            reason = event.get("reason")
            return (
                f"ended: {event.get('cause')}"
                + (f" (SIP {status})" if status else "")
                + (f": {reason}" if reason else "")
            )
    details = {k: v for k, v in event.items() if k not in ("event", "call", "ts")}
    return f"{short} {json.dumps(details)}" if details else short


def summary(event: dict[str, Any]) -> str:
    media = event.get("media") or {}
    parts = [
        f"cause {event.get('cause')}",
        f"SIP {event.get('sip_status')}" if event.get("sip_status") else None,
        f"duration {event.get('duration_s', 0):.1f} s"
        if event.get("duration_s") is not None
        else None,
        f"setup {event.get('setup_ms')} ms" if event.get("setup_ms") is not None else None,
    ]
    if media and (media.get("packets_sent") or media.get("packets_received")):
        parts.append(
            f"packets {media.get('packets_sent', 0)} sent / {media.get('packets_received', 0)}"
            f" received, {media.get('packets_lost', 0)} lost, jitter {media.get('jitter_ms', 0)}"
            f" ms, MOS {media.get('mos', '-')}"
        )
    return "; ".join(p for p in parts if p)


def follow_call(conn: Connection, as_json: bool, call_id: str) -> int:
    """Print events until call.ended; the exit code says how the call went."""
    conn.sock.settimeout(None)
    start = time.monotonic()
    for event in conn.lines():
        if "event" not in event:
            continue
        if as_json:
            _print(event, True)
        else:
            print(f"[{time.monotonic() - start:7.3f}] {call_id} {describe(event)}", flush=True)
        if event.get("event") == "call.ended":
            if not as_json:
                print(f"summary: {summary(event)}", flush=True)
            answered = event.get("answered", event.get("cause") in NORMAL_CAUSES)
            if answered and event.get("cause") in NORMAL_CAUSES:
                return EXIT_OK
            status = event.get("sip_status")
            reason = event.get("reason")
            print(
                f"gosipctl: call {call_id} {event.get('cause')}"
                + (f" with SIP {status}" if status else "")
                + (f": {reason}" if reason else ""),
                file=sys.stderr,
            )
            return EXIT_CALL_FAILED
    print(f"gosipctl: the connection closed before call {call_id} ended", file=sys.stderr)
    return EXIT_CALL_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gosipctl", description="Place, watch and control calls on a running gosipd."
    )
    parser.add_argument(
        "--socket",
        type=Path,
        help="control socket (default: $GOSIPD_SOCKET, else the runtime dir's control.sock)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines, not text")
    # the same two options after the command too (gosipctl dial X --json)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_sub_parser(common)
    )

    dial = commands.add_parser("dial", help="place a call and follow it to the end")
    dial.add_argument("target", help="a SIP URI, or a number for the configured trunk")
    dial.add_argument("--from", dest="from_", metavar="URI", help="the From identity")
    dial.add_argument("--app", help="the call app, NAME[:ARG] (default: echo)")
    dial.add_argument("--ring-timeout", type=float, metavar="S")
    dial.add_argument("--max-duration", type=float, metavar="S")
    dial.add_argument("--header", action="append", default=[], metavar="'X-Foo: bar'")
    dial.add_argument("--srtp", choices=SRTP_POLICIES, help="SRTP for this call ([rtp] srtp)")
    dial.add_argument("--no-wait", action="store_true", help="print the call id and return")

    commands.add_parser("calls", help="list the calls in progress")
    for name, text in (
        ("show", "one call's state"),
        ("hangup", "end a call"),
        ("events", "stream a call's events (all calls' without an id)"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("call", nargs="?" if name == "events" else None)
    transfer = commands.add_parser("transfer", help="ask the far end to call someone else")
    transfer.add_argument("call")
    transfer.add_argument("to", help="a SIP URI, or a number for the trunk")
    dtmf = commands.add_parser("dtmf", help="send DTMF digits on a call")
    dtmf.add_argument("call")
    dtmf.add_argument("digits")
    play = commands.add_parser("play", help="play a WAV file into a call")
    play.add_argument("call")
    play.add_argument("file", help="a WAV file, relative to the daemon's [files] directory")
    record = commands.add_parser("record", help="record a call's audio into a WAV file")
    record.add_argument("call")
    record.add_argument(
        "file", help="a new file, relative to the daemon's [files] directory (never replaced)"
    )
    record.add_argument("--stereo", action="store_true", help="what we sent on the right")
    commands.add_parser("status", help="the daemon's state and counters")
    drain = commands.add_parser("drain", help="take no new calls; exit when the last one ends")
    drain.add_argument("--deadline", type=float, metavar="S", help="hang up what is left after S")
    drain.add_argument("--wait", action="store_true", help="return when the host is empty")
    commands.add_parser("undrain", help="take new calls again")
    commands.add_parser("upgrade", help="re-exec the supervisor from the installed code")
    return parser


def _sub_parser(common: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    class SubParser(argparse.ArgumentParser):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("parents", [common])
            super().__init__(**kwargs)

    return SubParser


def run(args: argparse.Namespace) -> int:
    path = args.socket or default_socket()
    as_json = args.json
    match args.command:
        case "dial":
            message: dict[str, Any] = {
                "id": 1,
                "op": "dial",
                "to": args.target,
                "wait": not args.no_wait,
            }
            if args.from_:
                message["from"] = args.from_
            if args.app:
                message["app"] = args.app
            if args.ring_timeout is not None:
                message["ring_timeout"] = args.ring_timeout
            if args.max_duration is not None:
                message["max_duration"] = args.max_duration
            if args.header:
                message["headers"] = args.header
            if args.srtp:
                message["srtp"] = args.srtp
            reply, conn = request(path, message)
            _check(reply)
            call_id = str(reply.get("call"))
            if args.no_wait:
                _print(reply, as_json) if as_json else print(call_id)
                return EXIT_OK
            if not as_json:
                print(f"call {call_id} placed to {args.target}", flush=True)
            return follow_call(conn, as_json, call_id)
        case "events":
            message = {"id": 1, "op": "subscribe"}
            if args.call:
                message["call"] = args.call
            reply, conn = request(path, message)
            _check(reply)
            conn.sock.settimeout(None)
            for event in conn.lines():
                if as_json:
                    _print(event, True)
                else:
                    print(f"{event.get('call', '-')} {describe(event)}", flush=True)
            return EXIT_OK
        case "drain":
            message = {"id": 1, "op": "drain", "wait": bool(args.wait)}
            if args.deadline is not None:
                message["deadline"] = args.deadline
            reply, conn = request(path, message, timeout=None if args.wait else 10.0)
            _check(reply)
            if as_json:
                _print(reply, True)
            else:
                print(f"draining; {reply.get('calls', 0)} calls in progress")
            if args.wait and reply.get("calls"):
                for event in conn.lines():
                    if event.get("event") == "supervisor.drained":
                        print("drained") if not as_json else _print(event, True)
                        break
            return EXIT_OK
        case None:
            raise CliError("no command given (try --help)", EXIT_USAGE)
        case command:
            message = {"id": 1, "op": command}
            for key in ("call", "digits", "to"):
                if getattr(args, key, None):
                    message[key] = getattr(args, key)
            if command in ("play", "record"):
                message["file"] = args.file  # the daemon resolves it in its files directory
            if command == "record" and args.stereo:
                message["stereo"] = True
            reply, _ = request(path, message)
            _check(reply)
            if as_json:
                _print(reply, True)
            else:
                print(_human_reply(command, reply))
            return EXIT_OK


def _human_reply(command: str, reply: dict[str, Any]) -> str:
    body = {k: v for k, v in reply.items() if k not in ("id", "ok")}
    if command == "calls":
        calls = body.get("calls", [])
        if not calls:
            return "no calls in progress"
        return "\n".join(
            f"{c['call']}  pid {c.get('pid')}  {c.get('direction')}  {c.get('target')}"
            f"  {c.get('age_s', 0):.1f} s"
            for c in calls
        )
    if not body:
        return "ok"
    return "\n".join(f"{key}: {json.dumps(value)}" for key, value in body.items())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        return run(args)
    except CliError as exc:
        print(f"gosipctl: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
