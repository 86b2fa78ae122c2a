"""RFC 3263 server location, and the failover policy that walks the located targets.

Three parts, each usable on its own:

* :class:`Locator` turns the host part of a SIP URI into an ordered list of
  :class:`Target` (address, port, transport) per RFC 3263 §4: a numeric address is used
  as is; a host with an explicit port gets A/AAAA only; otherwise NAPTR (SIP+D2U used;
  SIP+D2T, SIPS+D2T and SIP+D2S kept for later transports), then SRV (``_sip._udp``, or
  ``_sips._tcp`` for sips), then A/AAAA on the default port. SRV records are ordered by
  priority and, within a priority, by RFC 2782's weighted random selection; every
  address of every SRV target is a candidate, A and AAAA in the configured family order.
  Answers are cached for their TTL. It runs dnspython's async resolver on trio.
* :class:`Failover` is the sans-I/O policy the call worker drives while an INVITE is
  unanswered: it hands out the next target and takes the outcomes (per-target timeout,
  ICMP refusal or unreachability, 408/5xx with or without Retry-After, a provisional
  response that ends the search), caps attempts and total time, and records every step
  as an event (``locate.target``, ``locate.failover`` ...). Retry-After is honoured
  across calls in this process through :data:`RETRY_AFTER`.
* :class:`UdpEndpoint` is the trio helper that makes ICMP errors visible on one UDP socket
  (``IP_RECVERR``): :meth:`UdpEndpoint.receive` returns either a :class:`Datagram` or an
  :class:`IcmpError` naming the destination that failed, which the worker hands to
  :meth:`Failover.on_transport_error`.

Why one socket with ``IP_RECVERR`` rather than a connected socket per target: a connected
UDP socket only accepts datagrams from the address it is connected to, so requests that a
trunk sends from another address (a BYE from a second proxy) would be refused, and its
local port changes from target to target. Linux reports ICMP port unreachable on a
connected socket, but host/network unreachable (failed ARP, no route) only with
``IP_RECVERR``. One socket with ``IP_RECVERR`` keeps one local address for Via and
Contact, accepts every source, reports both kinds of ICMP error, and names the failed
destination (the error queue carries it), so an error for an old target cannot be
mistaken for one about the current target. The price is Linux-only code and one
subtlety: a pending error is also reported once by the next ``send``/``recv`` on the
socket, whatever its destination; :class:`UdpEndpoint` absorbs that.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, Literal

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver
import trio

__all__ = [
    "DEFAULT_DNS_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_TARGET_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "RETRY_AFTER",
    "Datagram",
    "DnsAnswer",
    "DnsCache",
    "DnsServerFailure",
    "DnsTimeout",
    "Exhausted",
    "FailedOver",
    "Failover",
    "FailoverError",
    "FailoverPolicy",
    "IcmpError",
    "LocateError",
    "LocateEvent",
    "Location",
    "Locator",
    "NameNotFound",
    "NaptrRecord",
    "NoTargets",
    "Reason",
    "ResolverConfig",
    "RetryAfterRegistry",
    "SrvRecord",
    "Target",
    "TargetChosen",
    "TargetSkipped",
    "Transport",
    "UdpEndpoint",
    "Verdict",
    "order_srv",
]

# --------------------------------------------------------------------------- limits

DEFAULT_SIP_PORT = 5060
DEFAULT_SIPS_PORT = 5061
DEFAULT_DNS_TIMEOUT = 2.0  # seconds for one DNS lookup, all retries included
DEFAULT_TARGET_TIMEOUT = 2.0  # seconds a target may stay silent (not Timer B's 32 s)
DEFAULT_MAX_ATTEMPTS = 8  # targets tried for one request
DEFAULT_TOTAL_TIMEOUT = 16.0  # seconds spent failing over for one request
MAX_TARGETS = 32  # candidates kept from DNS, however many records it returns
MAX_RECORDS = 64  # NAPTR or SRV records read from one answer
MAX_CACHE_ENTRIES = 1024
MAX_TTL = 86_400  # seconds; longer TTLs are clipped
MAX_NEGATIVE_TTL = 300  # seconds a negative answer (with an SOA) is cached at most
MAX_RETRY_AFTER = 3600.0  # seconds a Retry-After may keep a target out of rotation
MAX_DATAGRAM = 65_535
ERROR_QUEUE_DRAIN = 64  # error-queue entries read per wake-up

# Linux socket options (Python names IP_RECVERR only from 3.12 on).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 1, 2, 3
_SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")  # ee_errno, origin, type, code, pad, info, data


# --------------------------------------------------------------------------- errors


class LocateError(Exception):
    """A SIP URI's host could not be turned into targets; says which name and what was tried."""

    def __init__(self, name: str, reason: str, tried: Sequence[str] = ()) -> None:
        self.name = name
        self.reason = reason
        self.tried = tuple(tried)
        detail = f"; tried {', '.join(self.tried)}" if self.tried else ""
        super().__init__(f"cannot locate {name}: {reason}{detail}")


class NameNotFound(LocateError):
    """The DNS says the name does not exist (NXDOMAIN)."""


class NoTargets(LocateError):
    """The name exists but has no usable NAPTR, SRV, A or AAAA record."""


class DnsTimeout(LocateError):
    """The DNS server did not answer in time."""


class DnsServerFailure(LocateError):
    """The DNS server answered with an error (SERVFAIL, REFUSED) or a malformed reply."""


class FailoverError(LocateError):
    """:class:`Failover` was fed an outcome its state does not allow (a bug in the caller)."""


# --------------------------------------------------------------------------- targets


class Transport(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    SCTP = "sctp"


Family = Literal["ipv4", "ipv6"]

#: NAPTR services of RFC 3263 §4.1 and the transport each one means.
NAPTR_SERVICES: dict[str, Transport] = {
    "SIP+D2U": Transport.UDP,
    "SIP+D2T": Transport.TCP,
    "SIPS+D2T": Transport.TLS,
    "SIP+D2S": Transport.SCTP,
}
_SRV_PREFIX: dict[Transport, str] = {
    Transport.UDP: "_sip._udp",
    Transport.TCP: "_sip._tcp",
    Transport.TLS: "_sips._tcp",
    Transport.SCTP: "_sip._sctp",
}


@dataclass(frozen=True)
class Target:
    """One place to send a request: an IP address, a port and a transport."""

    address: str
    port: int
    transport: Transport = Transport.UDP
    name: str = ""  # the host name the address came from ("" for a numeric URI host)

    @property
    def endpoint(self) -> tuple[str, int]:
        """``(address, port)`` as a socket wants it."""
        return (self.address, self.port)

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True)
class NaptrRecord:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str

    @property
    def transport(self) -> Transport | None:
        """The transport of a SIP service we know, else None."""
        return NAPTR_SERVICES.get(self.service.upper())


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Location:
    """The located targets, best first, and how they were found."""

    targets: tuple[Target, ...]
    naptr: tuple[NaptrRecord, ...] = ()  # every NAPTR record seen, usable or not, in order
    steps: tuple[str, ...] = ()  # "NAPTR lab.test: 2 records", ... for the log


# --------------------------------------------------------------------------- SRV order


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 order: ascending priority; within one priority, a weighted random pick
    repeated until none is left (weight-0 records first in the running sum, so they are
    chosen rarely but not never)."""
    ordered: list[SrvRecord] = []
    pending = list(records)
    for priority in sorted({r.priority for r in pending}):
        group = sorted((r for r in pending if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            pick = rng.randint(0, sum(r.weight for r in group))
            running = 0
            for record in group:
                running += record.weight
                if running >= pick:
                    break
            group.remove(record)
            ordered.append(record)
    return ordered


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class DnsAnswer:
    """What one DNS question returned (parsed once, then cached): records, or a negative
    answer. Records are :class:`NaptrRecord`, :class:`SrvRecord`, or address strings."""

    records: tuple[NaptrRecord | SrvRecord | str, ...]
    nxdomain: bool = False

    def describe(self) -> str:
        if self.nxdomain:
            return "NXDOMAIN"
        if not self.records:
            return "no records"
        return f"{len(self.records)} record{'s' if len(self.records) != 1 else ''}"


class DnsCache:
    """DNS answers kept for their TTL (clipped to :data:`MAX_TTL`), on an injectable clock."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_CACHE_ENTRIES
    ) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[float, DnsAnswer]] = {}

    def get(self, name: str, rdtype: str) -> DnsAnswer | None:
        key = (name.lower().rstrip("."), rdtype)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        return answer

    def put(self, name: str, rdtype: str, answer: DnsAnswer, ttl: float) -> None:
        """Keep ``answer`` for ``ttl`` seconds (not at all for a TTL of 0); when full,
        expired entries go first, then the oldest."""
        if ttl <= 0:
            return
        now = self.clock()
        key = (name.lower().rstrip("."), rdtype)
        self._entries.pop(key, None)
        if len(self._entries) >= self.max_entries:
            for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                del self._entries[key]
            while len(self._entries) >= self.max_entries:  # oldest insertion first
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + min(ttl, MAX_TTL), answer)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------- the locator


@dataclass(frozen=True)
class ResolverConfig:
    """Where and how to ask the DNS.

    ``nameservers`` empty means the system's (``/etc/resolv.conf``). ``timeout`` bounds
    one lookup, retries included. ``families`` lists the address families to use, in
    order (``("ipv6", "ipv4")`` prefers IPv6; ``("ipv4",)`` never uses it).
    ``transports`` are the ones this client can send on, for ``sip:`` URIs; ``sips:``
    always means TLS.
    """

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = DEFAULT_DNS_TIMEOUT
    families: tuple[Family, ...] = ("ipv4", "ipv6")
    transports: tuple[Transport, ...] = (Transport.UDP,)

    def __post_init__(self) -> None:
        if not self.families or set(self.families) - {"ipv4", "ipv6"}:
            raise ValueError(f"families must be 'ipv4' and/or 'ipv6', not {self.families!r}")
        if not self.transports:
            raise ValueError("at least one transport is needed")
        if self.timeout <= 0:
            raise ValueError(f"the DNS timeout must be positive, not {self.timeout!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"the DNS port must be 1-65535, not {self.port!r}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, object]) -> ResolverConfig:
        """From a config table (``[dns]`` in TOML); an unknown key or a wrong value is an
        error that names it."""
        _known_keys(
            cls.__name__, table, ("nameservers", "port", "timeout", "families", "transports")
        )
        where = cls.__name__
        families: list[Family] = []
        for value in _list(where, table, "families", ["ipv4", "ipv6"]):
            if value not in ("ipv4", "ipv6"):
                raise ValueError(f"{where}.families: {value!r} is not 'ipv4' or 'ipv6'")
            families.append("ipv4" if value == "ipv4" else "ipv6")
        transports = []
        for value in _list(where, table, "transports", ["udp"]):
            try:
                transports.append(Transport(str(value).lower()))
            except ValueError:
                raise ValueError(f"{where}.transports: unknown transport {value!r}") from None
        return cls(
            nameservers=tuple(str(v) for v in _list(where, table, "nameservers", [])),
            port=int(_number(where, table, "port", 53, integer=True)),
            timeout=_number(where, table, "timeout", DEFAULT_DNS_TIMEOUT),
            families=tuple(families),
            transports=tuple(transports),
        )


_FAMILY_RDTYPE: dict[Family, str] = {"ipv4": "A", "ipv6": "AAAA"}


def _numeric(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class Locator:
    """RFC 3263 §4 over dnspython's async resolver (on trio), with a TTL cache.

    One locator per process is enough; it keeps the cache. ``rng`` orders SRV records
    of equal priority (inject a seeded ``random.Random`` for repeatable tests); ``cache``
    may be shared or given a fake clock.
    """

    def __init__(
        self,
        config: ResolverConfig | None = None,
        *,
        rng: random.Random | None = None,
        cache: DnsCache | None = None,
    ) -> None:
        self.config = config or ResolverConfig()
        self.rng = rng or random.Random()
        self.cache = cache if cache is not None else DnsCache()
        self._built: dns.asyncresolver.Resolver | None = None

    @property
    def _resolver(self) -> dns.asyncresolver.Resolver:
        """Built on first use: most calls dial an address or a cached name, and reading
        /etc/resolv.conf costs the better part of a millisecond on a call's setup path."""
        if self._built is None:
            resolver = dns.asyncresolver.Resolver(configure=not self.config.nameservers)
            if self.config.nameservers:
                resolver.nameservers = list(self.config.nameservers)
                resolver.port = self.config.port
            resolver.lifetime = self.config.timeout
            resolver.timeout = self.config.timeout / 2  # one retry if a datagram is lost
            resolver.cache = None  # ours has the injectable clock and the RFC 2308 rules
            self._built = resolver
        return self._built

    @property
    def nameservers(self) -> str:
        return ", ".join(f"{ns}:{self._resolver.port}" for ns in self._resolver.nameservers)

    async def locate(
        self,
        host: str,
        *,
        port: int | None = None,
        secure: bool = False,
        transport: Transport | str | None = None,
        maddr: str | None = None,
    ) -> Location:
        """The targets for a URI with this ``host`` (and ``port``, ``transport`` and
        ``maddr`` parameters, and scheme ``sips`` when ``secure``), best first.

        For an outbound proxy, locate the proxy's URI instead of the request's.
        Raises a :class:`LocateError` subclass that names the host and what was tried.
        """
        run = _Run(self, maddr or host)
        try:
            wanted = Transport(transport.lower()) if transport else None
        except ValueError:
            known = ", ".join(t.value for t in Transport)
            raise LocateError(run.name, f"unknown transport={transport} (known: {known})") from None
        if secure and wanted not in (None, Transport.TLS):
            raise LocateError(run.name, f"a sips URI cannot use transport={wanted}")
        numeric = _numeric(run.name)
        default_transport = wanted or (Transport.TLS if secure else self.config.transports[0])
        default_port = DEFAULT_SIPS_PORT if default_transport is Transport.TLS else DEFAULT_SIP_PORT
        if numeric is not None:  # §4.1/§4.2: an IP address is its own target
            target = Target(numeric, port or default_port, default_transport)
            return Location((target,), steps=(f"numeric host {target}",))
        if port is not None:  # §4.2: an explicit port means A/AAAA only
            return await run.finish(await run.addresses(run.name, port, default_transport))

        naptr: tuple[NaptrRecord, ...] = ()
        targets: list[Target] = []
        if wanted is None:
            naptr = await run.naptr(run.name)
            for record in self._usable(naptr, secure):
                assert record.transport is not None
                targets += await run.srv(record.replacement, record.transport)
        if not targets:
            # §4.1: no (usable) NAPTR: SRV for each transport we support. (Also when the
            # NAPTR's SRV names were empty: leniency that costs one lookup, never a call.)
            for kind in [wanted] if wanted else self._transports(secure):
                targets += await run.srv(f"{_SRV_PREFIX[kind]}.{run.name}", kind)
        if not targets:
            # §4.2: no SRV either: the host's own addresses on the default port
            targets = await run.addresses(run.name, default_port, default_transport)
        return await run.finish(targets, naptr)

    def _transports(self, secure: bool) -> list[Transport]:
        return [Transport.TLS] if secure else list(self.config.transports)

    def _usable(self, records: Sequence[NaptrRecord], secure: bool) -> list[NaptrRecord]:
        allowed = self._transports(secure)
        usable = [
            r
            for r in records
            if r.flags.upper() == "S"
            and r.transport in allowed
            and r.service.upper().startswith("SIPS+" if secure else "SIP")
        ]
        return sorted(usable, key=lambda r: (r.order, r.preference))

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """One DNS question through the cache. NXDOMAIN and empty answers are answers;
        a server that does not answer or fails raises :class:`DnsTimeout` or
        :class:`DnsServerFailure`."""
        cached = self.cache.get(name, rdtype)
        if cached is not None:
            return cached
        question = f"{rdtype} {name}"
        try:
            with trio.fail_after(self.config.timeout):  # dnspython may overshoot its lifetime
                reply = await self._resolver.resolve(
                    name,
                    rdtype,
                    search=False,
                    raise_on_no_answer=False,
                    backend=dns.asyncbackend.get_backend("trio"),
                )
        except dns.resolver.NXDOMAIN as exc:
            answer = DnsAnswer((), nxdomain=True)
            self.cache.put(
                name, rdtype, answer, _negative_ttl(exc.kwargs.get("responses", {}).values())
            )
            return answer
        except (dns.exception.Timeout, trio.TooSlowError):
            raise DnsTimeout(
                name,
                f"DNS server {self.nameservers} did not answer {question} "
                f"within {self.config.timeout:g} s",
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise DnsServerFailure(
                name, f"DNS server {self.nameservers} failed {question}: {exc}"
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsServerFailure(name, f"{question}: {exc}") from None
        if reply.rrset is None:
            answer = DnsAnswer(())
            self.cache.put(name, rdtype, answer, _negative_ttl([reply.response]))
            return answer
        answer = DnsAnswer(tuple(_parse(r) for r in tuple(reply.rrset)[:MAX_RECORDS]))
        self.cache.put(name, rdtype, answer, reply.chaining_result.minimum_ttl)
        return answer


def _parse(rdata: object) -> NaptrRecord | SrvRecord | str:
    """One dnspython record as our own immutable value (text conversions done once)."""
    if isinstance(rdata, dns.rdtypes.IN.NAPTR.NAPTR):
        return NaptrRecord(
            order=int(rdata.order),
            preference=int(rdata.preference),
            flags=_text(rdata.flags),
            service=_text(rdata.service),
            regexp=_text(rdata.regexp),
            replacement=str(rdata.replacement).rstrip("."),
        )
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return SrvRecord(
            int(rdata.priority), int(rdata.weight), int(rdata.port), str(rdata.target).rstrip(".")
        )
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rdata.address)
    return str(rdata)


def _negative_ttl(responses: Iterable[dns.message.Message]) -> float:
    """RFC 2308: a negative answer is cached for the SOA's TTL/minimum, and not at all
    without an SOA."""
    for response in responses:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                minimum = getattr(rrset[0], "minimum", 0)
                return float(min(rrset.ttl, minimum, MAX_NEGATIVE_TTL))
    return 0.0


class _Run:
    """One :meth:`Locator.locate` call, and what it asked, in a stable order for the log."""

    def __init__(self, locator: Locator, name: str) -> None:
        self.locator = locator
        self.name = name.strip().rstrip(".")
        self.asked: list[tuple[str, DnsAnswer]] = []  # ("A sip-a.lab.test", answer)

    async def _ask(self, name: str, rdtype: str, log: list[tuple[str, DnsAnswer]]) -> DnsAnswer:
        try:
            answer = await self.locator.query(name, rdtype)
        except LocateError as exc:  # name the URI's host and what was asked before
            raise type(exc)(self.name, exc.reason, self.steps) from None
        log.append((f"{rdtype} {name}", answer))
        return answer

    def _cached(self, name: str) -> bool:
        """Whether every address family of ``name`` is in the cache (no lookup to wait for)."""
        cache = self.locator.cache
        return all(
            cache.get(name, _FAMILY_RDTYPE[family]) is not None
            for family in self.locator.config.families
        )

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(f"{question}: {answer.describe()}" for question, answer in self.asked)

    async def naptr(self, name: str) -> tuple[NaptrRecord, ...]:
        answer = await self._ask(name, "NAPTR", self.asked)
        records = [r for r in answer.records if isinstance(r, NaptrRecord)]
        return tuple(sorted(records, key=lambda r: (r.order, r.preference)))

    async def srv(self, name: str, transport: Transport) -> list[Target]:
        answer = await self._ask(name, "SRV", self.asked)
        records = [r for r in answer.records if isinstance(r, SrvRecord)]
        # target "." says the service is decidedly not available there (RFC 2782)
        ordered = [r for r in order_srv(records, self.locator.rng) if r.target not in ("", ".")]
        # every address of every SRV target, in SRV order; all looked up at once
        found: list[list[Target]] = [[] for _ in ordered]
        logs: list[list[tuple[str, DnsAnswer]]] = [[] for _ in ordered]

        async def resolve(index: int, record: SrvRecord) -> None:
            found[index] = await self.addresses(record.target, record.port, transport, logs[index])

        jobs = [partial(resolve, index, record) for index, record in enumerate(ordered)]
        await _run_all(jobs, at_once=not all(self._cached(r.target) for r in ordered))
        for log in logs:
            self.asked += log
        return [target for targets in found for target in targets]

    async def addresses(
        self,
        name: str,
        port: int,
        transport: Transport,
        log: list[tuple[str, DnsAnswer]] | None = None,
    ) -> list[Target]:
        """A and AAAA of ``name`` (looked up together), in the configured family order."""
        families = self.locator.config.families
        answers: dict[Family, DnsAnswer] = {}
        asked: dict[Family, list[tuple[str, DnsAnswer]]] = {family: [] for family in families}

        async def ask(family: Family) -> None:
            answers[family] = await self._ask(name, _FAMILY_RDTYPE[family], asked[family])

        await _run_all(
            [partial(ask, family) for family in families], at_once=not self._cached(name)
        )
        targets = []
        for family in families:
            (self.asked if log is None else log).extend(asked[family])
            for record in answers[family].records:
                if isinstance(record, str):
                    targets.append(Target(record, port, transport, name))
        return targets

    async def finish(
        self, targets: Sequence[Target], naptr: tuple[NaptrRecord, ...] = ()
    ) -> Location:
        unique = list(dict.fromkeys(targets))[:MAX_TARGETS]
        if unique:
            return Location(tuple(unique), naptr, self.steps)
        if all(answer.nxdomain for _, answer in self.asked):
            tried = [question for question, _ in self.asked]
            raise NameNotFound(self.name, f"{self.name} does not exist (NXDOMAIN)", tried)
        raise NoTargets(self.name, "no NAPTR, SRV, A or AAAA record gives a target", self.steps)


async def _run_all(jobs: Sequence[Callable[[], Awaitable[None]]], *, at_once: bool) -> None:
    """Run the jobs one after the other (all answers are cached: no task needed) or at
    once; a LocateError from any of them is raised as itself, not in an ExceptionGroup."""
    if not at_once:
        for job in jobs:
            await job()
        return
    try:
        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(job)
    except BaseExceptionGroup as group:
        first: BaseException | None = group.subgroup(LocateError)
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if first is None:
            raise
        raise first from None


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- failover


class Reason(enum.StrEnum):
    """Why a target was left."""

    TIMEOUT = "timeout"
    PORT_UNREACHABLE = "icmp_port_unreachable"
    HOST_UNREACHABLE = "icmp_unreachable"
    RESPONSE = "response"  # 408 or 5xx; the status is in the event
    CONNECTION_LOST = "connection_lost"  # TCP/TLS: closed, reset, or broke the framing
    TLS_FAILED = "tls_failed"  # the handshake failed (certificate, protocol)


class Verdict(enum.Enum):
    """What the caller does after an outcome."""

    WAIT = "wait"  # keep waiting for this target
    FAILOVER = "failover"  # give up on it: call next_target()
    SETTLED = "settled"  # this target answers the request; failover is over
    IGNORED = "ignored"  # about another target (a late ICMP error): nothing changes


class _State(enum.Enum):
    IDLE = "idle"  # no target being tried
    WAITING = "waiting"  # request sent, nothing heard
    TRYING = "trying"  # a 100 Trying came: the server lives, its timer is off
    SETTLED = "settled"
    EXHAUSTED = "exhausted"


class _Input(enum.Enum):
    TARGET = "a target was handed out"
    NONE_LEFT = "no target is left"
    TIMEOUT = "the target timer fired"
    TRYING = "100 Trying"
    PROVISIONAL = "a provisional response 101-199"
    FINAL = "a final response that ends the search (2xx, 3xx, 4xx, 6xx)"
    RETRYABLE = "a 408 or 5xx response"
    UNREACHABLE = "an ICMP error for the target"


# Every transition of the failover machine; anything else raises FailoverError.
_TRANSITIONS: dict[tuple[_State, _Input], _State] = {
    (_State.IDLE, _Input.TARGET): _State.WAITING,
    (_State.IDLE, _Input.NONE_LEFT): _State.EXHAUSTED,
    (_State.WAITING, _Input.TIMEOUT): _State.IDLE,
    (_State.WAITING, _Input.TRYING): _State.TRYING,
    (_State.WAITING, _Input.PROVISIONAL): _State.SETTLED,
    (_State.WAITING, _Input.FINAL): _State.SETTLED,
    (_State.WAITING, _Input.RETRYABLE): _State.IDLE,
    (_State.WAITING, _Input.UNREACHABLE): _State.IDLE,
    (_State.TRYING, _Input.TRYING): _State.TRYING,
    (_State.TRYING, _Input.PROVISIONAL): _State.SETTLED,
    (_State.TRYING, _Input.FINAL): _State.SETTLED,
    (_State.TRYING, _Input.RETRYABLE): _State.IDLE,
    (_State.TRYING, _Input.UNREACHABLE): _State.IDLE,
    (_State.SETTLED, _Input.TRYING): _State.SETTLED,
    (_State.SETTLED, _Input.PROVISIONAL): _State.SETTLED,
    (_State.SETTLED, _Input.FINAL): _State.SETTLED,
    (_State.SETTLED, _Input.RETRYABLE): _State.SETTLED,
    (_State.SETTLED, _Input.UNREACHABLE): _State.SETTLED,
}


@dataclass(frozen=True)
class LocateEvent:
    """A step of the failover, for the operator: ``log.info(e.event, **e.fields())``."""

    event: ClassVar[str]

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, value in vars(self).items():
            if value is not None:
                out[name] = str(value) if isinstance(value, Target | enum.Enum) else value
        return out


@dataclass(frozen=True)
class TargetChosen(LocateEvent):
    event: ClassVar[str] = "locate.target"
    target: Target
    attempt: int


@dataclass(frozen=True)
class FailedOver(LocateEvent):
    event: ClassVar[str] = "locate.failover"
    target: Target
    reason: Reason
    status: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class TargetSkipped(LocateEvent):
    """A target still inside the Retry-After period another response gave."""

    event: ClassVar[str] = "locate.skip"
    target: Target
    reason: str
    remaining: float


@dataclass(frozen=True)
class Exhausted(LocateEvent):
    event: ClassVar[str] = "locate.exhausted"
    reason: str
    attempts: int


class RetryAfterRegistry:
    """Targets that answered with Retry-After, and until when to leave them alone.

    Shared by every :class:`Failover` in the process (:data:`RETRY_AFTER`), so a trunk
    that said "503, come back in 30 s" is not asked again by the next call. It keeps its
    own clock, because the callers' ``now`` values need not share an epoch.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[tuple[str, int, str], float] = {}

    @staticmethod
    def _key(target: Target) -> tuple[str, int, str]:
        return (target.address, target.port, str(target.transport))

    def block(self, target: Target, seconds: float) -> None:
        seconds = min(max(seconds, 0.0), MAX_RETRY_AFTER)
        until = self.clock() + seconds
        key = self._key(target)
        self._until[key] = max(until, self._until.get(key, until))

    def remaining(self, target: Target) -> float:
        """Seconds this target is still to be avoided (0 if it is not)."""
        key = self._key(target)
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left

    def clear(self) -> None:
        self._until.clear()


#: The process-wide Retry-After memory that :class:`Failover` uses by default.
RETRY_AFTER = RetryAfterRegistry()


@dataclass(frozen=True)
class FailoverPolicy:
    """How patient to be. ``target_timeout`` is the silence after which a target is
    left (default 2 s, not Timer B's 32 s); ``max_attempts`` and ``total_timeout`` cap
    the whole search. ``retryable`` statuses move on to the next target."""

    target_timeout: float = DEFAULT_TARGET_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    retryable: frozenset[int] = field(default_factory=lambda: frozenset({408, *range(500, 600)}))

    def __post_init__(self) -> None:
        if self.target_timeout <= 0 or self.total_timeout <= 0 or self.max_attempts < 1:
            raise ValueError(f"timeouts must be positive and max_attempts >= 1: {self!r}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, object]) -> FailoverPolicy:
        """From a config table (``[failover]`` in TOML); an unknown key is an error."""
        where = cls.__name__
        _known_keys(where, table, ("target_timeout", "max_attempts", "total_timeout", "retryable"))
        default = cls()
        retryable = _list(where, table, "retryable", sorted(default.retryable))
        if not all(isinstance(v, int) and 100 <= v <= 699 for v in retryable):
            raise ValueError(f"{where}.retryable: SIP status codes expected, got {retryable!r}")
        return cls(
            target_timeout=_number(where, table, "target_timeout", default.target_timeout),
            max_attempts=int(
                _number(where, table, "max_attempts", default.max_attempts, integer=True)
            ),
            total_timeout=_number(where, table, "total_timeout", default.total_timeout),
            retryable=frozenset(int(str(v)) for v in retryable),
        )


def _known_keys(where: str, table: Mapping[str, object], known: Sequence[str]) -> None:
    for key in table:
        if key not in known:
            raise ValueError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")


def _list(
    where: str, table: Mapping[str, object], key: str, default: Sequence[object]
) -> list[object]:
    value = table.get(key, default)
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}.{key}: a list expected, got {value!r}")
    return list(value)


def _number(
    where: str, table: Mapping[str, object], key: str, default: float, *, integer: bool = False
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}.{key}: a number expected, got {value!r}")
    if integer and value != int(value):
        raise ValueError(f"{where}.{key}: a whole number expected, got {value!r}")
    return float(value)


class Failover:
    """The sans-I/O walk over located targets while a request is unanswered.

    The driver (the call worker) does::

        failover = Failover(location.targets, now)
        target = failover.next_target(now)          # None: exhausted, see .exhausted
        send the INVITE to target.endpoint
        loop:
            a response:   verdict = failover.on_response(status, now, retry_after=...)
            an IcmpError: verdict = failover.on_transport_error(err.destination, err.reason, now)
            now >= failover.next_timer(): verdict = failover.handle_timer(now)
            FAILOVER: target = failover.next_target(now), a new INVITE (new branch) there
            SETTLED:  the request stays with failover.current; failover is over
        log every event of failover.pop_events()

    100 Trying stops the target's timer (the server is alive) but a 408/5xx after it
    still fails over; any other provisional response, or a final one that is not
    retryable, settles on the target. A Retry-After on a retryable response keeps the
    target out of every Failover in this process for that long.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        now: float,
        *,
        policy: FailoverPolicy | None = None,
        retry_after: RetryAfterRegistry | None = None,
    ) -> None:
        self.policy = policy or FailoverPolicy()
        self.registry = retry_after if retry_after is not None else RETRY_AFTER
        self.started = now
        self.current: Target | None = None
        self.attempts = 0
        self.exhausted: Exhausted | None = None
        self._pending = list(targets)
        self._state = _State.IDLE
        self._attempt_started = now
        self._events: list[LocateEvent] = []
        self.history: list[LocateEvent] = []  # every event, kept for the call's summary

    def _move(self, what: _Input) -> _State:
        try:
            self._state = _TRANSITIONS[(self._state, what)]
        except KeyError:
            raise FailoverError(
                str(self.current or "-"),
                f"{what.value} is not expected in state {self._state.value}",
            ) from None
        return self._state

    def _record(self, event: LocateEvent) -> None:
        self._events.append(event)
        self.history.append(event)

    @property
    def settled(self) -> bool:
        return self._state is _State.SETTLED

    def pop_events(self) -> list[LocateEvent]:
        """The events recorded since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def next_target(self, now: float) -> Target | None:
        """The next target to try, or None when the search is over (:attr:`exhausted`
        says why: no target left, attempt cap, time cap)."""
        if self._state is _State.EXHAUSTED:
            return None
        reason = None
        while reason is None:
            if self.attempts >= self.policy.max_attempts:
                reason = f"attempt cap reached ({self.policy.max_attempts} targets tried)"
            elif now - self.started >= self.policy.total_timeout:
                reason = f"time cap reached ({self.policy.total_timeout:g} s)"
            elif not self._pending:
                reason = "no target left" if self.attempts else "no target to try"
            else:
                target = self._pending.pop(0)
                remaining = self.registry.remaining(target)
                if remaining > 0:
                    self._record(TargetSkipped(target, "retry_after", round(remaining, 3)))
                    continue
                self._move(_Input.TARGET)
                self.current = target
                self.attempts += 1
                self._attempt_started = now
                self._record(TargetChosen(target, self.attempts))
                return target
        self._move(_Input.NONE_LEFT)
        self.current = None
        self.exhausted = Exhausted(reason, self.attempts)
        self._record(self.exhausted)
        return None

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called, or None if no timer runs."""
        if self._state is not _State.WAITING:
            return None
        return min(
            self._attempt_started + self.policy.target_timeout,
            self.started + self.policy.total_timeout,
        )

    def handle_timer(self, now: float) -> Verdict:
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return Verdict.WAIT if self._state is not _State.SETTLED else Verdict.SETTLED
        return self._fail(_Input.TIMEOUT, Reason.TIMEOUT)

    def on_response(
        self,
        status: int,
        now: float,
        *,
        retry_after: float | None = None,
        target: Target | None = None,
    ) -> Verdict:
        """A response to the request sent to ``target`` (default: the current one)."""
        if target is not None and target != self.current:
            return Verdict.IGNORED
        if not 100 <= status <= 699:
            raise FailoverError(str(self.current or "-"), f"{status} is not a SIP status code")
        if status == 100:
            self._move(_Input.TRYING)
            return Verdict.WAIT if self._state is _State.TRYING else Verdict.SETTLED
        if status < 200:
            self._move(_Input.PROVISIONAL)
            return Verdict.SETTLED
        if status in self.policy.retryable:
            if self._state is _State.SETTLED:
                return Verdict.SETTLED
            if retry_after is not None and self.current is not None:
                self.registry.block(self.current, retry_after)
            return self._fail(_Input.RETRYABLE, Reason.RESPONSE, status, retry_after)
        self._move(_Input.FINAL)
        return Verdict.SETTLED

    def on_transport_error(
        self, destination: tuple[str, int], reason: Reason, now: float
    ) -> Verdict:
        """An ICMP error (or a send that failed) for ``destination``; errors about any
        other address (an earlier target) are ignored."""
        if self.current is None or not _same_endpoint(destination, self.current.endpoint):
            return Verdict.IGNORED
        if self._state is _State.SETTLED:
            return Verdict.SETTLED
        return self._fail(_Input.UNREACHABLE, reason)

    def _fail(
        self,
        what: _Input,
        reason: Reason,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> Verdict:
        target = self.current
        self._move(what)
        assert target is not None
        self._record(FailedOver(target, reason, status, retry_after))
        self.current = None
        return Verdict.FAILOVER


def _same_endpoint(a: tuple[str, int], b: tuple[str, int]) -> bool:
    return a[1] == b[1] and _plain_address(a[0]) == _plain_address(b[0])


def _plain_address(address: str) -> str:
    """``::ffff:1.2.3.4`` -> ``1.2.3.4``; other addresses in their canonical spelling."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


# --------------------------------------------------------------------------- ICMP on trio


@dataclass(frozen=True)
class Datagram:
    data: bytes
    source: tuple[str, int]


@dataclass(frozen=True)
class IcmpError:
    """A datagram we sent to ``destination`` failed. ``reason`` is the failover reason
    (None for errors that are no reason to fail over, such as a too-big datagram)."""

    destination: tuple[str, int]
    reason: Reason | None
    errno: int
    reporter: str | None = None  # who sent the ICMP (a router, the host, ourselves)
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def description(self) -> str:
        return errno.errorcode.get(self.errno, str(self.errno))


# ICMP host/network unreachable (and administratively prohibited), or a local refusal
_UNREACHABLE_ERRNOS = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EACCES,
        errno.EPERM,
        errno.ENETDOWN,
        errno.EADDRNOTAVAIL,
    }
)


def _reason_for(code: int) -> Reason | None:
    if code == errno.ECONNREFUSED:
        return Reason.PORT_UNREACHABLE
    if code in _UNREACHABLE_ERRNOS:
        return Reason.HOST_UNREACHABLE
    return None


def _sockaddr_host(raw: bytes) -> str | None:
    """The address in a ``struct sockaddr_in``/``sockaddr_in6`` (the ICMP offender)."""
    if len(raw) >= 8 and int.from_bytes(raw[:2], "little") == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8])
    if len(raw) >= 24 and int.from_bytes(raw[:2], "little") == socket.AF_INET6:
        return _plain_address(socket.inet_ntop(socket.AF_INET6, raw[8:24]))
    return None


class UdpEndpoint:
    """One UDP socket with ICMP errors reported per destination (``IP_RECVERR``).

    ``await receive()`` returns the next :class:`Datagram` or :class:`IcmpError`; a send
    that fails at once (no route) is reported the same way, by the next ``receive``. An
    IPv6 endpoint (``host="::"``) is dual-stack and takes IPv4 destinations as they are.
    Source and destination addresses come back in their plain form (no ``::ffff:``).
    """

    def __init__(self, host: str = "0.0.0.0", port: int = 0) -> None:
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            if self.family == socket.AF_INET6:
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                self._sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            self._sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self._sock.bind((host, port))
        except BaseException:
            self._sock.close()
            raise
        self._errors: list[IcmpError] = []

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return (_plain_address(host), port)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> UdpEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _socket_address(self, destination: tuple[str, int]) -> tuple[str, int]:
        host, port = destination
        if self.family == socket.AF_INET6 and ":" not in host:
            return (f"::ffff:{host}", port)
        if self.family == socket.AF_INET and ":" in host:
            raise ValueError(
                f"an IPv4 endpoint cannot send to {host}; open the UdpEndpoint on '::'"
            )
        return (host, port)

    async def send(self, data: bytes, destination: tuple[str, int]) -> None:
        """Send one datagram. Errors about ``destination`` come out of :meth:`receive`."""
        if len(data) > MAX_DATAGRAM:
            raise ValueError(f"a {len(data)}-byte datagram exceeds {MAX_DATAGRAM} bytes")
        address = self._socket_address(destination)
        await trio.lowlevel.checkpoint_if_cancelled()
        retried = False
        while True:
            try:
                self._sock.sendto(data, address)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
            except OSError as exc:
                # A pending error (ICMP for an earlier datagram) is reported by whichever
                # call comes next, whatever its destination: it is in the error queue,
                # so collect it and try again. A second failure is about this destination.
                if retried or not self._drain_error_queue():
                    code = exc.errno or 0
                    reason = _reason_for(code) or Reason.HOST_UNREACHABLE  # cannot get there
                    self._errors.append(IcmpError(destination, reason, code))
                    break
                retried = True
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> Datagram | IcmpError:
        """The next datagram received, or the next ICMP error about one we sent."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._errors or self._drain_error_queue():
                await trio.lowlevel.cancel_shielded_checkpoint()
                return self._errors.pop(0)
            try:
                data, source = self._sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except OSError as exc:
                # an ICMP error reported once by recv; its details are in the error queue
                if self._drain_error_queue() or _reason_for(exc.errno or 0) is not None:
                    continue
                raise
            await trio.lowlevel.cancel_shielded_checkpoint()
            return Datagram(data, (_plain_address(source[0]), source[1]))

    def _drain_error_queue(self) -> bool:
        """Move the socket's error queue into :attr:`_errors`; whether anything came."""
        found = False
        for _ in range(ERROR_QUEUE_DRAIN):
            try:
                _, ancillary, _, address = self._sock.recvmsg(
                    512, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT
                )
            except (BlockingIOError, InterruptedError):
                break
            for level, kind, payload in ancillary:
                if (level, kind) not in (
                    (socket.IPPROTO_IP, IP_RECVERR),
                    (socket.IPPROTO_IPV6, IPV6_RECVERR),
                ) or len(payload) < _SOCK_EXTENDED_ERR.size:
                    continue
                code, origin, icmp_type, icmp_code, _, _, _ = _SOCK_EXTENDED_ERR.unpack_from(
                    payload
                )
                icmp = origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6)
                self._errors.append(
                    IcmpError(
                        destination=(_plain_address(address[0]), address[1]),
                        reason=_reason_for(code),
                        errno=code,
                        reporter=_sockaddr_host(payload[_SOCK_EXTENDED_ERR.size :])
                        if icmp or origin == SO_EE_ORIGIN_LOCAL
                        else None,
                        icmp_type=icmp_type if icmp else None,
                        icmp_code=icmp_code if icmp else None,
                    )
                )
                found = True
        return found
