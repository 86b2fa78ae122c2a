"""``stream:wss://host/path [profile=twilio|binary] [on_error=hangup|continue] [queue_s=10]
[param.NAME=VALUE ...]``: connect the call to a WebSocket server for the rest of the call.

The far end's audio goes to the server as it arrives (after the jitter buffer), the
server's audio is paced onto the call (``gosipd.streams.Player``), DTMF and marks go
both ways; see docs/streams.md for both profiles. What happens to the stream is told
by ``call.stream`` events (``state``: connected, backpressure, bad_message, failed).
When the stream fails or the server closes it, the call hangs up with the cause
``stream_failed`` unless ``on_error=continue`` (or ``[stream] on_error``) says to go
on without it. Headers for a server (a bearer token) come only from
``[stream.headers."HOST"]``, only to that host, and are never logged.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio

from gosipd.call import Call, CallError
from gosipd.streams import (
    MAX_MESSAGE_BYTES,
    Clear,
    Hangup,
    Mark,
    Play,
    Player,
    Profile,
    SendDtmf,
    StreamOptions,
    StreamProtocolError,
    Transfer,
    make_profile,
    parse_stream_arg,
    public_url,
)
from gosipd.websocket import Closed, HandshakeFailed, Rejected, WebSocket, handshake

#: Messages waiting for a server that reads slower than real time (5 s of media): the
#: oldest media is dropped beyond it, so a stalled server never stalls the call.
OUTBOX_MEDIA = 250
#: How long the ``stop`` message and what is queued before it may take at the end.
CLOSING_S = 1.0
#: The server's audio is handed to the call as each 20 ms of the far end's arrives
#: (one wakeup does both); after this long without any (silence suppressed, hold), a
#: timer does it, well inside the 60 ms the call is given ahead (``Player``).
FEED_GAP_S = 0.03


async def run(call: Call) -> None:
    try:
        options = parse_stream_arg(call.app_arg, on_error=call.config.stream.on_error)
    except ValueError as exc:
        raise CallError(str(exc)) from None
    await stream_call(call, options)


async def stream_call(call: Call, options: StreamOptions) -> None:
    """Stream ``call`` as ``options`` say until it ends (or the stream fails; then
    ``on_error``). The app's body, and the ``stream`` control op's beside any app."""
    config = call.config.stream
    where = public_url(options.url)
    profile = make_profile(
        options.profile, call.id, f"MZ{secrets.token_hex(16)}", options.parameters, options.rate
    )
    headers = [(k.encode(), v.encode()) for k, v in config.headers.get(options.host, {}).items()]
    context = None
    if options.url.lower().startswith("wss:"):
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    reason: str | None
    try:
        async with _connect(options.url, context, headers, config.connect_timeout_s) as ws:
            call.emit("call.stream", state="connected", url=where, profile=profile.name)
            reason = await _stream(call, ws, profile, options)
    except Exception as exc:
        reason = _failure(exc, config.connect_timeout_s)
        if reason is None:
            raise
    if call.ended:
        return  # call.ended is the last word (the server got its "stop")
    call.emit("call.stream", state="failed", url=where, reason=reason or "the stream ended")
    if options.on_error == "hangup":
        await call.hangup(cause="stream_failed")
    else:
        await call.wait_ended()


class ConnectTimeout(Exception):
    """TCP, TLS and the upgrade together took longer than ``[stream] connect_timeout``."""


@asynccontextmanager
async def _connect(
    url: str, context: ssl.SSLContext | None, headers: list[tuple[bytes, bytes]], timeout: float
) -> AsyncIterator[WebSocket]:
    """A WebSocket to ``url``: TCP, then TLS (its handshake done here, so a certificate
    that does not verify fails at once and says so), then the upgrade, all within
    ``timeout`` (``ConnectTimeout`` beyond it); closed in at most ``CLOSING_S``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if context is not None else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    named = f"[{host}]" if ":" in host else host
    host_header = named if parts.port is None else f"{named}:{parts.port}"
    with trio.move_on_after(timeout) as connecting:
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        stream = await trio.open_tcp_stream(host, port)
        if context is not None:
            stream = trio.SSLStream(stream, context, server_hostname=host)
            try:
                await stream.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        ws = await handshake(
            stream, host_header, resource, headers=headers, max_message_size=MAX_MESSAGE_BYTES
        )
    if connecting.cancelled_caught:
        raise ConnectTimeout(timeout)
    async with ws.running(close_timeout=CLOSING_S):
        yield ws


def _failure(exc: BaseException, timeout: float) -> str | None:
    """Why the stream failed, for the ``call.stream`` event; None for an exception that
    is no stream failure (a bug: the call ends with ``app_error``)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # from the connection's nursery
    if isinstance(exc, ConnectTimeout):
        return f"no connection in {timeout:g} s"
    if isinstance(exc, Rejected):
        return f"the server refused the WebSocket: HTTP {exc.status_code}"
    if isinstance(exc, HandshakeFailed):
        return f"WebSocket handshake failed: {exc}"
    if isinstance(exc, Closed):
        return _closed_reason(exc)
    if isinstance(exc, trio.BrokenResourceError | OSError):
        return _connect_failure(exc)
    return None


def _closed_reason(exc: Closed) -> str:
    return f"the server closed the stream: {exc}" if exc.remote else f"the stream failed: {exc}"


def _connect_failure(exc: BaseException) -> str:
    """Why the connection failed: the first socket or TLS error in what was raised
    (trio wraps TLS's in a BrokenResourceError)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return f"WebSocket handshake failed: {exc.__class__.__name__}"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed: {cause.reason or cause}"
    return f"cannot connect: {cause.strerror or cause}"


class _Outbox:
    """What we send, in order, without ever waiting on the server: a message goes out
    at once when nothing waits before it (``WebSocket.send`` writes it in this task);
    while the socket is full, messages wait here, and media beyond ``OUTBOX_MEDIA``
    waiting messages drops the oldest (counted). ``ws`` None: nothing is sent yet."""

    def __init__(self, ws: WebSocket | None = None) -> None:
        self._ws = ws
        self._messages: deque[tuple[str | bytes, bool]] = deque()
        self._media = 0
        self._ready = trio.Event()
        self.dropped = 0

    def put(self, message: str | bytes, *, media: bool = False) -> None:
        ws = self._ws
        if not self._messages and ws is not None and ws.idle:
            with contextlib.suppress(Closed):  # the server went: the downlink says why
                ws.send(message)
            return
        self._messages.append((message, media))
        self._media += media
        while self._media > OUTBOX_MEDIA:
            for i, (_, is_media) in enumerate(self._messages):
                if is_media:
                    del self._messages[i]
                    self._media -= 1
                    self.dropped += 1
                    break
        self._ready.set()

    async def send_all(self) -> None:
        """Send what waits, as the socket drains (the task beside the stream's others)."""
        while True:
            await self.flush()
            self._ready = trio.Event()
            await self._ready.wait()

    async def flush(self) -> None:
        """Until everything put has reached the kernel (``Closed`` if it never will)."""
        assert self._ws is not None
        while True:
            await self._ws.wait_idle()
            if not self._messages:
                return
            message, media = self._messages.popleft()
            self._media -= media
            self._ws.send(message)


async def _stream(
    call: Call, ws: WebSocket, profile: Profile, options: StreamOptions
) -> str | None:
    """Run the stream until the call ends (None) or the server ends it (why)."""
    outbox = _Outbox(ws)
    player = Player(options.queue_s)
    outcome: list[str] = []
    for message in profile.opening():
        outbox.put(message)

    gap = trio.CancelScope()

    def feed() -> None:
        """Hand the call what is due of the server's audio; send the marks played out."""
        gap.deadline = trio.current_time() + FEED_GAP_S
        pcm, due = player.feed(call.playback_queued)
        if pcm:
            with contextlib.suppress(CallError):  # the media stopped: the call is ending
                call.write(pcm)
        for name in due:
            outbox.put(profile.mark(name))

    def heard(frame: bytes) -> None:
        outbox.put(profile.media(frame), media=True)
        feed()

    async def uplink() -> None:
        with call.listen_audio(heard):  # in the call's media task: no task to wake
            await call.wait_ended()
        nursery.cancel_scope.cancel()

    async def digits() -> None:
        while digit := await call.collect_dtmf(1):
            outbox.put(profile.dtmf(digit))

    async def pace() -> None:
        """Feed the call when the far end's audio does not (its deadline moves on with
        every frame, so while audio flows this task never wakes)."""
        nonlocal gap
        while True:
            with gap:
                await trio.sleep_forever()
            gap = trio.CancelScope()
            feed()

    async def downlink() -> None:
        bad = 0
        warned_full = False
        while True:
            try:
                message = await ws.receive()
            except Closed as exc:
                outcome.append(_closed_reason(exc))
                nursery.cancel_scope.cancel()
                return
            try:
                commands = profile.receive(message)
            except StreamProtocolError as exc:
                bad += 1
                if bad == 1 or bad % 100 == 0:  # the first, then one line per hundred
                    call.emit("call.stream", state="bad_message", reason=str(exc), count=bad)
                continue
            for command in commands:
                if isinstance(command, Play | Mark):
                    player.add(command)
                    feed()  # the first of it plays at the next tick
                    if player.overflowed and not warned_full:
                        call.emit(
                            "call.stream",
                            state="backpressure",
                            reason=f"more than {options.queue_s:g} s of audio queued: "
                            "the oldest is dropped",
                        )
                    warned_full = player.overflowed
                elif isinstance(command, Clear):
                    for name in player.clear():
                        outbox.put(profile.mark(name))
                    await call.stop_playback()
                elif isinstance(command, SendDtmf):
                    try:
                        await call.send_dtmf(command.digits)
                    except CallError as exc:
                        call.emit("call.stream", state="bad_message", reason=str(exc))
                elif isinstance(command, Hangup):
                    outcome.append("hangup")
                    await call.hangup()
                elif isinstance(command, Transfer):
                    # its outcome comes as call.transfer events; the audio goes on meanwhile
                    nursery.start_soon(_transfer, call, command.to)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.send_all)
            nursery.start_soon(uplink)
            nursery.start_soon(digits)
            nursery.start_soon(pace)
            nursery.start_soon(downlink)
    finally:
        if not outcome or outcome[0] == "hangup":
            # the call ended (or is being torn down): say so, after what is queued
            await _close(outbox, profile)
    if outcome and outcome[0] != "hangup":
        return outcome[0]
    if outbox.dropped and not call.ended:
        call.emit(
            "call.stream",
            state="backpressure",
            reason=f"the server read too slowly: {outbox.dropped} media messages dropped",
        )
    return None


async def _close(outbox: _Outbox, profile: Profile) -> None:
    """The ``stop`` message, after what is queued, in at most ``CLOSING_S`` even while
    the call's process is being cancelled."""
    outbox.put(profile.closing())
    # (Closed: the server went first)
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(CLOSING_S),
        contextlib.suppress(Closed),
    ):
        await outbox.flush()


async def _transfer(call: Call, to: str) -> None:
    try:
        await call.transfer(to)
    except CallError as exc:
        if exc.code != "transfer_failed":  # a failure itself is told by call.transfer
            call.emit("call.stream", state="bad_message", reason=f"transfer: {exc}")
