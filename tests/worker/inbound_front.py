"""The supervisor's side of an inbound call, in-process, so a test can run the worker's app.

The worker's inbound contract (see ``supervisor/inbound.py``) is small: it is handed the
first INVITE (bytes, source, the address it arrived on), the app, and a duplicate of the
socket it arrived on (to answer from); datagrams that reach the public SIP port later
with the same Call-ID (retransmissions, CANCEL) are forwarded to
``<runtime>/calls/<call>.sip`` prefixed with ``"host port\\n"``. ``InboundFront`` does
exactly that on a loopback port, and starts one ``CallRuntime`` per new INVITE.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from gosipd.call import Call, CallRuntime, CallSpec
from gosipd.config import Config
from gosipd.sip import Request, SIPParseError, parse

App = Callable[[Call], Awaitable[None]]


class InboundFront:
    def __init__(self, config: Config, runtime_dir: Path, app: App | None) -> None:
        self.config = config
        self.runtime_dir = runtime_dir
        self.app = app
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.calls: dict[str, CallRuntime] = {}  # by SIP Call-ID
        self.ended = trio.Event()

    async def bind(self, host: str = "127.0.0.1") -> None:
        await self.sock.bind((host, 0))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def uri(self, user: str) -> str:
        host, port = self.address
        return f"sip:{user}@{host}:{port}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                data, source = await self.sock.recvfrom(65535)
                try:
                    message = parse(data)
                except SIPParseError:
                    continue
                if not isinstance(message, Request):
                    continue
                runtime = self.calls.get(message.call_id)
                if runtime is not None:
                    await self._forward(runtime, data, source)
                elif message.method == "INVITE":
                    runtime = CallRuntime(
                        CallSpec(
                            call=f"in{len(self.calls) + 1}",
                            direction="inbound",
                            to=str(message.uri),
                            datagram=data,
                            source=(source[0], source[1]),
                            local_host=self.address[0],
                        ),
                        self.config,
                        runtime_dir=self.runtime_dir,
                        app=self.app,
                        answer_socket=socket.socket(fileno=os.dup(self.sock.fileno())),
                    )
                    self.calls[message.call_id] = runtime
                    nursery.start_soon(self._run, runtime)

    async def _run(self, runtime: CallRuntime) -> None:
        await runtime.run()
        self.ended.set()

    async def _forward(self, runtime: CallRuntime, data: bytes, source: tuple[str, int]) -> None:
        path = self.runtime_dir / "calls" / f"{runtime.spec.call}.sip"
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        try:
            await sock.sendto(f"{source[0]} {source[1]}\n".encode() + data, str(path))
        except OSError:
            pass  # not listening (yet, or any more): a retransmission will come
        finally:
            sock.close()

    def only_call(self) -> CallRuntime:
        (runtime,) = self.calls.values()
        return runtime
