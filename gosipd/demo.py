"""``make run``: a real call over loopback through a real gosipd, on the default configuration.

It starts the supervisor with a local state directory and an inbound SIP
listener on 127.0.0.1 that answers with the ``ivr`` app, then dials
``sip:ivr@127.0.0.1:PORT`` through the control socket, exactly as
``gosipctl dial`` would: the outbound call runs the ``demo`` app (records
both sides, keys in DTMF), the inbound call plays a prompt, collects the
digits over RFC 4733 and reads them back as tones. Both are forked workers;
SIP and RTP cross the loopback. The events print as they happen, then a
summary with the media figures, the recording's path, and the digits found
in the recording by the in-band DTMF detector. The daemon is drained and
stops when the call is over.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

from gosipd import _dsp
from gosipd.cli import Connection, describe, summary

__all__ = ["main"]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(state: Path, port: int) -> Path:
    config = state / "gosipd.toml"
    config.write_text(
        "\n".join(
            [
                "[daemon]",
                f'runtime_dir = "{state / "run"}"',
                f'socket = "{state / "control.sock"}"',
                "[files]",  # the recording's name is relative to it
                f'directory = "{state}"',
                "[inbound]",
                f'listen = "127.0.0.1:{port}"',
                "ring_ms = 300",
                "[inbound.routes]",
                '"ivr" = "ivr"',
                '"*" = "echo"',
                "",
            ]
        )
    )
    return config


def _wait_for_socket(path: Path, daemon: subprocess.Popen[bytes], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"gosipd exited early with status {daemon.returncode}")
        if path.exists():
            try:
                Connection(path, timeout=1).close()
                return
            except Exception:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"gosipd did not open {path} in {seconds} s")


def detect_digits(path: Path, channel: int = 0) -> str:
    """DTMF digits found in one channel of a recording (in-band, Goertzel)."""
    import numpy as np

    with wave.open(str(path), "rb") as wav:
        channels = wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    samples = frames.reshape(-1, channels)[:, channel].copy()
    detector = _dsp.DtmfDetector()
    found = detector.feed(samples.tobytes()) + detector.flush()
    return "".join(digit for digit, _ in found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gosipd.demo", description=__doc__)
    parser.add_argument("--state", type=Path, default=Path("out/demo"), help="state directory")
    args = parser.parse_args(argv)
    state = args.state.resolve()
    (state / "run").mkdir(parents=True, exist_ok=True)
    port = _free_udp_port()
    config = _write_config(state, port)
    recording = state / "call.wav"
    recording.unlink(missing_ok=True)
    log_path = state / "gosipd.log"
    print(f"starting gosipd (state in {state}, SIP on 127.0.0.1:{port}, log {log_path})")
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-P", "-m", "gosipd.supervisor", "--config", str(config)],
            stdout=log,
            stderr=log,
        )
    control = state / "control.sock"
    code = 1
    try:
        _wait_for_socket(control, daemon)
        target = f"sip:ivr@127.0.0.1:{port}"
        conn = Connection(control, timeout=30)
        conn.send(
            {
                "id": 1,
                "op": "dial",
                "to": target,
                "app": f"demo:{recording.name}",
                "max_duration": 30,
            }
        )
        start = time.monotonic()
        ended: dict[str, object] | None = None
        for message in conn.lines():
            if message.get("ok") is False:
                print(f"dial refused: {message['error']['message']}", file=sys.stderr)
                return 1
            if "event" not in message:
                print(f"dialling {target}: call {message.get('call')}")
                continue
            print(f"[{time.monotonic() - start:6.3f}] {describe(message)}", flush=True)
            if message["event"] == "call.ended":
                ended = message
                break
        conn.close()
        if ended is None:
            print("the call did not end cleanly", file=sys.stderr)
            return 1
        print(f"summary: {summary(ended)}")
        if recording.exists():
            heard = detect_digits(recording, channel=0)
            sent = detect_digits(recording, channel=1)
            print(f"recording: {recording} (left: the IVR, right: us)")
            print(
                f"DTMF we sent (RFC 4733) the IVR read back as tones: {heard or '(none)'}"
                f"; in-band on our side: {sent or '(none, sent out of band)'}"
            )
        code = 0 if ended.get("answered") else 1
    finally:
        stop = Connection(control, timeout=10) if control.exists() else None
        if stop is not None:
            stop.send({"id": 2, "op": "drain", "deadline": 5})
            stop.close()
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.terminate()
            daemon.wait(timeout=5)
        print(f"gosipd stopped (status {daemon.returncode})")
    return code


if __name__ == "__main__":
    sys.exit(main())
