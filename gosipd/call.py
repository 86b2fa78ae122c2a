"""One call in one trio process: the glue between SIP, media and the app, and the Call API.

``CallRuntime`` owns everything a call needs and nothing else: its SIP
socket (``locate.UdpEndpoint``, which also reports ICMP errors), the
sans-I/O SIP engine (``sip.ua.UserAgent``), the RFC 3263 failover walk
(``locate.Failover``), the media session (``media.MediaSession``, whose
paced RTP loop is a native thread) and the app. The trio layer is thin, as
the design asks: one task reads the socket and feeds the engine, one
sleeps until the earliest timer (engine, failover, ring timeout, max
duration), and after each step ``_pump`` sends what the engine queued and
acts on its events.

``Call`` is what an app sees (see ``gosipd.apps``)::

    async def app(call: gosipd.Call) -> None:
        await call.play("welcome.wav")  # relative to [files] directory
        digits = await call.collect_dtmf(max_digits=4, timeout=10, terminator="#")
        async with call.record("caller.wav", stereo=True):
            await call.play_tones("1209+697:100")
        async for frame in call.audio():
            ...
        await call.hangup()

An app that raises ends its call with a BYE and the cause ``app_error``. Files an
app plays or records are named relative to ``[files] directory`` and stay inside it
(``gosipd.files``): app arguments come from dial requests, which are untrusted. A
recording that cannot be written (the disk is full) ends its call with the cause
``record_failed``, leaving a WAV whose header matches what reached the disk.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import ipaddress
import json
import math
import os
import pkgutil
import random
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from gosipd import __version__, files, media, passthrough, sdes, sdp
from gosipd import apps as apps_package
from gosipd.audio import (
    MAX_FILE_BYTES,
    AudioError,
    RecordingError,
    WavWriter,
    load_wav_data,
    tones_from_spec,
)
from gosipd.bridge import bridge_calls
from gosipd.config import Config, parse_hostport
from gosipd.connections import RelayEndpoint, StreamEndpoint, client_tls_context
from gosipd.control import ControlError, ControlRequest, ok_reply
from gosipd.locate import (
    Datagram,
    Failover,
    FailoverPolicy,
    IcmpError,
    LocateError,
    Locator,
    Reason,
    ResolverConfig,
    Target,
    Transport,
    UdpEndpoint,
    Verdict,
)
from gosipd.log import get_logger
from gosipd.networks import Networks, local_address_towards
from gosipd.packet import frame_datagram, unframe_datagram
from gosipd.paths import import_user_module
from gosipd.publication import CallPublication, EventBus, serve_stream
from gosipd.referral import REFERRER_BYE_WAIT_S, Leg, Referral, refused_target
from gosipd.sip import URI, Request, SIPParseError, parse
from gosipd.sip import events as ev
from gosipd.sip.digest import Credentials
from gosipd.sip.timers import Timers
from gosipd.sip.transaction import ProtocolError
from gosipd.sip.ua import CallState, UAConfig, UserAgent
from gosipd.trunk import DialError, DialTarget, caller_identity, dial_target, host_key

__all__ = ["Call", "CallError", "CallRuntime", "CallSpec", "dtmf_from_info", "resolve_app"]

#: How long a finished call keeps answering retransmissions before its process exits.
LINGER_S = 2.0
#: How long a hangup waits for the BYE's answer before the call counts as ended anyway
#: (the far end may have vanished; the BYE is still retransmitted while the worker lingers).
BYE_ANSWER_WAIT_S = 4.0
#: How long the dial client may take to read the call's last events.
CLIENT_FLUSH_S = 5.0
#: How long a call's subscribers may take to be sent its last events before it exits.
SUBSCRIBER_FLUSH_S = 1.0
#: Received audio frames an ``audio()`` reader may fall behind by before old ones are dropped.
AUDIO_QUEUE_FRAMES = 250
DTMF_QUEUE = 64
#: Bodies we take: SDP, and the DTMF bodies of SIP INFO (old trunks send digits that way).
ACCEPTED_BODIES = ("application/sdp", "application/dtmf-relay", "application/dtmf")

App = Callable[["Call"], Awaitable[None]]


class CallError(Exception):
    """A call-level failure an app can catch (the call ended, a file is unusable...).

    ``code`` is the control protocol's error code for it: ``forbidden_path`` for a
    path outside the files directory, ``bad_file`` for a file that cannot be used."""

    def __init__(self, message: str, *, code: str = "bad_state") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class CallSpec:
    """What the supervisor (or a test) asks of one worker."""

    call: str
    direction: str = "outbound"
    to: str = ""
    from_: str | None = None
    app: str | None = None
    ring_timeout: float | None = None
    max_duration: float | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: SRTP for this call ("off", "offer", "required"); None: [rtp] srtp.
    srtp: str | None = None
    datagram: bytes | None = None  # inbound: the INVITE
    source: tuple[str, int] | None = None  # inbound: where it came from
    local_host: str | None = None  # inbound: the address it arrived on
    #: inbound: the supervisor's relay socket; responses to what reached us through its
    #: public socket go out through it, from the address the caller sent to (RFC 3581)
    answer_via: str | None = None
    #: inbound: "udp", or "tcp"/"tls" when the supervisor holds the caller's connection;
    #: then everything goes through ``answer_via`` and our Via and Contact name the
    #: supervisor's listener, ``local_port``
    transport: str = "udp"
    local_port: int | None = None
    reply_id: Any = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallSpec:
        datagram = data.get("datagram")
        source = data.get("source")
        return cls(
            call=str(data["call"]),
            direction=str(data.get("direction", "outbound")),
            to=str(data.get("to", "")),
            from_=data.get("from"),
            app=data.get("app"),
            ring_timeout=data.get("ring_timeout"),
            max_duration=data.get("max_duration"),
            headers=[(str(n), str(v)) for n, v in data.get("headers", [])],
            srtp=data.get("srtp"),
            datagram=bytes.fromhex(datagram) if isinstance(datagram, str) else datagram,
            source=(str(source[0]), int(source[1])) if source else None,
            local_host=data.get("local_host"),
            answer_via=data.get("answer_via"),
            transport=str(data.get("transport") or "udp"),
            local_port=int(data["local_port"]) if data.get("local_port") else None,
            reply_id=data.get("reply_id"),
        )


#: RFC 3261 §18.1.1: larger requests go over TCP when the path MTU is unknown.
MAX_UDP_REQUEST = 1300


def _reason_phrase(exc: Exception) -> str:
    """The 488's reason phrase: says when SRTP is what failed (details go to our log)."""
    if isinstance(exc, sdp.SrtpRefused):
        return "Not Acceptable Here (SRTP)"
    return "Not Acceptable Here"


def resolve_app(name: str | None) -> tuple[App, str | None]:
    """The app a name means, and its argument (None when the name has none).

    ``echo``, ``play:FILE``, ``tone:HZ``... name a built-in (``gosipd.apps.<name>.run``
    with the rest as its argument); anything else is ``module:function[:ARG]`` (or
    ``module`` for its ``run``). The function must be ``async def app(call)``.
    """
    name = (name or "echo").strip()
    head, _, rest = name.partition(":")
    if head.isidentifier():
        builtin = f"{apps_package.__name__}.{head}"
        try:
            # relative to the installed gosipd.apps package, whatever sys.path holds
            return _async_app(name, importlib.import_module(builtin).run), rest or None
        except ModuleNotFoundError as exc:
            if exc.name != builtin:
                raise CallError(f"built-in app {head!r} cannot load: {exc}") from None
        except AttributeError:
            raise CallError(f"built-in app {head!r} has no run()") from None
    function, _, arg = rest.partition(":")
    try:
        module = import_user_module(head)  # never from the working directory
    except ImportError as exc:
        known = sorted(m.name for m in pkgutil.iter_modules(apps_package.__path__))
        raise CallError(
            f"no app {name!r}: no built-in {head!r} (built-ins: {', '.join(known)}) "
            f"and no module to import ({exc})"
        ) from None
    try:
        app = getattr(module, function or "run")
    except AttributeError:
        raise CallError(f"no app {name!r}: {head} has no {function or 'run'!r}") from None
    return _async_app(name, app), arg or None


def _async_app(name: str, app: Any) -> App:
    call_method = getattr(app, "__call__", None)  # noqa: B004 - an instance with async __call__
    if not (inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call_method)):
        raise CallError(f"app {name!r} is not an async function (async def app(call): ...)")
    return app  # type: ignore[no-any-return]


class Call:
    """The API an app writes against (one per call; see the module docstring)."""

    def __init__(self, runtime: CallRuntime) -> None:
        self._runtime = runtime
        self.id = runtime.spec.call
        self.direction = runtime.spec.direction
        self.app_arg: str | None = None
        self._dtmf_send, self._dtmf_receive = trio.open_memory_channel[str](DTMF_QUEUE)
        self._audio_readers: list[deque[bytes]] = []
        self._audio_listeners: list[Callable[[bytes], None]] = []
        self._audio_wakeup = trio.Event()
        self._recorders: list[WavWriter] = []
        self._sent = _SentAudio()

    # --- identity ---------------------------------------------------------------------

    @property
    def remote_uri(self) -> str:
        return self._runtime.remote_uri

    @property
    def caller_name(self) -> str | None:
        """The display name of an inbound call's From (as the caller chose it)."""
        caller = self._runtime.caller
        return caller.caller_name if caller is not None else None

    @property
    def asserted_identity(self) -> str | None:
        """The P-Asserted-Identity URI of an inbound call from a trusted source
        (``[inbound] trusted_sources`` or ``allowed_sources``); None otherwise."""
        caller = self._runtime.caller
        return caller.asserted_identity if caller is not None else None

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """An inbound INVITE's headers that ``[headers] receive`` allows, in order."""
        caller = self._runtime.caller
        return caller.headers if caller is not None else ()

    def header(self, name: str) -> str | None:
        """The first allowed inbound header called ``name`` (any case), or None."""
        key = name.lower()
        return next((value for n, value in self.headers if n.lower() == key), None)

    @property
    def ended(self) -> bool:
        return self._runtime.ended.is_set()

    # --- audio out -----------------------------------------------------------------------

    async def play(self, source: str | Path | bytes, *, wait: bool = True) -> None:
        """Play a WAV file (any rate and channel count, named relative to the files
        directory) or 8 kHz int16 PCM bytes."""
        if isinstance(source, bytes):
            pcm = source
        else:
            directory = self._runtime.config.resolved_files_directory()
            pcm = await trio.to_thread.run_sync(load_prompt, directory, str(source))
        await self._play_pcm(pcm, wait)

    async def play_tones(self, spec: str, *, wait: bool = True) -> None:
        """Tones by spec: ``"1209+697:100,0:50,440:500"`` (Hz[+Hz]:ms, 0 Hz is silence)."""
        try:
            pcm = tones_from_spec(spec)
        except AudioError as exc:
            raise CallError(str(exc)) from None
        await self._play_pcm(pcm, wait)

    def write(self, pcm: bytes) -> None:
        """Queue 8 kHz int16 PCM without waiting (echo apps, generated audio)."""
        self._queue_pcm(pcm)

    def _queue_pcm(self, pcm: bytes) -> None:
        session = self._runtime.require_media()
        try:
            session.play(pcm)
        except media.MediaError as exc:
            raise CallError(str(exc)) from None
        self._sent.queued(pcm, session.playback_queued, recording=self._stereo_recording)

    @property
    def _stereo_recording(self) -> bool:
        return any(writer.stereo for writer in self._recorders)

    async def _play_pcm(self, pcm: bytes, wait: bool) -> None:
        drained = self._runtime.playback_drained_event()
        self._queue_pcm(pcm)
        if wait:
            await drained.wait()
            self._runtime.check_alive()

    async def hold(self) -> None:
        """Put the far end on hold (a ``sendonly`` re-INVITE: we may still play to it);
        returns when it has answered. ``call.hold`` with ``by: "local"`` follows."""
        await self._runtime.reoffer_hold(True)

    async def resume(self) -> None:
        """Take the far end off hold (a ``sendrecv`` re-INVITE)."""
        await self._runtime.reoffer_hold(False)

    def status(self) -> dict[str, Any]:
        """What the ``status`` control op answers: state, remote, SIP and media figures."""
        return self._runtime.status()

    def media_statistics(self) -> dict[str, Any]:
        """The call's media figures so far (packets, loss, jitter, MOS...); empty before
        the media starts."""
        session = self._runtime.session
        return session.statistics().as_dict() if session is not None else {}

    async def stop_playback(self) -> None:
        """Drop whatever is still queued for playback (barge-in)."""
        self._runtime.require_media().stop_playback()
        self._sent.clear()

    async def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> None:
        """Send DTMF: RFC 4733 events when negotiated, else in-band tones."""
        try:
            self._runtime.require_media().send_dtmf(digits, duration_ms)
        except ValueError as exc:
            raise CallError(str(exc)) from None

    # --- audio and DTMF in -------------------------------------------------------------

    async def collect_dtmf(
        self,
        max_digits: int = 1,
        timeout: float | None = None,
        terminator: str | None = None,
        *,
        inter_digit_timeout: float | None = None,
    ) -> str:
        """Digits as they are pressed: stops at ``max_digits``, the ``terminator`` (not
        returned) or ``timeout`` (whole collection) / ``inter_digit_timeout``."""
        digits = ""
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        while len(digits) < max_digits:
            limit = deadline
            if digits and inter_digit_timeout is not None:
                limit = min(limit, trio.current_time() + inter_digit_timeout)
            with trio.move_on_at(limit):
                with contextlib.suppress(trio.EndOfChannel):
                    digit = await self._dtmf_receive.receive()
                    if terminator is not None and digit == terminator:
                        return digits
                    digits += digit
                    continue
                return digits  # the call ended
            return digits
        return digits

    async def audio(self) -> AsyncIterator[bytes]:
        """Received audio, 20 ms of 8 kHz int16 at a time, for as long as the call lasts."""
        queue: deque[bytes] = deque(maxlen=AUDIO_QUEUE_FRAMES)
        self._audio_readers.append(queue)
        self._runtime.want_audio(True)
        try:
            while True:
                while queue:
                    yield queue.popleft()
                if self.ended:
                    return
                await self._audio_wakeup.wait()
        finally:
            if queue in self._audio_readers:
                self._audio_readers.remove(queue)
            self._runtime.want_audio(self._wants_audio)

    @contextlib.contextmanager
    def listen_audio(self, listener: Callable[[bytes], None]) -> Iterator[None]:
        """Call ``listener`` with each 20 ms of received audio (8 kHz int16) as it
        arrives, in the call's own task, while the block lasts: ``audio()`` without a
        task of its own to wake, for an app that only hands frames on (it must not block)."""
        self._audio_listeners.append(listener)
        self._runtime.want_audio(True)
        try:
            yield
        finally:
            self._audio_listeners.remove(listener)
            self._runtime.want_audio(self._wants_audio)

    @property
    def _wants_audio(self) -> bool:
        return bool(self._audio_readers or self._recorders or self._audio_listeners)

    @asynccontextmanager
    async def record(self, path: str | Path, *, stereo: bool = False) -> AsyncIterator[WavWriter]:
        """Record what the far end says (and, with ``stereo``, what we sent, on the right)."""
        writer = self.start_recording(path, stereo=stereo)
        try:
            yield writer
        finally:
            if writer in self._recorders:
                self._recorders.remove(writer)
            writer.close()
            self._runtime.want_audio(self._wants_audio)

    def start_recording(self, path: str | Path, *, stereo: bool = False) -> WavWriter:
        """Record until the call ends (the ``record`` control op) into a new file, named
        relative to the files directory; an existing file is never replaced."""
        directory = self._runtime.config.resolved_files_directory()
        name = str(path)
        try:
            fd = files.create_recording(directory, name)
            writer = WavWriter(fd, directory / name, stereo=stereo)
        except files.ForbiddenPath as exc:
            raise CallError(f"record: {exc}", code="forbidden_path") from None
        except (files.FileError, AudioError) as exc:
            raise CallError(f"record: {exc}", code="bad_file") from None
        if stereo and not self._stereo_recording:
            session = self._runtime.session
            self._sent.start(session.playback_queued if session is not None else 0)
        self._recorders.append(writer)
        self._runtime.want_audio(True)
        return writer

    def _deliver_audio(self, frames: list[bytes]) -> None:
        for queue in self._audio_readers:
            queue.extend(frames)
        for listener in list(self._audio_listeners):
            try:
                for frame in frames:
                    listener(frame)
            except Exception as exc:  # an app's bug ends its call, never the process
                self._audio_listeners.remove(listener)
                self._runtime.app_failed(exc)
        if self._recorders:
            stereo = self._stereo_recording
            for frame in frames:
                sent = self._sent.take(len(frame)) if stereo else None
                for writer in list(self._recorders):
                    try:
                        writer.write(frame, sent)
                    except RecordingError as exc:
                        self._recorders.remove(writer)
                        self._runtime.recording_failed(str(exc))
        self._audio_wakeup.set()
        self._audio_wakeup = trio.Event()

    def _deliver_dtmf(self, digit: str) -> None:
        with contextlib.suppress(trio.WouldBlock):
            self._dtmf_send.send_nowait(digit)

    def _close(self) -> None:
        self._dtmf_send.close()
        self._audio_wakeup.set()
        for writer in list(self._recorders):
            writer.close()
        self._recorders.clear()

    # --- more legs ---------------------------------------------------------------------

    async def dial(
        self,
        to: str,
        *,
        from_: str | None = None,
        ring_timeout: float | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Call:
        """Place a second call from this call's process, a leg this app drives ("connect
        the caller to an agent"): the leg's Call once it is answered. Raises ``CallError``
        (code ``dial_failed``, the leg's cause in the message) if it never is. A leg ends
        when this call does; its events reach this call's subscribers as ``call.leg``."""
        return await self._runtime.dial_leg(
            to, from_=from_, ring_timeout=ring_timeout, headers=list(headers)
        )

    async def bridge(self, other: Call) -> None:
        """Connect this call and ``other`` (a leg from ``dial``): each hears the other and
        gets the other's DTMF, until either ends; the other is then hung up."""
        await bridge_calls(self, other)

    # --- ending ------------------------------------------------------------------------

    async def transfer(
        self, to: str | None = None, *, wait: bool = True, replaces: Call | str | None = None
    ) -> None:
        """Transfer: ask the far end to call ``to`` (a SIP URI, or a number for the
        trunk) instead (REFER, RFC 3515). With ``wait``, returns once the far end reports
        the target answered, and the call then ends with cause ``transferred``; raises
        ``CallError`` (code ``transfer_failed``) if the far end refuses or the target's
        call fails, and the call goes on. ``call.transfer`` events follow each step.

        Attended: ``replaces`` is another answered call (a leg from ``dial``, or the id
        of a call of this host) whose far end the far end here is to take over (RFC
        3891): its dialog goes in the Refer-To's Replaces, and ``to`` defaults to its
        far end's contact."""
        await self._runtime.transfer(to, wait=wait, replaces=replaces)

    async def hangup(self, *, cause: str = "local_hangup") -> None:
        """End the call (BYE, CANCEL or a rejection, as its state needs) and wait for it.
        ``cause`` is what ``call.ended`` says (an app's own reason: ``stream_failed``)."""
        self._runtime.hangup(cause)
        await self._runtime.ended.wait()

    # --- an app's own events ---------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        """Publish an event on the call's event stream (and log it): ``call.stream``..."""
        self._runtime.emit(event, **fields)

    @property
    def config(self) -> Config:
        """The daemon's configuration, as this call's process loaded it."""
        return self._runtime.config

    @property
    def playback_queued(self) -> int:
        """Samples queued for playback and not yet sent (0 before the media starts)."""
        session = self._runtime.session
        return session.playback_queued if session is not None else 0

    async def wait_ended(self) -> None:
        await self._runtime.ended.wait()


class _SentAudio:
    """What we queued to send, for the right channel of a stereo recording.

    The media loop sends one frame per tick and delivers one received frame per tick, so
    taking one frame of this per received frame keeps the channels in step. It holds
    only what is not yet sent (``unsent`` from the session) unless a stereo recording
    is reading it.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def start(self, unsent_samples: int) -> None:
        """A stereo recording starts: keep what is still to be sent, in order."""
        self._trim(unsent_samples)

    def queued(self, pcm: bytes, unsent_samples: int, *, recording: bool) -> None:
        self._pending += pcm
        if not recording:
            self._trim(unsent_samples)

    def take(self, size: int) -> bytes:
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        return chunk + bytes(size - len(chunk))

    def clear(self) -> None:
        self._pending.clear()

    def _trim(self, unsent_samples: int) -> None:
        keep = max(0, unsent_samples) * 2
        if len(self._pending) > keep:
            del self._pending[: len(self._pending) - keep]


DTMF_SYMBOLS = "0123456789*#ABCD"
#: RFC 4733 event codes 10 and 11 are * and #; some trunks send the code as the signal.
_INFO_EVENT_CODES = {str(code): digit for code, digit in enumerate(DTMF_SYMBOLS)}


def dtmf_from_info(content_type: str | None, body: bytes) -> str | None:
    """The digit an INFO request carries, or None when it carries none."""
    kind = (content_type or "").split(";")[0].strip().lower()
    text = body.decode("utf-8", errors="replace").strip()
    signal: str | None = None
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                signal = value.strip()
    elif kind == "application/dtmf":
        signal = text
    if not signal:
        return None
    signal = signal.upper()
    if len(signal) == 1 and signal in DTMF_SYMBOLS:
        return signal
    return _INFO_EVENT_CODES.get(signal) if signal.isdigit() else None


def load_prompt(directory: Path, name: str) -> bytes:
    """The WAV ``name`` inside the files ``directory`` as 8 kHz mono PCM, or a CallError
    (``forbidden_path`` or ``bad_file``) that says why not."""
    try:
        data = files.read_prompt(directory, name, MAX_FILE_BYTES)
        return load_wav_data(data, name)
    except files.ForbiddenPath as exc:
        raise CallError(f"play: {exc}", code="forbidden_path") from None
    except (files.FileError, AudioError) as exc:
        raise CallError(f"play: {exc}", code="bad_file") from None


def _file_field(error: CallError) -> str | None:
    return "file" if error.code in ("forbidden_path", "bad_file") else None


def _top_branch(data: bytes) -> str | None:
    """The top Via's branch of a SIP message, or None if it has none or does not parse."""
    try:
        via = parse(data).top_via
    except SIPParseError:
        return None
    return via.branch if via is not None else None


def _routable_host(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


async def _first_of(*events: trio.Event) -> None:
    """Return when any of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait_one(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait_one, event)


class CallRuntime:
    """The trio glue for one call (see the module docstring)."""

    def __init__(
        self,
        spec: CallSpec,
        config: Config,
        *,
        runtime_dir: Path | None = None,
        rng: random.Random | None = None,
        app: App | None = None,
        answer_socket: socket.socket | None = None,
        control_listener: tuple[socket.socket, Path] | None = None,
    ) -> None:
        """``app`` runs in place of ``spec.app`` (for programs that embed a call).

        ``answer_socket`` (inbound, for programs that embed a call): the socket the INVITE
        arrived on. Responses to what arrived there (the INVITE, its retransmissions, a
        CANCEL) go out through it, from the address the caller sent to, as RFC 3581 §4
        asks for callers behind NAT; the runtime owns and closes it. Under the daemon,
        ``spec.answer_via`` does the same through the supervisor, which keeps its socket
        to itself (a call holding it would keep the port from a restarted supervisor).

        ``control_listener``: the call's control socket, bound ahead of time by a warm
        spare (``publication.bind_listener``) and renamed into place when the call starts."""
        self.spec = spec
        self._app = app
        self.config = config
        self.rng = rng or random.SystemRandom()
        self.log = get_logger(call=spec.call)
        self.bus = EventBus()
        self.publication = CallPublication(
            runtime_dir or config.resolved_runtime_dir(), spec.call, prebound=control_listener
        )
        self.ended = trio.Event()
        self.call = Call(self)
        self.remote_uri = spec.to
        #: Who is calling (an inbound call, once its INVITE was read).
        self.caller: passthrough.Incoming | None = None
        #: The transfer in progress: set with (succeeded, reason) when it is over.
        self._transfer_done: trio.Event | None = None
        self._transfer_accepted: trio.Event | None = None
        self._transfer_outcome: tuple[bool, str] = (False, "")
        self.ua: UserAgent | None = None
        self.endpoint: UdpEndpoint | StreamEndpoint | RelayEndpoint | None = None
        self.session: media.MediaSession | None = None
        self.failover: Failover | None = None
        #: The offer we sent last and whose answer we await (INVITE, re-INVITE or a 200).
        self._offer: sdp.SessionDescription | None = None
        #: Our current description of the session (the base of every re-offer and answer).
        self._local_sdp: sdp.SessionDescription | None = None
        self._offer_waiters: list[trio.Event] = []
        self._offer_refusal: int | None = None
        self._rtp: tuple[socket.socket, socket.socket | None] | None = None
        self._local_ip = "127.0.0.1"
        self._wakeup = trio.Event()
        #: Set once the engine has nothing left to retransmit or absorb (``ua.finished``).
        self._quiet = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._started = 0.0
        self._answered_at: float | None = None
        self._ring_deadline = math.inf
        self._duration_deadline = math.inf
        self._cause: str | None = None
        self._sip_status: int | None = None
        self._app_started = False
        self._playback_waiters: list[trio.Event] = []
        self._locator: Locator | None = None
        #: The trunk's located addresses: the only next hops our credentials go to.
        self._trunk_addresses: frozenset[str] = frozenset()
        #: Where a 3xx may send the call under ``redirects = "trunk"``: the host the call
        #: was dialed to (names and addresses), which is the trunk for a trunk call.
        self._redirect_hosts: frozenset[str] = frozenset()
        self._media_stats: dict[str, Any] | None = None
        self._held_by_remote = False
        self._held_by_us = False
        self._bye_deadline = math.inf
        self._audio_wanted = False
        self._end_event: dict[str, Any] | None = None
        self._app_error: str | None = None
        self._icmp_reasons: dict[tuple[str, int], Reason] = {}
        self._answer_problem = "no SDP in the answer"
        self._srtp_refused = False
        self._tls_failure: str | None = None
        self._connection_failure: str | None = None
        self._answer_socket = (
            trio.socket.from_stdlib_socket(answer_socket) if answer_socket is not None else None
        )
        #: Unbound: it only sends to the supervisor's relay socket (``spec.answer_via``).
        self._relay = (
            trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
            if spec.answer_via is not None and answer_socket is None and spec.transport == "udp"
            else None
        )
        self._answers_from_public = self._answer_socket is not None or self._relay is not None
        #: Top Via branches of requests that reached us through the public socket.
        self._public_branches: set[str] = set()
        self._end_reason: str | None = None
        #: The task feeding the current dialog's engine from its endpoint.
        self._receiving: trio.CancelScope | None = None
        #: The far end's REFER we follow (its dialog beside the new one), and dialogs that
        #: are over but still answer retransmissions.
        self._referral: Referral | None = None
        self._lingering: list[Leg] = []
        #: Calls this call's app placed (``Call.dial``), run in this process.
        self._legs: list[CallRuntime] = []
        self._legs_done = 0

    # ======================================================================
    # running
    # ======================================================================

    async def run(self, client: trio.SocketStream | None = None) -> int:
        self._started = trio.current_time()
        wall_start = time.time()
        self.publication.open()
        self.publication.publish(
            call=self.spec.call,
            pid=os.getpid(),
            version=__version__,
            started=wall_start,
            direction=self.spec.direction,
            target=self.spec.to,
        )
        self.emit(
            "call.started", direction=self.spec.direction, target=self.spec.to, version=__version__
        )
        clean, exit_status = True, 0
        try:
            async with trio.open_nursery() as outer:
                # The dial client's stream outlives the call's tasks: it ends when the
                # bus closes, after the client has read everything, call.ended included.
                if client is not None:
                    outer.start_soon(self._serve_client, client)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self.publication.serve, self._control, self.bus)
                    try:
                        if self.spec.direction == "inbound":
                            await self._start_inbound()
                        else:
                            await self._start_outbound()
                    except (CallError, LocateError, OSError, sdp.SDPError, ValueError) as exc:
                        self._finish("failed", None, str(exc))
                    if not self.ended.is_set():
                        nursery.start_soon(self._drive)
                    await self.ended.wait()
                    await self._legs_ended()
                    # answer retransmissions for a moment, unless the engine is already quiet
                    if self.ua is not None and not self.ua.quiet:
                        with trio.move_on_after(LINGER_S):
                            await self._quiet.wait()
                    # subscribers get the story to its end (call.ended) before we go
                    self.bus.close()
                    with trio.move_on_after(SUBSCRIBER_FLUSH_S):
                        await self.bus.drained()
                    nursery.cancel_scope.cancel()
                self.bus.close()
                outer.cancel_scope.deadline = trio.current_time() + CLIENT_FLUSH_S
        except Exception as exc:
            # A bug in this glue (or below): the call ends visibly, never silently. A
            # confirmed dialog stays published, so the supervisor sends the BYE for it.
            dialog = self.publication.state.get("dialog")
            self.log.error("call.internal_error", error=repr(exc), exc_info=True)
            if not self.ended.is_set():
                self._finish("internal_error", self._sip_status, repr(exc))
            if dialog:
                self.publication.publish(dialog=dialog, ended=False)
                clean = False
            exit_status = 1
        finally:
            self._close_media()
            if self.endpoint is not None:
                self.endpoint.close()
            for leg in self._side_legs():
                leg.endpoint.close()
            for public in (self._answer_socket, self._relay):
                if public is not None:
                    public.close()
            self.bus.close()
            self.publication.close(clean=clean)
        return exit_status

    # ======================================================================
    # legs: more calls in this process (Call.dial)
    # ======================================================================

    async def dial_leg(
        self,
        to: str,
        *,
        from_: str | None,
        ring_timeout: float | None,
        headers: list[tuple[str, str]],
    ) -> Call:
        self.check_alive()
        name = f"{self.spec.call}.leg{len(self._legs) + 1}"
        answered = trio.Event()

        async def held(call: Call) -> None:
            answered.set()  # the leg's app: it waits; this call's app drives the leg
            await call.wait_ended()

        leg = CallRuntime(
            CallSpec(
                call=name,
                to=to,
                from_=from_,
                ring_timeout=ring_timeout,
                max_duration=self.spec.max_duration,
                headers=headers,
                srtp=self.spec.srtp,
            ),
            self.config,
            runtime_dir=self.publication.directory.parent,
            rng=self.rng,
            app=held,
        )
        leg.publication.state["leg_of"] = self.spec.call
        self._legs.append(leg)
        # a supervisor that finds this process gone BYEs the legs' dialogs too
        self.publication.publish(legs=[leg.spec.call for leg in self._legs])
        self._nursery_start(lambda: self._run_leg(leg))
        await _first_of(answered, leg.ended, self.ended)
        if not answered.is_set():
            leg.hangup("local_hangup")
            end = leg._end_event or {}
            why = str(end.get("cause") or "this call ended first")
            if end.get("sip_status"):
                why += f" ({end['sip_status']} {end.get('reason') or ''})".replace(" )", ")")
            elif end.get("reason"):
                why += f" ({end['reason']})"
            raise CallError(f"the call to {to} failed: {why}", code="dial_failed")
        return leg.call

    async def _run_leg(self, leg: CallRuntime) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_leg_events, leg)
            await leg.run()
        self._legs_done += 1

    async def _forward_leg_events(self, leg: CallRuntime) -> None:
        """A leg's events, as ``call.leg``, while this call lasts (``call.ended`` is its
        last event; a leg that outlives it tells only the log how it ended)."""
        async for event in leg.bus.subscribe():
            if self.ended.is_set():
                continue
            fields = {k: v for k, v in event.items() if k not in ("event", "call", "ts")}
            self.emit("call.leg", leg=leg.spec.call, leg_event=event["event"], **fields)

    async def _legs_ended(self) -> None:
        """This call is over: so are its legs (each hangs up, and is waited for)."""
        for leg in self._legs:
            leg.hangup("local_hangup")
        with trio.move_on_after(BYE_ANSWER_WAIT_S + LINGER_S + 1):
            while self._legs_done < len(self._legs):
                await trio.sleep(0.02)

    async def _serve_client(self, client: trio.SocketStream) -> None:
        first = ok_reply(self.spec.reply_id, call=self.spec.call, pid=os.getpid())
        await serve_stream(client, self._control, self.bus, first_reply=first, subscribed=True)

    # ======================================================================
    # events out
    # ======================================================================

    def emit(self, name: str, **fields: Any) -> dict[str, Any]:
        event = {"event": name, "call": self.spec.call, "ts": round(time.time(), 6), **fields}
        self.bus.publish(event)
        self.log.info(
            name,
            **{k: v for k, v in fields.items() if k != "media"},
            **({"media": fields["media"]} if "media" in fields else {}),
        )
        return event

    # ======================================================================
    # outbound
    # ======================================================================

    def _ua_config(
        self, local: tuple[str, int], outbound: tuple[str, int] | None = None
    ) -> UAConfig:
        """``outbound``: the located trunk proxy, where requests go when the dialog's
        next hop is a name we did not locate."""
        trunk = self.config.trunk
        credentials = None
        if trunk.username and trunk.password:
            credentials = Credentials(trunk.username, trunk.password, trunk.realm)
        return UAConfig(
            local_address=local,
            contact_user="gosipd",
            timers=Timers(self.config.t1, self.config.t2, self.config.t4),
            credentials=credentials,
            credential_hosts=self._trunk_addresses,
            max_redirects=trunk.max_redirects,
            outbound_proxy=outbound,
            accept=ACCEPTED_BODIES,
            user_agent=self.config.user_agent,
            session_timer=self.config.session_timer,
            accept_refer=self.config.accept_refer != "off",
        )

    async def _locate(
        self, host: str, port: int | None, secure: bool, transport: str | None = None
    ) -> list[Target]:
        if self._locator is None:
            self._locator = Locator(
                ResolverConfig(
                    nameservers=self.config.dns_nameservers,
                    port=self.config.dns_port,
                    timeout=self.config.dns_timeout_s,
                    transports=tuple(Transport(t) for t in self.config.transports),
                ),
                rng=self.rng,
            )
        location = await self._locator.locate(host, port=port, secure=secure, transport=transport)
        for step in location.steps:
            self.log.debug("locate.step", step=step)
        return list(location.targets)

    def _trunk_names(self) -> frozenset[str]:
        """The trunk's own domain and proxy host, as configured (``host_key``s)."""
        trunk = self.config.trunk
        names = {host_key(trunk.domain)} if trunk.domain else set()
        if trunk.proxy:
            names.add(host_key(parse_hostport(trunk.proxy, 5060, "[trunk] proxy")[0]))
        return frozenset(names)

    async def _locate_trunk(self) -> frozenset[str]:
        """The addresses of the trunk's targets (its proxy, else its domain, per RFC 3263);
        empty when there is no trunk or it cannot be located now."""
        trunk = self.config.trunk
        if not trunk.configured or not (trunk.username and trunk.password):
            return frozenset()
        if trunk.proxy:
            host, port = parse_hostport(trunk.proxy, 5060, "[trunk] proxy")
        else:
            assert trunk.domain is not None
            host, port = trunk.domain, None
        try:
            targets = await self._locate(host, port, False)
        except LocateError as exc:
            self.log.warning("call.trunk_unlocated", host=host, reason=str(exc))
            return frozenset()
        return frozenset(target.address for target in targets)

    async def _learn_trunk_addresses(self) -> None:
        """Inbound: where a challenge to our in-dialog requests may be answered."""
        self._trunk_addresses = await self._locate_trunk()
        if self.ua is not None:
            self.ua.credential_hosts = self._trunk_addresses

    async def _start_outbound(self) -> None:
        await self._dial(self.spec.to, headers=self.spec.headers)
        assert self.ua is not None
        self.publication.publish(sip_call_id=self.ua.call_id)

    async def _dial(
        self, to: str, *, headers: tuple[tuple[str, str], ...] | list[tuple[str, str]]
    ) -> None:
        """Locate ``to``, open the signalling for it and send the INVITE: the call's
        first dialog, or the one a REFER we follow asks for (the RTP pair is kept)."""
        try:
            dial = dial_target(to, self.config.trunk)
        except DialError as exc:
            raise CallError(str(exc)) from None
        request_uri = dial.request_uri
        try:
            targets = await self._locate(dial.host, dial.port, dial.secure, dial.transport)
        except LocateError as exc:
            raise CallError(str(exc)) from None
        # One transport per call (its transactions' timers and its Via): the best
        # target's; the others are kept for failover.
        transport = targets[0].transport
        if any(t.transport is not transport for t in targets):
            self.log.info(
                "locate.transport",
                transport=str(transport),
                skipped=[str(t) for t in targets if t.transport is not transport],
            )
            targets = [t for t in targets if t.transport is transport]
        located = frozenset(target.address for target in targets)
        trunk_names = self._trunk_names()
        if dial.via_proxy or host_key(dial.host) in trunk_names:
            self._trunk_addresses = located
            self._redirect_hosts = trunk_names | located
        else:
            # a URI dialed directly: redirects stay on its host, and the trunk's
            # credentials go only where the trunk itself is
            self._trunk_addresses = await self._locate_trunk()
            self._redirect_hosts = frozenset({host_key(dial.host)}) | located
        first = targets[0].address
        self._local_ip = self._advertised_ip(first)
        bind_host = (
            "::" if ":" in first or ":" in self.config.sip_address else (self.config.sip_address)
        )
        if self._rtp is None:
            self._rtp = media.bind_rtp_pair(
                self._bind_ip(), range(self.config.rtp_port_min, self.config.rtp_port_max, 2)
            )
        self._offer = self._make_offer(self._rtp[0].getsockname()[1])
        try:
            from_ = caller_identity(self.spec.from_, self.config.trunk, self._local_ip)
        except DialError as exc:
            raise CallError(str(exc)) from None
        self.remote_uri = str(request_uri)
        ring_timeout = self.spec.ring_timeout or self.config.limits.ring_timeout_s
        self._ring_deadline = trio.current_time() + ring_timeout
        call_id = f"{secrets.token_hex(16)}@{self._local_ip}"
        for attempt in (transport, Transport.TCP):
            target = await self._open_signalling(attempt, dial, targets, bind_host)
            assert self.ua is not None
            self.ua.invite(
                request_uri,
                destination=target.endpoint,
                from_=from_,
                now=trio.current_time(),
                sdp=bytes(self._offer),
                headers=headers,
                call_id=call_id,
            )
            size = self.ua.largest_queued()
            if not (
                attempt is Transport.UDP and size > MAX_UDP_REQUEST and self._tcp_allowed(dial)
            ):
                break
            # RFC 3261 §18.1.1: a request over 1300 octets (path MTU unknown) goes over
            # a congestion-controlled transport: TCP, to the same targets. Nothing was sent.
            self.log.info("sip.udp_too_large", size=size, limit=MAX_UDP_REQUEST)
            assert self.endpoint is not None
            self.endpoint.close()
            targets = [replace(t, transport=Transport.TCP) for t in targets]
        self._start_receiving()
        await self._pump()

    def _tcp_allowed(self, dial: DialTarget) -> bool:
        """Whether a too-large UDP request may go over TCP: nobody asked for UDP (no
        ;transport=udp, no [trunk] transport) and [sip] transports has tcp."""
        return dial.transport is None and "tcp" in self.config.transports

    async def _open_signalling(
        self, transport: Transport, dial: DialTarget, targets: list[Target], bind_host: str
    ) -> Target:
        """The endpoint, the engine and the failover for ``transport``; the first target."""
        if transport is Transport.UDP:
            self.endpoint = UdpEndpoint(bind_host, 0)
        else:
            self.endpoint = await self._stream_endpoint(bind_host, transport, dial.host)
        local = (self._local_ip, self.endpoint.local_address[1])
        outbound = targets[0].endpoint if dial.via_proxy else None
        config = self._ua_config(local, outbound)
        if transport is not Transport.UDP:
            config = config.over_stream(transport.value, secure=dial.secure)
        self.ua = UserAgent(config, rng=self.rng)
        self.failover = Failover(
            targets,
            trio.current_time(),
            policy=FailoverPolicy(target_timeout=self.config.attempt_timeout_s),
        )
        target = self.failover.next_target(trio.current_time())
        self._log_failover()
        if target is None:
            raise CallError("no target to call")
        return target

    async def _stream_endpoint(
        self, bind_host: str, transport: Transport, host: str
    ) -> StreamEndpoint:
        """A TCP or TLS endpoint; a TLS certificate must name the host we dialed (the SIP
        domain or proxy, RFC 5922), or the target's address when that is all we have."""
        tls = None
        if transport is Transport.TLS:
            try:
                tls = client_tls_context(
                    ca_file=self.config.tls_ca_file,
                    cert_file=self.config.tls_cert_file,
                    key_file=self.config.tls_key_file,
                    verify=self.config.tls_verify,
                )
            except (OSError, ValueError) as exc:
                raise CallError(f"TLS is not usable: {exc}", code="tls_failed") from None
        name = host.strip("[]")
        endpoint = StreamEndpoint(
            bind_host,
            tls=tls,
            server_name=lambda _destination: name,
            stall_timeout=16 * self.config.t1,  # a sender never pauses inside a message
        )
        assert self._nursery is not None
        await self._nursery.start(endpoint.run)
        return endpoint

    def _advertised_ip(self, towards: str) -> str:
        if self.config.public_address:
            return self.config.public_address
        if _routable_host(self.config.sip_address):
            return self.config.sip_address
        return local_address_towards(towards)

    def _bind_ip(self) -> str:
        if _routable_host(self.config.sip_address):
            return self.config.sip_address
        return (
            self._local_ip
            if not self.config.public_address
            else ("0.0.0.0" if ":" not in self._local_ip else "::")
        )

    def _log_failover(self) -> None:
        if self.failover is None:
            return
        for event in self.failover.pop_events():
            self.emit(event.event, **event.fields())

    # ======================================================================
    # inbound
    # ======================================================================

    async def _start_inbound(self) -> None:
        assert self.spec.datagram is not None and self.spec.source is not None
        source = self.spec.source
        self._local_ip = (
            self.config.public_address or self.spec.local_host or (local_address_towards(source[0]))
        )
        if self.spec.transport != "udp":
            await self._start_inbound_relayed()
        else:
            bind_host = (
                "::"
                if ":" in source[0]
                else (
                    self.config.sip_address
                    if _routable_host(self.config.sip_address)
                    else "0.0.0.0"
                )
            )
            self.endpoint = UdpEndpoint(bind_host, 0)
            local = (self._local_ip, self.endpoint.local_address[1])
            self.ua = UserAgent(self._ua_config(local), rng=self.rng)
            forwarded_to = self.ua
            self._nursery_start(lambda: self._receive_forwarded(forwarded_to))
        assert self.ua is not None
        self._rtp = media.bind_rtp_pair(
            self._bind_ip(), range(self.config.rtp_port_min, self.config.rtp_port_max, 2)
        )
        self._note_public(self.spec.datagram)
        self.ua.receive(self.spec.datagram, source, trio.current_time())
        self._start_receiving()
        self._nursery_start(self._learn_trunk_addresses)
        await self._pump()

    async def _start_inbound_relayed(self) -> None:
        """TCP or TLS: the supervisor holds the connection; we send and hear through it,
        and our Via and Contact name its listener (a new connection from the far end
        reaches us by Call-ID too)."""
        assert self.spec.source is not None and self.spec.answer_via is not None
        transport = self.spec.transport
        local = (self._local_ip, self.spec.local_port or (5061 if transport == "tls" else 5060))
        endpoint = RelayEndpoint(
            str(self.publication.directory / f"{self.spec.call}.sip"),
            self.spec.answer_via,
            transport,
            local,
        )
        await endpoint.bind()
        endpoint.heard_from(self.spec.source)
        self.endpoint = endpoint
        secure = self.spec.to.lower().startswith("sips:")
        self.ua = UserAgent(
            self._ua_config(local).over_stream(transport, secure=secure), rng=self.rng
        )
        self.publication.publish(sip_transport=transport)

    async def _answer_incoming(self, event: ev.IncomingCall) -> None:
        assert self.ua is not None and self._rtp is not None
        request = event.request
        self.remote_uri = str(request.from_.uri)
        self.publication.publish(sip_call_id=request.call_id, caller=str(request.from_.uri))
        if self.spec.app is None and self._app is None:
            self.ua.reject(trio.current_time(), self.config.inbound.unrouted_status)
            await self._pump()
            return
        now = trio.current_time()
        offer = event.sdp
        port = self._rtp[0].getsockname()[1]
        try:
            if offer:
                local, negotiated = self._answer(sdp.SessionDescription.parse(offer), port)
            else:
                local, negotiated = self._make_offer(port), None
                self._offer = local  # the answer comes in the ACK
        except sdp.SDPError as exc:
            self.log.info("call.bad_offer", reason=str(exc))
            self.ua.reject(now, 488, _reason_phrase(exc))
            await self._pump()
            return
        self._local_sdp = local
        if self.config.inbound.ring_ms:
            early = self.config.inbound.early_media and negotiated is not None
            status = 183 if early else 180
            self.ua.ring(now, status=status, sdp=bytes(local) if early else None)
            self.emit("call.ringing", sip_status=status, early_media=early)
            if early and negotiated is not None:
                self._start_media(negotiated)
            await self._pump()
            await trio.sleep(self.config.inbound.ring_ms / 1000)
            if self.ended.is_set() or self.ua.state not in (CallState.INCOMING, CallState.EARLY):
                return
        self.ua.answer(trio.current_time(), sdp=bytes(local))
        if negotiated is not None:
            self._start_media(negotiated)
        await self._pump()

    async def _receive_forwarded(self, ua: UserAgent) -> None:
        """Datagrams the supervisor's inbound socket got for our Call-ID (CANCEL, resends,
        the caller's BYE): all for the dialog the INVITE made, ``ua``'s."""
        path = self.publication.directory / f"{self.spec.call}.sip"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        await sock.bind(str(path))
        try:
            while True:
                framed = unframe_datagram(await sock.recv(65536 + 256))
                if framed is None:
                    continue
                source, data = framed
                self._note_public(data)
                ua.receive(data, source, trio.current_time())
                await self._pump()
        finally:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # ======================================================================
    # the engine loop
    # ======================================================================

    def _nursery_start(self, fn: Callable[[], Awaitable[None]]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn)

    def _start_receiving(self) -> None:
        """Feed the current dialog's engine from its endpoint, in a task of its own (a
        dialog put aside keeps its task until it is put away)."""
        assert self.endpoint is not None and self.ua is not None
        endpoint, ua = self.endpoint, self.ua
        scope = trio.CancelScope()
        self._receiving = scope

        async def receive() -> None:
            with scope:
                await self._receive_sip(endpoint, ua)

        self._nursery_start(receive)

    async def _receive_sip(
        self, endpoint: UdpEndpoint | StreamEndpoint | RelayEndpoint, ua: UserAgent
    ) -> None:
        while True:
            item = await endpoint.receive()
            now = trio.current_time()
            if isinstance(item, Datagram):
                ua.receive(item.data, item.source, now)
            elif isinstance(item, IcmpError) and item.reason is not None:
                self.log.info(
                    "sip.connection" if isinstance(endpoint, StreamEndpoint) else "sip.icmp",
                    destination=list(item.destination),
                    reason=str(item.reason),
                    **({"detail": item.reporter} if item.reporter else {}),
                )
                if item.reason is Reason.TLS_FAILED:
                    self._tls_failure = item.reporter or "handshake failed"
                elif item.reporter:
                    self._connection_failure = item.reporter
                # the engine fails the transaction sent there (AttemptFailed for the
                # INVITE, which drives the failover in _on_attempt_failed)
                if ua is self.ua:
                    self._icmp_reasons[item.destination] = item.reason
                ua.transport_error(item.destination, now, str(item.reason))
            await self._pump()

    def _next_deadline(self) -> float:
        deadlines = [self._ring_deadline, self._duration_deadline, self._bye_deadline]
        if self.ua is not None and (t := self.ua.next_timer()) is not None:
            deadlines.append(t)
        if self.failover is not None and (t := self.failover.next_timer()) is not None:
            deadlines.append(t)
        for leg in self._side_legs():
            if (t := leg.ua.next_timer()) is not None:
                deadlines.append(t)
        if self._referral is not None:
            deadlines.append(self._referral.bye_at)
        return min(deadlines)

    async def _drive(self) -> None:
        """Sleep until the earliest timer, or until poked; then fire what is due."""
        while True:
            with trio.move_on_at(self._next_deadline()):
                await self._wakeup.wait()
            now = trio.current_time()
            if self.ua is not None:
                self.ua.handle_timer(now)
            for leg in self._side_legs():
                leg.ua.handle_timer(now)
            referral = self._referral
            if referral is not None and now >= referral.bye_at:
                referral.bye_at = math.inf
                referral.referrer.ua.hangup(now)  # it did not BYE us: the target has us
            if self.failover is not None and not self.failover.settled:
                timer = self.failover.next_timer()
                due = timer is not None and now >= timer
                if due and self.failover.handle_timer(now) is Verdict.FAILOVER:
                    await self._next_target()
            if now >= self._ring_deadline and self.ua is not None:
                self._ring_deadline = math.inf
                if self.ua.state in (CallState.CALLING, CallState.PROCEEDING, CallState.WAITING):
                    if self._referral is None:
                        self._cause = "no_answer"
                    else:
                        self._referral.status, self._referral.reason = 408, "Request Timeout"
                    self.ua.cancel(now)
            if now >= self._duration_deadline:
                self._duration_deadline = math.inf
                self.hangup("max_duration")
            if now >= self._bye_deadline:
                self._bye_deadline = math.inf
                self.log.info("call.bye_unanswered", waited_s=BYE_ANSWER_WAIT_S)
                self._finish(self._cause or "local_hangup", self._sip_status, "BYE unanswered")
            await self._pump()
            # Our own _pump pokes too; the deadline is recomputed at the top anyway, so
            # re-arm only now, or this loop would wake itself forever.
            self._wakeup = trio.Event()

    def poke(self) -> None:
        self._wakeup.set()

    async def _pump(self) -> None:
        """Send what the engines queued; act on their events."""
        if self.ua is None or self.endpoint is None:
            return
        busy = True
        while busy:
            busy = await self._pump_leg(self.ua, self.endpoint)
            for leg in self._side_legs():
                busy = await self._pump_leg(leg.ua, leg.endpoint) or busy
        self._put_away_quiet_legs()
        self._publish_dialog()
        if self.ua.quiet and all(leg.ua.quiet for leg in self._side_legs()):
            self._quiet.set()
        self.poke()

    async def _pump_leg(
        self, ua: UserAgent, endpoint: UdpEndpoint | StreamEndpoint | RelayEndpoint
    ) -> bool:
        """Send what ``ua`` queued; act on its events. Whether there was anything."""
        busy = False
        while True:
            for data, destination in ua.datagrams_to_send():
                busy = True
                try:
                    if self._answers_public(data):
                        await self._send_public(data, destination)
                    else:
                        await endpoint.send(data, destination)
                except (OSError, ValueError) as exc:
                    self.log.warning(
                        "sip.send_failed", destination=list(destination), error=str(exc)
                    )
                    ua.transport_error(destination, trio.current_time(), str(exc))
            events = ua.events()
            if not events:
                return busy
            busy = True
            for event in events:
                # the dialogs may change places on any event (a referral's outcome)
                if self._referral is not None and ua is self._referral.referrer.ua:
                    self._on_referrer_event(event)
                elif ua is self.ua:
                    await self._on_event(event)

    def _side_legs(self) -> list[Leg]:
        """The dialogs beside the current one: a transferor's, and those that linger."""
        legs = list(self._lingering)
        referral = self._referral
        if (
            referral is not None
            and not referral.referrer_gone
            and referral.referrer.ua is not self.ua
        ):
            legs.append(referral.referrer)
        return legs

    def _put_away_quiet_legs(self) -> None:
        for leg in [leg for leg in self._lingering if leg.ua.quiet]:
            self._lingering.remove(leg)
            leg.receiving.cancel()
            leg.endpoint.close()

    def _note_public(self, data: bytes) -> None:
        if self._answers_from_public and (branch := _top_branch(data)) is not None:
            self._public_branches.add(branch)

    async def _send_public(self, data: bytes, destination: tuple[str, int]) -> None:
        """Out through the socket the request reached us on: our copy of it, or the
        supervisor's own (it relays what we frame and send to its relay socket)."""
        if self._answer_socket is not None:
            await self._answer_socket.sendto(data, destination)
        elif self._relay is not None and self.spec.answer_via is not None:
            await self._relay.sendto(frame_datagram(destination, data), self.spec.answer_via)

    def _answers_public(self, data: bytes) -> bool:
        """A response to a request that reached us through the public socket."""
        return (
            self._answers_from_public
            and data.startswith(b"SIP/2.0 ")
            and _top_branch(data) in self._public_branches
        )

    async def _next_target(self) -> None:
        assert self.failover is not None and self.ua is not None
        now = trio.current_time()
        target = self.failover.next_target(now)
        self._log_failover()
        if target is None:
            self._walk_over(now, "unreachable")
            return
        self.ua.retry(target.endpoint, now)

    def _walk_over(self, now: float, cause: str) -> None:
        """No target is left: the call fails (the engine may still wait on a silent one)."""
        assert self.ua is not None
        if self.ua.state in (CallState.CALLING, CallState.WAITING):
            self.ua.give_up(now, cause=cause if self._sip_status is None else "failed")
        elif self.ua.state is CallState.PROCEEDING:
            self._cause = cause
            self.ua.cancel(now)

    async def _on_event(self, event: ev.Event) -> None:
        now = trio.current_time()
        setup_ms = round((now - self._started) * 1000)
        referral = self._referral
        if referral is not None and referral.following and self._on_referred(event):
            return
        match event:
            case ev.Trying(status=status):
                self._failover_response(status)
                self.emit("call.trying", sip_status=status)
            case ev.Ringing(status=status, reliable=reliable):
                self._failover_response(status)
                self.emit("call.ringing", sip_status=status, reliable=reliable)
            case ev.EarlyMedia(status=status, sdp=body, reliable=reliable):
                self._failover_response(status)
                negotiated = self._negotiate(body)
                if negotiated is not None:
                    self._start_media(negotiated)
                self.emit("call.early_media", sip_status=status, reliable=reliable)
            case ev.Answered(sdp=body, status=status):
                self._failover_response(status)
                self._answered_at = now
                self._ring_deadline = math.inf
                self._sip_status = status
                negotiated = self._negotiate(body) if body else None
                if negotiated is not None:
                    self._start_media(negotiated)
                self._local_sdp = self._offer
                self.emit("call.answered", sip_status=status, setup_ms=setup_ms)
                if self.session is None:
                    # RFC 3264 §5: an answer we cannot use leaves no session; end it
                    self._end_reason = f"unusable SDP answer: {self._answer_problem}"
                    self.hangup("srtp_failed" if self._srtp_refused else "failed")
                    return
                self._start_duration_timer()
                self._start_app()
            case ev.AuthChallenged(status=status, realms=realms):
                self.emit("call.auth_challenged", sip_status=status, realms=list(realms))
            case ev.AuthRefused() as refused:
                # the credentials stay home: a stranger's challenge, another realm, or
                # a second refusal of what we sent
                self.emit(
                    "call.auth_refused",
                    sip_status=refused.status,
                    realms=list(refused.realms),
                    reason=refused.reason,
                    method=refused.method,
                    destination=f"{refused.destination[0]}:{refused.destination[1]}",
                )
            case ev.RedirectRefused(status=status, contacts=contacts, reason=reason):
                for contact in contacts:
                    self._redirect_refused(status, contact, reason)
            case ev.AttemptFailed() as failed:
                await self._on_attempt_failed(failed)
            case ev.Redirected(status=status, contacts=contacts):
                await self._on_redirect(status, contacts)
            case ev.Failed(status=status):
                self._sip_status = status
                self._failover_response(status)
            case ev.TransferAccepted(status=status):
                self.emit("call.transfer", state="accepted", sip_status=status)
                if self._transfer_accepted is not None:
                    self._transfer_accepted.set()
            case ev.TransferProgress(status=status, reason=reason):
                self.emit("call.transfer", state="progress", sip_status=status, reason=reason)
            case ev.TransferSucceeded(status=status):
                self.emit("call.transfer", state="succeeded", sip_status=status)
                self._transfer_over(True, "")
                self.hangup("transferred")  # the far end is with the target now
            case ev.TransferFailed(status=status, reason=reason):
                self.emit("call.transfer", state="failed", sip_status=status, reason=reason)
                self._transfer_over(False, f"{status} {reason}" if status else reason)
            case ev.IncomingCall() as incoming:
                self.emit("call.incoming", **self._caller_of(incoming.request))
                assert self._nursery is not None
                self._nursery.start_soon(self._answer_incoming, incoming)
            case ev.AckReceived(sdp=body):
                if body and self._offer is not None and self.session is None:
                    negotiated = self._negotiate(body)  # we offered in the 200
                    if negotiated is not None:
                        self._start_media(negotiated)
                if self.session is not None:
                    self.session.confirm()  # now RTP may go where the SDP says
                self._answered_at = now
                self._sip_status = 200
                self.emit("call.answered", sip_status=200, setup_ms=setup_ms)
                self._start_duration_timer()
                self._start_app()
            case ev.AckTimedOut():
                # §13.3.1.4: the engine sent the BYE (retransmitted while we linger); a
                # caller that never ACKed is not waited for, nor was it sent media
                self._finish("ack_timeout", self._sip_status, "no ACK for the 2xx in 64*T1")
            case ev.CancelReceived():
                self._cause = "cancelled"
            case ev.RemoteOffer(sdp=body):
                self._on_remote_offer(body)
            case ev.OfferAnswered(sdp=body):
                self._on_offer_answered(body)
            case ev.OfferRejected(status=status, reason=reason):
                self.log.info("call.offer_rejected", sip_status=status, reason=reason)
                self._offer = None
                self._offer_refusal = status
                self._wake_offer_waiters()
            case ev.InfoReceived(content_type=content_type, body=body):
                self._on_info(content_type, body)
            case ev.ReferReceived() as refer:
                self._on_refer(refer)
            case ev.Ended(cause=cause, status=status, reason=reason):
                if status is not None and (self._sip_status is None or self._answered_at is None):
                    self._sip_status = status
                self._finish(self._cause or cause, self._sip_status, reason)

    # ======================================================================
    # a REFER we follow (RFC 3515, as the transferee; gosipd.referral)
    # ======================================================================

    #: The call's signalling state that belongs to its current dialog: set aside while
    #: a referral's dialog rings, and put back if it never answers.
    _DIALOG_STATE = (
        "ua",
        "endpoint",
        "failover",
        "_receiving",
        "_cause",
        "_sip_status",
        "_end_reason",
        "remote_uri",
        "_trunk_addresses",
        "_redirect_hosts",
        "_icmp_reasons",
        "_tls_failure",
        "_connection_failure",
        "_local_ip",
        "_offer",
        "_ring_deadline",
        "_srtp_refused",
        "_answer_problem",
    )

    def _on_refer(self, refer: ev.ReferReceived) -> None:
        assert self.ua is not None
        now = trio.current_time()
        target = str(refer.target)
        why = refused_target(
            refer.target, self.config.accept_refer, self.config.trunk, self._trunk_names()
        )
        sending = self._transfer_done is not None and not self._transfer_done.is_set()
        if why is None and (self._referral is not None or sending):
            why = "a transfer is already in progress"
        if why is None and self.session is None:
            why = "the call has no media to hand over"
        if why is not None:
            self.ua.refuse_refer(now, 403, "Transfer Refused")
            self.emit("call.referred", state="refused", to=target, reason=why)
            return
        self.ua.accept_refer(now)
        self.emit(
            "call.referred",
            state="accepted",
            to=target,
            referred_by=refer.referred_by,
            replaces=refer.replaces is not None,
        )
        headers = [("Referred-By", refer.referred_by)] if refer.referred_by else []
        if refer.replaces is not None:
            headers.append(("Replaces", refer.replaces))  # RFC 3891 §5
        assert self.endpoint is not None and self._receiving is not None
        self._referral = Referral(
            refer.target,
            Leg(self.ua, self.endpoint, self.failover, self._receiving),
            saved={name: getattr(self, name) for name in self._DIALOG_STATE},
        )
        self._icmp_reasons = {}
        self._tls_failure = self._connection_failure = None
        self._nursery_start(lambda: self._follow(target, headers))

    async def _follow(self, target: str, headers: list[tuple[str, str]]) -> None:
        """Call the REFER's target; its dialog becomes the current one meanwhile."""
        assert self._referral is not None
        try:
            with self._referral.placing:
                await self._dial(target, headers=headers)
        except (CallError, LocateError, OSError, sdp.SDPError, ValueError) as exc:
            self.log.info("call.referral_failed", to=target, reason=str(exc))
            referral = self._referral
            if referral is not None and referral.following:
                referral.reason = str(exc)
                self._referral_over(None)
                await self._pump()

    def _on_referred(self, event: ev.Event) -> bool:
        """An event of the dialog we placed for a REFER, while it rings (the current
        dialog, the transferor's beside it); False: the usual handling (auth, failover,
        redirects) applies."""
        referral = self._referral
        assert referral is not None and self.ua is not None
        referrer = referral.referrer.ua
        now = trio.current_time()
        match event:
            case ev.Trying(status=status):
                self._failover_response(status)
            case ev.Ringing(status=status) | ev.EarlyMedia(status=status):
                self._failover_response(status)
                referrer.notify_refer(
                    status, "Ringing" if status == 180 else "Session Progress", now
                )
                self.emit("call.referred", state="progress", sip_status=status)
            case ev.Answered(sdp=body, status=status):
                self._failover_response(status)
                self._referral_answered(body, status)
            case ev.Failed(status=status, reason=reason):
                self._failover_response(status)
                referral.status, referral.reason = status, reason
            case ev.Ended(status=status, reason=reason):
                if referral.status is None:
                    referral.status = status
                    referral.reason = referral.reason or reason
                self._referral_over(referral.status)
            case _:
                return False
        return True

    def _referral_answered(self, body: bytes | None, status: int) -> None:
        referral = self._referral
        assert referral is not None and self.ua is not None
        now = trio.current_time()
        negotiated = self._negotiate(body) if body else None
        if negotiated is None:
            # RFC 3264 §5: an answer we cannot use; the target is hung up on, the
            # transferor hears why, and the call stays with it
            referral.status, referral.reason = 488, "Not Acceptable Here"
            self.log.info("call.referral_unusable", reason=self._answer_problem)
            self.ua.hangup(now)
            return
        referral.following = False
        self._ring_deadline = math.inf
        self._local_sdp, self._offer = self._offer, None
        if self.session is None:
            self._start_media(negotiated)
        else:
            self.session.update(negotiated)  # the app now talks to the target
        self._set_held(remote=not negotiated.sending)
        self.remote_uri = str(referral.target)
        referral.referrer.ua.notify_refer(200, "OK", now)
        referral.bye_at = now + REFERRER_BYE_WAIT_S
        self.emit("call.referred", state="succeeded", to=str(referral.target), sip_status=status)

    def _referral_over(self, status: int | None) -> None:
        """The target never answered: its dialog is put aside to linger, the call's is
        put back, and the transferor hears the outcome (the call goes on with it)."""
        referral = self._referral
        assert referral is not None
        now = trio.current_time()
        if self.ua is not None and self.ua is not referral.referrer.ua:
            assert self.endpoint is not None and self._receiving is not None
            self._lingering.append(Leg(self.ua, self.endpoint, self.failover, self._receiving))
        for name, value in referral.saved.items():
            setattr(self, name, value)
        if referral.referrer in self._lingering:
            self._lingering.remove(referral.referrer)  # current again, if only to end
        self._referral = None
        status = status if status is not None and status >= 300 else 503
        reason = referral.reason or "Service Unavailable"
        assert self.ua is not None
        self.ua.notify_refer(status, reason, now)
        self.emit(
            "call.referred",
            state="failed",
            to=str(referral.target),
            sip_status=status,
            reason=reason,
        )
        if referral.hangup_cause is not None:
            self.hangup(referral.hangup_cause)
        elif referral.referrer_gone:
            self._finish("remote_hangup", None, f"the transfer to {referral.target} failed")

    def _on_referrer_event(self, event: ev.Event) -> None:
        """The transferor's dialog, once the REFER is being followed."""
        referral = self._referral
        assert referral is not None
        referrer = referral.referrer
        now = trio.current_time()
        match event:
            case ev.Ended(cause=cause):
                self.log.info("call.referrer_ended", cause=cause)
                referral.referrer_gone = True
                referral.bye_at = math.inf
                self._lingering.append(referrer)
                if not referral.following:
                    self._referral = None  # the transfer is complete
            case ev.RemoteOffer():
                referrer.ua.reject_offer(now, 491)  # its media is no longer its own
            case ev.ReferReceived():
                referrer.ua.refuse_refer(now, 403, "Transfer Refused")
            case _:
                pass

    def _caller_of(self, request: Request) -> dict[str, Any]:
        """Who is calling, for ``call.incoming``: the allowed headers, bounded, and an
        asserted identity only from a trusted source."""
        inbound = self.config.inbound
        source = self.spec.source[0] if self.spec.source else ""
        self.caller = passthrough.incoming(
            request.headers,
            request.from_,
            source,
            self.config.headers.receive,
            Networks((*inbound.trusted_sources, *inbound.allowed_sources)),
        )
        fields: dict[str, Any] = {
            "caller": str(request.from_.uri),
            "to": str(request.to.uri),
            "caller_name": self.caller.caller_name,
            "asserted_identity": self.caller.asserted_identity,
            "trusted_source": self.caller.trusted_source,
            "headers": [f"{name}: {value}" for name, value in self.caller.headers],
        }
        if self.caller.dropped:
            fields["headers_dropped"] = self.caller.dropped
        return fields

    def _failover_response(self, status: int) -> None:
        """Tell the failover walk what the current target answered (while it waits on one)."""
        failover = self.failover
        if failover is not None and not failover.settled and failover.current is not None:
            failover.on_response(status, trio.current_time())
            self._log_failover()

    async def _on_attempt_failed(self, failed: ev.AttemptFailed) -> None:
        assert self.ua is not None
        now = trio.current_time()
        if failed.status is not None:
            self._sip_status = failed.status
        if self.failover is None or self.failover.settled:
            self.ua.give_up(now, cause="failed")
            return
        if failed.reason == "status" and failed.status is not None:
            verdict = self.failover.on_response(failed.status, now, retry_after=failed.retry_after)
        elif failed.reason == "transport":
            reason = self._icmp_reasons.get(failed.destination, Reason.PORT_UNREACHABLE)
            verdict = self.failover.on_transport_error(failed.destination, reason, now)
        else:
            verdict = self.failover.handle_timer(math.inf)
        self._log_failover()
        if verdict is Verdict.FAILOVER:
            target = self.failover.next_target(now)
            self._log_failover()
            if target is not None:
                self.ua.retry(target.endpoint, now)
                return
        if failed.reason == "status":
            cause = "failed"
        elif self._tls_failure is not None:
            cause = "tls_failed"
            self._end_reason = f"TLS failed: {self._tls_failure}"
        else:
            cause = "unreachable"
            if self._connection_failure is not None:
                self._end_reason = f"connection lost: {self._connection_failure}"
        self._walk_over(now, cause)

    async def _on_redirect(self, status: int, contacts: tuple[URI, ...]) -> None:
        """Follow the best Contact the ``[trunk] redirects`` policy allows; each one is
        reported, followed or not and why (a 302 to a premium number is toll fraud)."""
        assert self.ua is not None
        now = trio.current_time()
        policy = self.config.trunk.redirects
        trunk_names = self._trunk_names()
        refused_by_policy = False
        for contact in contacts:
            if not contact.is_sip:
                self._redirect_refused(status, contact, "not a SIP URI")
                continue
            if policy == "none":
                self._redirect_refused(status, contact, "[trunk] redirects = none")
                refused_by_policy = True
                continue
            if policy == "trunk" and host_key(contact.host) not in self._redirect_hosts:
                self._redirect_refused(status, contact, "not the host the call was dialed to")
                refused_by_policy = True
                continue
            try:
                targets = await self._locate(contact.host, contact.port, contact.scheme == "sips")
            except LocateError as exc:
                self._redirect_refused(status, contact, f"cannot locate it: {exc}")
                continue
            if host_key(contact.host) in trunk_names:
                # the trunk's own name: what it locates to is the trunk too
                self._trunk_addresses |= {target.address for target in targets}
                self.ua.credential_hosts = self._trunk_addresses
            self.emit(
                "call.redirected",
                sip_status=status,
                contact=str(contact),
                reason=f"[trunk] redirects = {policy}",
            )
            self.failover = Failover(
                targets, now, policy=FailoverPolicy(target_timeout=self.config.attempt_timeout_s)
            )
            target = self.failover.next_target(now)
            self._log_failover()
            if target is not None:
                self.remote_uri = str(contact)
                self.ua.retry(target.endpoint, now, request_uri=contact)
                return
        self._sip_status = status
        self.ua.give_up(now, cause="redirect_refused" if refused_by_policy else "failed")

    def _redirect_refused(self, status: int, contact: URI, reason: str) -> None:
        self.emit("call.redirect_refused", sip_status=status, contact=str(contact), reason=reason)

    @property
    def _srtp_policy(self) -> sdp.SrtpPolicy:
        policy = self.spec.srtp or self.config.rtp_srtp
        assert policy in sdp.SRTP_POLICIES  # checked by the control protocol and the config
        return policy

    def _make_offer(self, port: int) -> sdp.SessionDescription:
        policy = self._srtp_policy
        crypto = sdes.offer_lines(self.config.rtp_srtp_suites) if policy != "off" else []
        return sdp.make_offer(self._local_ip, port, crypto=crypto, srtp=policy)

    def _answer(
        self,
        offer: sdp.SessionDescription,
        port: int,
        previous: sdp.SessionDescription | None = None,
    ) -> tuple[sdp.SessionDescription, sdp.NegotiatedMedia]:
        return sdp.answer(
            offer,
            self._local_ip,
            port,
            previous=previous,
            srtp=self._srtp_policy,
            srtp_suites=self.config.rtp_srtp_suites,
        )

    def _negotiate(self, body: bytes) -> sdp.NegotiatedMedia | None:
        if self._offer is None:
            self._answer_problem = "SDP where no offer was made"
            return None
        try:
            return sdp.negotiate(self._offer, sdp.SessionDescription.parse(body))
        except sdp.SDPError as exc:
            self._answer_problem = str(exc)
            self._srtp_refused = isinstance(exc, sdp.SrtpRefused)
            self.log.warning("call.bad_answer", reason=str(exc))
            return None

    def _on_remote_offer(self, body: bytes | None) -> None:
        assert self.ua is not None and self._rtp is not None
        now = trio.current_time()
        if body is None:
            # a re-INVITE without SDP asks for our offer; its answer comes in the ACK
            local = self._local_sdp or self._offer
            self._offer = local
            self.ua.answer_offer(bytes(local) if local is not None else None, now)
            return
        try:
            offer = sdp.SessionDescription.parse(body)
            local, negotiated = self._answer(
                offer, self._rtp[0].getsockname()[1], previous=self._local_sdp
            )
        except sdp.SDPError as exc:
            self.log.info("call.reoffer_refused", reason=str(exc))
            self.ua.reject_offer(now, 488)
            return
        self._local_sdp = local
        self.ua.answer_offer(bytes(local), now)
        if self.session is None:
            self._start_media(negotiated)
        else:
            self.session.update(negotiated)
        # the far end holds us when its offer lets us send nothing (sendonly, inactive,
        # or the RFC 2543 c=0.0.0.0)
        self._set_held(remote=not negotiated.sending)

    def _on_offer_answered(self, body: bytes | None) -> None:
        """The answer to our re-offer (in a 200), or to the offer of our 200 (in an ACK)."""
        offer = self._offer
        if body and offer is not None:
            negotiated = self._negotiate(body)
            if negotiated is not None:
                self._local_sdp = offer
                if self.session is None:
                    self._start_media(negotiated)
                else:
                    self.session.update(negotiated)
                direction = offer.direction_of(offer.media[0]) if offer.media else "sendrecv"
                self._set_held(local=direction in ("sendonly", "inactive"))
        self._offer = None
        self._wake_offer_waiters()

    def _wake_offer_waiters(self) -> None:
        waiters, self._offer_waiters = self._offer_waiters, []
        for waiter in waiters:
            waiter.set()

    def _set_held(self, *, remote: bool | None = None, local: bool | None = None) -> None:
        """Emit ``call.hold`` / ``call.resume`` when either side's hold changes."""
        if remote is not None and remote != self._held_by_remote:
            self._held_by_remote = remote
            self.emit("call.hold" if remote else "call.resume", by="remote")
        if local is not None and local != self._held_by_us:
            self._held_by_us = local
            self.emit("call.hold" if local else "call.resume", by="local")

    async def reoffer_hold(self, held: bool) -> None:
        """Put the far end on hold (``sendonly``) or take it off (a re-INVITE), and wait
        for its answer. Raises ``CallError`` when the far end refuses."""
        self.check_alive()
        if self.ua is None or self.ua.state is not CallState.CONFIRMED or self._local_sdp is None:
            raise CallError("only an answered call can be held or resumed")
        if held == self._held_by_us:
            return
        previous = self._local_sdp
        offer = sdp.hold(previous) if held else sdp.resume(previous, self._local_ip)
        waiter = trio.Event()
        try:
            self.ua.reinvite(bytes(offer), trio.current_time())
        except ProtocolError as exc:
            raise CallError(f"cannot {'hold' if held else 'resume'} now: {exc}") from None
        self._offer = offer
        self._offer_refusal = None
        self._offer_waiters.append(waiter)
        await self._pump()
        await waiter.wait()
        self.check_alive()
        if self._offer_refusal is not None:
            raise CallError(
                f"the far end refused to {'hold' if held else 'resume'}: {self._offer_refusal}"
            )

    def _on_info(self, content_type: str | None, body: bytes) -> None:
        """SIP INFO DTMF, for trunks that still send it: ``application/dtmf-relay``
        (``Signal=5``) or ``application/dtmf`` (the digit alone). Other INFOs are
        answered 200 by the engine and otherwise ignored."""
        digit = dtmf_from_info(content_type, body)
        if digit is not None:
            self.emit("call.dtmf", digit=digit, via="info")
            self.call._deliver_dtmf(digit)

    # ======================================================================
    # media
    # ======================================================================

    def _start_media(self, negotiated: sdp.NegotiatedMedia) -> None:
        """Start the media (or update it). An inbound call's media starts unconfirmed
        (183 early media, or the 200 before its ACK): anyone can forge an INVITE whose SDP
        names a third party, so until the ACK our RTP goes only to where RTP came from
        (``MediaSession(confirmed=False)``), never to the SDP's address on its word."""
        assert self._rtp is not None
        if self.session is not None:
            self.session.update(negotiated)
            return
        rtp, rtcp = self._rtp
        confirmed = self.spec.direction != "inbound" or (
            self.ua is not None and self.ua.state is CallState.CONFIRMED
        )
        self.session = media.MediaSession(
            rtp,
            negotiated,
            rtcp_sock=rtcp,
            media_timeout=self.config.limits.media_timeout_s,
            realtime_priority=self.config.rtp_realtime_priority or None,
            confirmed=confirmed,
        )
        self.session.start(trio.current_time())
        if self._audio_wanted:
            self.session.want_audio(True)
        self._nursery_start(self._media_events)

    async def _media_events(self) -> None:
        session = self.session
        assert session is not None
        async for event in media.events(session):
            match event:
                case media.DtmfReceived(digit=digit, duration_ms=duration):
                    self.emit("call.dtmf", digit=digit, duration_ms=duration)
                    self.call._deliver_dtmf(digit)
                case media.PlaybackDrained():
                    waiters, self._playback_waiters = self._playback_waiters, []
                    for waiter in waiters:
                        waiter.set()
                case media.AudioAvailable():
                    self.call._deliver_audio(session.read_audio())
                    if self._audio_wanted:
                        session.want_audio(True)  # one event per request: ask again
                case media.MediaTimeout(silent_for=silent):
                    self.emit("call.media_timeout", silent_s=round(silent, 3))
                    self.hangup("media_timeout")
                case media.RemoteLatched(address=address):
                    self.log.info("media.latched", address=list(address))
                case _:
                    pass

    def require_media(self) -> media.MediaSession:
        self.check_alive()
        if self.session is None:
            raise CallError("the call has no media (yet)")
        return self.session

    def check_alive(self) -> None:
        if self.ended.is_set():
            raise CallError("the call has ended")

    def playback_drained_event(self) -> trio.Event:
        event = trio.Event()
        self._playback_waiters.append(event)
        return event

    def want_audio(self, flag: bool) -> None:
        self._audio_wanted = flag
        if self.session is not None:
            self.session.want_audio(flag)

    def _close_media(self, *, wait: bool = True) -> None:
        """Stop the media; the final statistics are taken now. Without ``wait`` the media
        thread is joined later (a later call, at the process's end), not on the loop."""
        if self.session is not None and self._media_stats is None:
            self._media_stats = self.session.close(wait=wait).as_dict()
        elif self.session is not None and wait:
            self.session.close()
        if self._rtp is not None and self.session is None:
            for sock in self._rtp:
                if sock is not None:
                    sock.close()

    # ======================================================================
    # app, timers, ending
    # ======================================================================

    def _start_app(self) -> None:
        if self._app_started:
            return
        self._app_started = True
        self._nursery_start(self._run_app)

    async def _run_app(self) -> None:
        try:
            if self._app is not None:
                app, arg = self._app, None
            else:
                app, arg = resolve_app(self.spec.app)
            self.call.app_arg = arg
            await app(self.call)
        except CallError as exc:
            if not self.ended.is_set():
                self._app_error = str(exc)
                self.log.warning("call.app_error", error=str(exc))
                self.hangup("app_error")
            return
        except Exception as exc:  # an app's bug ends its call, never the process
            self._app_error = repr(exc)
            self.log.error("call.app_error", error=repr(exc), exc_info=True)
            self.hangup("app_error")
            return
        if not self.ended.is_set():
            self.hangup("local_hangup")

    def app_failed(self, exc: Exception) -> None:
        """An app's code outside its task failed (an audio listener): ``app_error``."""
        self._app_error = repr(exc)
        self.log.error("call.app_error", error=repr(exc), exc_info=exc)
        self.hangup("app_error")

    def recording_failed(self, reason: str) -> None:
        """A recording could not be written: end the call (BYE) with ``record_failed``."""
        self.log.warning("call.record_failed", reason=reason)
        if not self.ended.is_set() and self._end_reason is None:
            self._end_reason = reason
        self.hangup("record_failed")

    def _start_duration_timer(self) -> None:
        limit = self.spec.max_duration or self.config.limits.max_duration_s
        self._duration_deadline = trio.current_time() + limit

    async def transfer(
        self, to: str | None, *, wait: bool, replaces: Call | str | None = None
    ) -> None:
        """See ``Call.transfer``; without ``wait``, returns once the far end accepted."""
        self.check_alive()
        if self.ua is None or self.ua.state is not CallState.CONFIRMED:
            raise CallError("only an answered call can be transferred")
        dialog = self._replaced_dialog(replaces) if replaces is not None else None
        if to is None and dialog is None:
            raise CallError(
                "a transfer needs a target ('to') or a call to replace", code="bad_target"
            )
        try:
            if to is not None:
                target = dial_target(to, self.config.trunk).request_uri
            else:
                assert dialog is not None
                target = URI.parse(str(dialog["remote_target"]))
        except (DialError, SIPParseError) as exc:
            raise CallError(str(exc), code="bad_target") from None
        if dialog is not None:
            # RFC 3891 §6.1: the tags as the far end of the replaced dialog names them
            replaced = (
                f"{dialog['call_id']};to-tag={dialog['remote_tag']};from-tag={dialog['local_tag']}"
            )
            target = target.replace(headers=[("Replaces", replaced)])
        done, accepted = trio.Event(), trio.Event()
        try:
            self.ua.transfer(target, trio.current_time())
        except ProtocolError as exc:
            raise CallError(f"cannot transfer now: {exc}") from None
        self._transfer_done, self._transfer_accepted = done, accepted
        self.emit("call.transfer", state="requested", to=str(target))
        await self._pump()
        if wait:
            await done.wait()
        else:
            await _first_of(done, accepted, self.ended)
        succeeded, reason = self._transfer_outcome
        if done.is_set() and not succeeded:
            raise CallError(f"transfer to {target} failed: {reason}", code="transfer_failed")
        if wait and succeeded:
            await self.ended.wait()

    def _replaced_dialog(self, replaces: Call | str) -> dict[str, Any]:
        """The confirmed dialog of the call an attended transfer replaces, as published."""
        if isinstance(replaces, Call):
            name, state = replaces.id, replaces._runtime.publication.state
        else:
            name = replaces
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,160}", name) or name == self.spec.call:
                raise CallError(f"{name!r} is not another call", code="bad_replaces")
            path = self.publication.directory / f"{name}.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                raise CallError(f"there is no call {name!r}", code="bad_replaces") from None
        dialog = state.get("dialog") if isinstance(state, dict) else None
        if not isinstance(dialog, dict) or dialog.get("state") != "confirmed":
            raise CallError(f"call {name!r} has no answered dialog to replace", code="bad_replaces")
        if not all(
            isinstance(dialog.get(key), str)
            for key in ("call_id", "local_tag", "remote_tag", "remote_target")
        ):
            raise CallError(f"call {name!r} published no usable dialog", code="bad_replaces")
        return dialog

    def _transfer_over(self, succeeded: bool, reason: str) -> None:
        self._transfer_outcome = (succeeded, reason)
        for waiter in (self._transfer_done, self._transfer_accepted):
            if waiter is not None:
                waiter.set()

    def hangup(self, cause: str) -> None:
        """End the call for ``cause`` (BYE, CANCEL or a rejection, as the state needs)."""
        if self.ended.is_set():
            return
        now = trio.current_time()
        referral = self._referral
        if referral is not None and referral.following and self.ua is not None:
            # the target is cancelled (or never called), then the transferor hung up on
            referral.hangup_cause = referral.hangup_cause or cause
            if self.ua is referral.referrer.ua:
                referral.placing.cancel()
                self._referral_over(None)
                return
            self.ua.hangup(now)
            if self._nursery is not None:
                self._nursery.start_soon(self._pump)
            return
        if self._cause is None:
            self._cause = cause
        if self.ua is None or self.ua.state in (CallState.IDLE, CallState.TERMINATED):
            self._finish(cause, None, "")
            return
        self.ua.hangup(now)
        if self.ua.state is CallState.TERMINATING:
            self._bye_deadline = now + BYE_ANSWER_WAIT_S
        if self._nursery is not None:
            self._nursery.start_soon(self._pump)

    def _finish(self, cause: str, status: int | None, reason: str) -> None:
        if self.ended.is_set():
            return
        if self._transfer_done is not None and not self._transfer_done.is_set():
            self._transfer_over(False, "the call ended first")
        for leg in self._side_legs():
            leg.ua.hangup(trio.current_time())  # a transferor still in the call
        self._close_media(wait=False)
        now = trio.current_time()
        duration = now - self._answered_at if self._answered_at is not None else 0.0
        media_stats = self._media_stats or {}
        reason = self._end_reason or reason
        extra = {"app_error": self._app_error} if self._app_error is not None else {}
        event = self.emit(
            "call.ended",
            cause=cause,
            sip_status=status,
            reason=reason,
            answered=self._answered_at is not None,
            duration_s=round(duration, 3),
            setup_ms=round((self._answered_at - self._started) * 1000)
            if self._answered_at is not None
            else None,
            version=__version__,
            sip=self._sip_figures(),
            media={
                "packets_sent": media_stats.get("packets_sent", 0),
                "packets_received": media_stats.get("packets_received", 0),
                "packets_lost": media_stats.get("packets_lost", 0),
                "strangers": media_stats.get("strangers", 0),
                "srtp": media_stats.get("srtp"),
                "srtp_rejected": media_stats.get("srtp_rejected", 0),
                "jitter_ms": round(float(media_stats.get("jitter_ms", 0.0)), 3),
                "mos": round(float(media_stats.get("mos", 0.0)), 2) if media_stats else None,
                "rtt_ms": media_stats.get("rtt_ms"),
                "send_lateness_p99_ms": media_stats.get("send_lateness_p99_ms"),
                "realtime": media_stats.get("realtime"),
            },
            **extra,
        )
        self._end_event = event
        self.publication.publish(ended=True, dialog=None)
        self.call._close()
        for waiter in self._playback_waiters:
            waiter.set()
        self.ended.set()

    def _sip_figures(self) -> dict[str, Any]:
        local = self.endpoint.local_address if self.endpoint is not None else None
        return {
            "local": list(local) if local is not None else None,
            "transport": self.ua.config.transport.lower() if self.ua is not None else None,
            "malformed": self.ua.malformed if self.ua is not None else 0,
        }

    def _publish_dialog(self) -> None:
        """Publish the confirmed dialog so a supervisor can BYE it if we die."""
        ua, endpoint = self.ua, self.endpoint
        if self._referral is not None and self._referral.following:
            ua, endpoint = self._referral.referrer.ua, self._referral.referrer.endpoint
        if ua is None or self.ended.is_set():
            return
        dialog = ua.dialog
        confirmed = dialog is not None and ua.state is CallState.CONFIRMED
        published = self.publication.state.get("dialog")
        if not confirmed:
            if published:
                self.publication.publish(dialog=None)
            return
        assert dialog is not None
        # where the BYE goes (the next hop, located): what a supervisor cannot work out
        destination = ua.next_hop_address(dialog)
        state = {
            "state": "confirmed",
            **dialog.published_state(),
            "destination": list(destination),
        }
        if isinstance(endpoint, RelayEndpoint) and endpoint.latest is not None:
            # the supervisor's connection from the caller, which the BYE must go on
            state["transport"] = self.spec.transport
            state["connection"] = list(endpoint.latest)
        elif isinstance(endpoint, StreamEndpoint):
            # our connections die with us: the supervisor opens one of its own
            state["transport"] = endpoint.transport.lower()
            if endpoint.transport == "TLS":
                state["server_name"] = endpoint.server_name(destination)
        if published != state:
            self.publication.publish(dialog=state)

    # ======================================================================
    # the call's control socket
    # ======================================================================

    async def _control(self, request: ControlRequest) -> dict[str, Any]:
        args = request.args
        match request.op:
            case "status" | "show":
                return self.status()
            case "hangup":
                self.hangup("local_hangup")
                return {}
            case "dtmf":
                try:
                    self.require_media().send_dtmf(
                        args["digits"], int(args.get("duration_ms", 100))
                    )
                except (CallError, ValueError) as exc:
                    raise ControlError("bad_state", str(exc)) from None
                return {}
            case "play":
                directory = self.config.resolved_files_directory()
                try:
                    pcm = await trio.to_thread.run_sync(load_prompt, directory, args["file"])
                    self.require_media().play(pcm)
                except CallError as exc:
                    raise ControlError(exc.code, str(exc), field=_file_field(exc)) from None
                except media.MediaError as exc:
                    raise ControlError("bad_state", f"play: {exc}") from None
                return {"seconds": round(len(pcm) / 16000, 3)}
            case "record":
                try:
                    self.require_media()
                    self.call.start_recording(args["file"], stereo=bool(args.get("stereo")))
                except CallError as exc:
                    raise ControlError(exc.code, str(exc), field=_file_field(exc)) from None
                return {}
            case "stream":
                return self._attach_stream(args)
            case "dialog":
                return {"dialog": self.publication.state.get("dialog")}
            case "transfer":
                try:
                    await self.transfer(args.get("to"), wait=False, replaces=args.get("replaces"))
                except CallError as exc:
                    field_ = "replaces" if exc.code == "bad_replaces" else "to"
                    raise ControlError(exc.code, str(exc), field=field_) from None
                return {}
            case _:
                raise ControlError("unknown_op", f"a call does not serve {request.op!r}")

    def _attach_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        """The ``stream`` op: a media stream for the rest of the call, beside its app."""
        from gosipd.apps import stream
        from gosipd.streams import StreamOptions

        try:
            self.require_media()
        except CallError as exc:
            raise ControlError("bad_state", f"stream: {exc}") from None
        try:
            options = StreamOptions(
                url=args["url"],
                profile=args.get("profile", "twilio"),
                rate=int(args.get("rate", 8000)),
                on_error=args.get("on_error", self.config.stream.on_error),
                queue_s=float(args.get("queue_s", 10.0)),
                parameters=dict(args.get("parameters") or {}),
            )
        except ValueError as exc:
            raise ControlError("bad_field", str(exc), field="rate") from None

        async def run() -> None:
            try:
                await stream.stream_call(self.call, options)
            except CallError:
                pass  # the call ended under it
            except Exception as exc:  # a bug in the stream ends the stream, never the call
                self.log.error("call.stream_error", error=repr(exc), exc_info=True)

        self._nursery_start(run)
        return {}

    def status(self) -> dict[str, Any]:
        state = self.ua.state.value if self.ua is not None else "starting"
        info: dict[str, Any] = {
            "call": self.spec.call,
            "pid": os.getpid(),
            "version": __version__,
            "direction": self.spec.direction,
            "remote": self.remote_uri,
            "state": state,
            "sip_call_id": self.ua.call_id if self.ua is not None else None,
            "app": self.spec.app or "echo",
            "age_s": round(trio.current_time() - self._started, 3),
            "answered": self._answered_at is not None,
            "held": {"by_us": self._held_by_us, "by_remote": self._held_by_remote},
            "sip": self._sip_figures(),
        }
        if self.session is not None:
            stats = self.session.statistics()
            info["media"] = {
                "remote": list(self.session.remote),
                "codec": self.session.media.codec,
                "packets_sent": stats.packets_sent,
                "packets_received": stats.packets_received,
                "packets_lost": stats.packets_lost,
                "strangers": stats.strangers,
                "srtp": stats.srtp,
                "srtp_rejected": stats.srtp_rejected,
                "jitter_ms": round(stats.jitter_ms, 3),
            }
        return info
