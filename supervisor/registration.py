"""The host's one registration with the trunk (``[trunk] register``), driven from the
supervisor's inbound socket so the registrar binds the address calls must come to.

The protocol is ``gosipd.sip.registration``; this is its trio glue: locate the
registrar (RFC 3263; again after each failure, as a server may have moved), send what
the machine queues, feed it the responses ``inbound.py`` hands over, sleep until its
next timer, and report: ``supervisor.registered`` / ``supervisor.registration_failed``
to the log and to subscribers, and the state in the ``status`` op. A drain removes the
binding (the registrar then stops sending calls a draining host would refuse); undrain
registers again.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import trio

from gosipd.config import parse_hostport
from gosipd.locate import LocateError, Locator, ResolverConfig
from gosipd.log import get_logger
from gosipd.networks import local_address_towards
from gosipd.sip import URI, Response
from gosipd.sip import events as ev
from gosipd.sip.digest import Credentials
from gosipd.sip.registration import Registration, RegistrationConfig, RegistrationState
from gosipd.sip.timers import Timers

if TYPE_CHECKING:
    from .server import Supervisor

__all__ = ["RegistrationDriver"]

#: How long to wait before locating a registrar again after DNS failed.
LOCATE_RETRY = 30.0


class RegistrationDriver:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.log = get_logger(component="registration")  # after logging is configured
        config = supervisor.config
        trunk = config.trunk
        assert trunk.register and trunk.username and supervisor.sip is not None
        self.config = config
        self.port: int | None
        if trunk.registrar:
            self.host, self.port = parse_hostport(trunk.registrar, 5060, "[trunk] registrar")
        elif trunk.proxy:
            self.host, self.port = parse_hostport(trunk.proxy, 5060, "[trunk] proxy")
        else:
            assert trunk.domain is not None
            self.host, self.port = trunk.domain, None
        self.domain = trunk.domain or self.host
        self.registration: Registration | None = None
        self._wake = trio.Event()
        self._locator = Locator(
            ResolverConfig(
                nameservers=config.dns_nameservers,
                port=config.dns_port,
                timeout=config.dns_timeout_s,
            ),
            rng=random.SystemRandom(),
        )
        self._paused = False

    @property
    def destination(self) -> tuple[str, int] | None:
        return self.registration.destination if self.registration else None

    # --- what the supervisor calls -----------------------------------------------------

    def owns(self, response: Response) -> bool:
        return self.registration is not None and self.registration.owns(response)

    def deliver(self, response: Response) -> None:
        """A response that arrived on the inbound socket for our REGISTER."""
        assert self.registration is not None
        self.registration.receive(response, trio.current_time())
        self._wake.set()

    def status(self) -> dict[str, Any]:
        reg = self.registration
        if reg is None:
            return {"state": "locating", "aor": self._aor(), "registrar": self._registrar()}
        now = trio.current_time()
        next_at = reg.next_timer()
        return {
            "state": reg.state.value,
            "aor": self._aor(),
            "registrar": self._registrar(),
            "destination": f"{reg.destination[0]}:{reg.destination[1]}"
            if reg.destination
            else None,
            "contact": str(reg.config.contact),
            "expires_in": round(reg.expires_at - now, 1) if reg.expires_at else None,
            "failures": reg.failures,
            "last_status": reg.last_status,
            "last_reason": reg.last_reason,
            "next_attempt_in": round(next_at - now, 1) if next_at else None,
        }

    def pause(self) -> None:
        """Draining: remove the binding; calls in progress are not touched."""
        self._paused = True
        if self.registration is not None:
            self.registration.stop(trio.current_time())
        self._wake.set()

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    async def unregister(self, timeout: float = 2.0) -> None:
        """Remove the binding before the host goes away, waiting up to ``timeout``."""
        self.pause()
        with trio.move_on_after(timeout):
            while (reg := self.registration) and reg.state is RegistrationState.UNREGISTERING:
                await trio.sleep(0.02)

    # --- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if self._paused:
                await self._wait_resumed()
            reg = await self._start()
            while not self._paused or reg.state is RegistrationState.UNREGISTERING:
                await self._flush_and_sleep(reg)
                for event in reg.events():
                    await self._report(reg, event)
                if reg.state is RegistrationState.STOPPED:
                    break

    async def _wait_resumed(self) -> None:
        while self._paused:
            self._wake = trio.Event()
            await self._wake.wait()

    async def _start(self) -> Registration:
        while True:
            destination = await self._locate()
            if destination is not None:
                break
            await trio.sleep(LOCATE_RETRY)
        reg = self._new_registration(destination)
        self.registration = reg
        reg.start(trio.current_time())
        return reg

    def _new_registration(self, destination: tuple[str, int]) -> Registration:
        config, trunk = self.config, self.config.trunk
        listen = self.supervisor.sip.getsockname()  # type: ignore[union-attr]
        host = config.public_address or listen[0]
        if host in ("0.0.0.0", "::"):
            host = local_address_towards(destination[0])
        contact_host = f"[{host}]" if ":" in host else host
        credentials = (
            Credentials(trunk.username, trunk.password, realm=trunk.realm)
            if trunk.username and trunk.password
            else None
        )
        reg = Registration(
            RegistrationConfig(
                aor=URI.parse(self._aor()),
                registrar=URI.parse(self._registrar()),
                contact=URI.parse(f"sip:{trunk.username}@{contact_host}:{listen[1]}"),
                local_address=(host, listen[1]),
                credentials=credentials,
                expires=trunk.register_expires,
                user_agent=config.user_agent,
            ),
            timers=Timers(config.t1, config.t2, config.t4),
            rng=random.SystemRandom(),
        )
        reg.destination = destination
        return reg

    def _aor(self) -> str:
        return f"sip:{self.config.trunk.username}@{_uri_host(self.domain)}"

    def _registrar(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"sip:{_uri_host(self.host)}{port}"

    async def _locate(self) -> tuple[str, int] | None:
        try:
            location = await self._locator.locate(self.host, port=self.port)
        except LocateError as exc:
            self.log.warning("supervisor.registrar_unlocated", host=self.host, reason=str(exc))
            return None
        return location.targets[0].endpoint if location.targets else None

    async def _flush_and_sleep(self, reg: Registration) -> None:
        sock = self.supervisor.sip
        assert sock is not None
        # a fresh event before sending: a response delivered meanwhile wakes the wait
        self._wake = trio.Event()
        for data, destination in reg.datagrams_to_send():
            try:
                await sock.sendto(data, destination)
            except OSError as exc:
                reg.transport_error(destination, trio.current_time(), str(exc))
                self._wake.set()
        deadline = reg.next_timer()
        with trio.move_on_at(deadline if deadline is not None else float("inf")):
            await self._wake.wait()
        now = trio.current_time()
        if deadline is not None and now >= deadline:
            reg.handle_timer(now)

    async def _report(self, reg: Registration, event: ev.Event) -> None:
        supervisor = self.supervisor
        match event:
            case ev.Registered(expires=expires):
                supervisor.counters["registrations"] += 1
                contact = str(reg.config.contact)
                fields = {"aor": self._aor(), "expires": expires, "contact": contact}
                self.log.info("supervisor.registered", **fields)
                supervisor._publish({"event": "supervisor.registered", **fields})
            case ev.RegistrationFailed(status=status, reason=reason, retry_in=retry_in):
                supervisor.counters["registration_failures"] += 1
                fields = {
                    "aor": self._aor(),
                    "sip_status": status,
                    "reason": reason,
                    "retry_in": round(retry_in, 1),
                }
                self.log.warning("supervisor.registration_failed", **fields)
                supervisor._publish({"event": "supervisor.registration_failed", **fields})
                # the registrar may have moved, or another of its servers may answer
                destination = await self._locate()
                if destination is not None:
                    reg.destination = destination
            case ev.Unregistered():
                self.log.info("supervisor.unregistered", aor=self._aor())
                supervisor._publish({"event": "supervisor.unregistered", "aor": self._aor()})


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
