"""A far end for the media tests: our own media session, in its own process.

    python -m tests.media.far_end MODE REMOTE_PORT [ARGS]

Prints "port N" (its RTP port) first, then what it observed, one item a line.

- ``dtmf-listen SECONDS [inband]``: print each digit received as "digit D MS SOURCE".
- ``dtmf-send DIGITS [inband]``: send the digits, print "sent", wait for the echo of time.
- ``tone HZ SECONDS``: play a tone to the remote, print "done".
"""

from __future__ import annotations

import socket
import sys
import time

from gosipd import _dsp
from gosipd.media import DtmfReceived, DtmfSent, MediaSession, PlaybackDrained
from gosipd.sdp import NegotiatedMedia


def main() -> None:
    mode, remote_port, *args = sys.argv[1:]
    inband = "inband" in args
    te = None if inband else 101
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    media = NegotiatedMedia(
        "127.0.0.1", int(remote_port), "127.0.0.1", int(remote_port) + 1, False, "PCMU", 0,
        te, te, ((0, "PCMU"),), 20, "sendrecv",
    )  # fmt: skip
    session = MediaSession(sock, media, media_timeout=0)
    print(f"port {sock.getsockname()[1]}", flush=True)
    session.start()
    if mode == "dtmf-listen":
        deadline = time.monotonic() + float(args[0])
        while time.monotonic() < deadline:
            for event in session.process():
                if isinstance(event, DtmfReceived):
                    print(f"digit {event.digit} {event.duration_ms} {event.source}", flush=True)
            time.sleep(0.01)
    elif mode == "dtmf-send":
        time.sleep(0.2)
        session.send_dtmf(args[0])
        done = False
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            done = any(isinstance(e, DtmfSent) for e in session.process())
            time.sleep(0.01)
        print("sent" if done else "timeout", flush=True)
        time.sleep(0.3)
    elif mode == "tone":
        session.play(_dsp.ToneGenerator(float(args[0]), -10.0).frame(int(8000 * float(args[1]))))
        deadline = time.monotonic() + float(args[1]) + 5
        done = False
        while not done and time.monotonic() < deadline:
            done = any(isinstance(e, PlaybackDrained) for e in session.process())
            time.sleep(0.01)
        print("done" if done else "timeout", flush=True)
    session.close()


if __name__ == "__main__":
    main()
