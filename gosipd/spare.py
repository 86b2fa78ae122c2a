"""A warm spare: a call process forked ahead of demand, already inside ``trio.run``.

Forking and starting a call process costs a few milliseconds of page faults
on a virtual machine (every page the child writes is copied: trio's runner,
the logger, the SIP engine's first message). The zygote keeps a couple of
spares that have paid that already, each waiting on its own socket for a
call: a dial then puts an INVITE on the wire in about the time it takes to
read the request, and the fork of the next spare happens after the reply,
off the critical path. A spare is used once, for one call: isolation is the
same as for a process forked on demand.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import structlog
import trio

__all__ = ["LISTENER_PREFIX", "LISTENER_SUFFIX", "preload", "serve_spare", "warm_up"]

#: A spare's pre-bound control socket: ``<calls dir>/spare-<pid>.listen`` (see
#: ``supervisor.registry``, which removes those of spares killed before their call).
LISTENER_PREFIX = "spare-"
LISTENER_SUFFIX = ".listen"


def preload() -> None:
    """What the zygote does once before it freezes: import every built-in app, which a
    call would otherwise import (even compile) on its own, then run what every call runs
    (``trio.run`` and ``warm_up``) a few times. Python 3.11 specialises bytecode in
    place as it runs, and every object a run allocates or frees lands in the heap's
    pages: done here, those writes happen once in the shared pages, not again in the
    private copy of each call (measured: 0.8 MB less per spare)."""
    import importlib
    import pkgutil

    from gosipd import apps

    for module in pkgutil.iter_modules(apps.__path__):
        importlib.import_module(f"{apps.__name__}.{module.name}")

    async def rehearse() -> None:
        warm_up()
        _warm_sockets()
        await trio.sleep(0)

    for _ in range(PRELOAD_RUNS):
        trio.run(rehearse)


#: Runs of the rehearsal before the freeze: the specialising interpreter settles after
#: a couple (its warm-up counters), more measured no better.
PRELOAD_RUNS = 3


def warm_up() -> None:
    """Touch what every call touches before its first packet, without any I/O."""
    from gosipd import sdp
    from gosipd.call import CallRuntime, CallSpec
    from gosipd.config import Config
    from gosipd.log import get_logger
    from gosipd.sip import URI, NameAddr, parse
    from gosipd.sip.ua import UAConfig, UserAgent

    CallRuntime(CallSpec(call="warm-up", to="sip:warm-up@127.0.0.1"), Config())

    offer = sdp.make_offer("127.0.0.1", 40000)
    ua = UserAgent(UAConfig(("127.0.0.1", 5060)))
    ua.invite(
        URI.parse("sip:warm-up@127.0.0.1:5060"),
        destination=("127.0.0.1", 5060),
        from_=NameAddr.parse("<sip:gosipd@127.0.0.1>"),
        now=0.0,
        sdp=bytes(offer),
    )
    for data, _ in ua.datagrams_to_send():
        parse(data).via  # noqa: B018 - typed access is part of the warm-up
    sdp.answer(offer, "127.0.0.1", 40002)
    ua.events()
    get_logger(call="warm-up")
    # a log line rendered (not written): every call's first event pays for it otherwise
    line: Any = {"event": "call.started", "direction": "outbound", "target": "sip:x@127.0.0.1"}
    for processor in structlog.get_config()["processors"]:
        line = processor(None, "info", line)


def _warm_sockets() -> None:
    """The sockets a call opens, opened and closed once (their code paths, their pages)."""
    from gosipd import media
    from gosipd.locate import Locator, ResolverConfig, UdpEndpoint

    UdpEndpoint("127.0.0.1", 0).close()
    try:
        rtp, rtcp = media.bind_rtp_pair("127.0.0.1", range(40000, 60000, 2))
    except OSError:
        pass
    else:
        rtp.close()
        if rtcp is not None:
            rtcp.close()
    Locator(ResolverConfig(nameservers=("127.0.0.1",)))


async def _serve(channel: socket.socket) -> int:
    from gosipd.call import CallSpec
    from gosipd.packet import fd_names, recv_packet
    from gosipd.publication import bind_listener, discard_listener
    from gosipd.worker import CONFIG, run_call

    warm_up()
    calls = Path(CONFIG.resolved_runtime_dir()) / "calls"
    _warm_sockets()
    # The call's control socket, bound now: the call only renames it into place.
    listener_path = calls / f"{LISTENER_PREFIX}{os.getpid()}{LISTENER_SUFFIX}"
    try:
        listener: tuple[socket.socket, Path] | None = (bind_listener(listener_path), listener_path)
    except OSError:
        listener = None
    channel.setblocking(False)
    try:
        while True:
            await trio.lowlevel.wait_readable(channel)
            try:
                message, fds = recv_packet(channel)
            except BlockingIOError:
                continue
            break
    except BaseException:
        if listener is not None:
            discard_listener(listener)
        raise
    channel.close()
    if message is None:
        if listener is not None:
            discard_listener(listener)
        return 0  # the zygote is going away: so do we, without a call
    spec: dict[str, Any] = message["spec"]
    named = fd_names(message, fds)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(call=spec.get("call"), pid=os.getpid())
    runtime_dir = Path(spec["runtime_dir"]) if spec.get("runtime_dir") else None
    return await run_call(CallSpec.from_dict(spec), CONFIG, named, runtime_dir, listener)


def serve_spare(channel: socket.socket) -> int:
    """The spare's whole life: warm up, wait for one call, run it."""
    return trio.run(_serve, channel)
