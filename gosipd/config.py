"""gosipd's configuration: one TOML file, sane defaults, errors that name the key.

The supervisor reads it once and hands each call worker the parsed form, so
a worker never re-reads a file that an operator may be editing. Everything
has a default: with no file at all gosipd can dial any full SIP URI.

Example (a Flowroute-style trunk)::

    [trunk]
    domain = "us-west-or.sip.flowroute.com"   # located per RFC 3263
    username = "12345678"
    password = "secret"
    from = "sip:+15551230000@us-west-or.sip.flowroute.com"
    caller_id = "Acme Support"
    prefix = "12345678*"                      # tech prefix put before dialled numbers

    [sip]
    address = "0.0.0.0"          # where call workers bind their SIP sockets
    public_address = "203.0.113.7"
    t1 = 0.5

    [rtp]
    port_min = 20000
    port_max = 29999
    srtp = "offer"               # or "required" (RTP/SAVP, no call without SRTP), "off"

    [inbound]
    listen = "0.0.0.0:5060"
    [inbound.routes]
    "support" = "ivr"
    "*" = "echo"

    [limits]
    max_calls = 500
    max_calls_per_second = 200

    [files]
    directory = "/var/lib/gosipd"  # every play/record path is relative to it
"""

from __future__ import annotations

import functools
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gosipd.passthrough import DEFAULT_RECEIVE, DEFAULT_SEND, HeaderError, HeaderNames
from gosipd.sdes import DEFAULT_SUITES
from gosipd.sdes import SUITES as SRTP_SUITES
from gosipd.sdp import SRTP_POLICIES
from gosipd.sip.session_timer import SessionTimerConfig

__all__ = [
    "Config",
    "ConfigError",
    "HeadersConfig",
    "InboundConfig",
    "Limits",
    "StreamConfig",
    "TrunkConfig",
    "load_config",
]


class ConfigError(Exception):
    """The configuration is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class TrunkConfig:
    domain: str | None = None  # located per RFC 3263 unless proxy is set
    proxy: str | None = None  # "host[:port]": every initial request goes here
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: When set, credentials answer only challenges for this realm.
    realm: str | None = None
    #: Which 3xx Contacts a call follows: "trunk" (the trunk's own domain and hosts),
    #: "any", or "none". Credentials go only to the trunk whatever this says.
    redirects: str = "trunk"
    max_redirects: int = 3
    from_uri: str | None = None
    caller_id: str | None = None
    prefix: str = ""
    #: REGISTER our inbound listener as ``sip:username@domain`` (RFC 3261 §10), for
    #: trunks that send calls only to a registered contact. The supervisor keeps the one
    #: registration of the host; ``registrar`` ("host[:port]") defaults to the proxy,
    #: else the domain located per RFC 3263.
    register: bool = False
    registrar: str | None = None
    register_expires: int = 3600
    #: "udp", "tcp" or "tls" for every call to the trunk; None: RFC 3263 chooses among
    #: [sip] transports (NAPTR, then SRV).
    transport: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.domain or self.proxy)


@dataclass(frozen=True)
class InboundConfig:
    listen: tuple[str, int] | None = None
    #: SIP over TCP and over TLS (RFC 3261 §18), beside UDP on ``listen``: the supervisor
    #: terminates the connections and relays their messages to calls by Call-ID. TLS
    #: serves ``[tls] cert_file``/``key_file``.
    listen_tcp: tuple[str, int] | None = None
    listen_tls: tuple[str, int] | None = None
    #: Connections open at once on those listeners, in all and from one address (the
    #: trusted sources are exempt from the latter); beyond them a new one is closed at once.
    max_connections: int = 1024
    max_connections_per_source: int = 16
    #: Seconds of silence both ways after which a connection no call uses is closed.
    connection_idle_s: float = 300.0
    #: Request-URI user -> app name; "*" matches anyone else.
    routes: dict[str, str] = field(default_factory=dict)
    #: The status for a user with no route (404, 480 or 486).
    unrouted_status: int = 404
    ring_ms: int = 0  # how long to send 180 before answering
    #: Ring with a 183 and SDP instead of a 180. Until the ACK, our early media goes only
    #: to where the caller's RTP comes from, never to its SDP's address alone.
    early_media: bool = False
    #: Inbound calls one source address may hold at once, and new INVITEs it may send per
    #: second (a token bucket, bursts of the same size); beyond either: 503 + Retry-After,
    #: decided before any worker is forked.
    max_calls_per_source: int = 50
    invites_per_source_per_second: float = 10.0
    #: Networks exempt from the per-source limits: the trunk's or SBC's addresses, which
    #: carry every caller's INVITEs from one source.
    trusted_sources: tuple[str, ...] = ()
    #: When set, the only networks the public SIP port answers (a trunk's published
    #: signalling addresses): datagrams from anywhere else are dropped unanswered and
    #: counted (``inbound_strangers``), so a scanner finds no SIP service at all. Empty:
    #: everyone is answered.
    allowed_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamConfig:
    """``[stream]``: media streams to WebSocket servers (the ``stream`` app)."""

    #: What a call does when its stream fails (``STREAM_ON_ERROR``): "hangup" (BYE, cause
    #: stream_failed) or "continue" (the call goes on without it). A stream's own option
    #: overrides it.
    on_error: str = "hangup"
    connect_timeout_s: float = 5.0
    #: Headers sent to one server only, by host name (``Authorization = "Bearer ..."``):
    #: a token never goes to a URL some other dial names. Never logged.
    headers: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    #: Trust store for wss:// (default: the system's); verification is always on.
    ca_file: Path | None = None


@dataclass(frozen=True)
class HeadersConfig:
    """``[headers]``: the allow-lists of header pass-through (``gosipd.passthrough``)."""

    #: What a dial's ``headers`` may set on its INVITE.
    send: HeaderNames = field(default_factory=lambda: HeaderNames.parse(DEFAULT_SEND))
    #: What of an inbound INVITE ``call.incoming`` and the Call API report.
    receive: HeaderNames = field(default_factory=lambda: HeaderNames.parse(DEFAULT_RECEIVE))


@dataclass(frozen=True)
class Limits:
    max_calls: int = 1000
    max_calls_per_second: float = 500.0
    max_duration_s: float = 4 * 3600
    ring_timeout_s: float = 60.0
    media_timeout_s: float = 30.0
    control_connections: int = 2000
    #: The share of max_calls (and of the setup rate) inbound calls can never take, so an
    #: inbound flood does not keep outbound dials from starting.
    reserved_for_dials: float = 0.2


@dataclass(frozen=True)
class Config:
    sip_address: str = "0.0.0.0"
    public_address: str | None = None
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    attempt_timeout_s: float = 2.0  # per-target INVITE timeout before failing over
    #: RFC 4028 session timers: the interval we ask for and offer (0: off) and the
    #: shortest we accept (a peer asking for less gets 422).
    session_expires: int = 1800
    min_se: int = 90
    #: Follow the far end's REFER (RFC 3515, we are the transferee): "off" (405), "trunk"
    #: (only to targets reached through the trunk) or "any" SIP URI. Every followed
    #: REFER is a call we place, and pay for: the far end chooses where.
    accept_refer: str = "off"
    #: What RFC 3263 may choose for a sip: URI without ;transport= (NAPTR/SRV order);
    #: a URI's ;transport= and sips: (TLS) are always honoured.
    transports: tuple[str, ...] = ("udp",)
    #: TLS (RFC 3261 §26.2, RFC 5630): verify the peer against the system trust store or
    #: ca_file; cert_file/key_file are our certificate for trunks that ask for one.
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify: bool = True
    rtp_port_min: int = 20000
    rtp_port_max: int = 29999
    #: SCHED_FIFO priority of each call's media thread (0: normal scheduling). Taken only
    #: where the process may (root, CAP_SYS_NICE, or systemd's LimitRTPRIO); it is what
    #: keeps the 20 ms send clock on time with hundreds of calls on a busy host.
    rtp_realtime_priority: int = 10
    #: SRTP with SDES keys (RFC 4568): "off", "offer" (when the far end takes it) or
    #: "required" (no call without it), and the crypto-suites we offer and accept.
    rtp_srtp: str = "off"
    rtp_srtp_suites: tuple[str, ...] = DEFAULT_SUITES
    dns_nameservers: tuple[str, ...] = ()
    dns_port: int = 53
    dns_timeout_s: float = 2.0
    runtime_dir: Path | None = None
    socket_path: Path | None = None
    socket_group: str | None = None
    log_level: str = "info"
    #: Sent as User-Agent/Server; empty (the default) sends neither.
    user_agent: str = ""
    #: Where play and record paths point (relative to it, never outside; see gosipd.files).
    files_directory: Path | None = None
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    limits: Limits = field(default_factory=Limits)
    stream: StreamConfig = field(default_factory=StreamConfig)
    headers: HeadersConfig = field(default_factory=HeadersConfig)

    @functools.cached_property
    def session_timer(self) -> SessionTimerConfig:
        """The session timer settings, built once (the supervisor asks per datagram)."""
        return SessionTimerConfig(interval=self.session_expires, min_se=self.min_se)

    def resolved_runtime_dir(self) -> Path:
        """Where the control socket and the calls' sockets live, the first of:

        [daemon] runtime_dir (or ``--runtime-dir``); systemd's RuntimeDirectory
        ($RUNTIME_DIRECTORY); /run/gosipd as root; $XDG_RUNTIME_DIR/gosipd; else ./run,
        beside ./out (the [files] default). Never a fixed name in /tmp, which another
        user could make first. Absolute; ``gosipd.paths.private_dir`` checks it is ours."""
        if self.runtime_dir is not None:
            return self.runtime_dir.absolute()
        systemd = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        if systemd:
            return Path(systemd)
        if os.geteuid() == 0:
            return Path("/run/gosipd")
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isabs(xdg):
            return Path(xdg) / "gosipd"
        return Path("run").absolute()

    def resolved_files_directory(self) -> Path:
        """[files] directory; else systemd's StateDirectory ($STATE_DIRECTORY), else ./out.

        Absolute, so a path resolved against it does not depend on a later chdir."""
        if self.files_directory is not None:
            return self.files_directory.absolute()
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state) if state else Path("out").absolute()

    def resolved_socket_path(self) -> Path:
        return self.socket_path or self.resolved_runtime_dir() / "control.sock"

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _check(section: str, key: str, value: Any, kind: type | tuple[type, ...], path: Path) -> Any:
    if (
        isinstance(value, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise ConfigError(f"{path}: [{section}] {key} must be {_kind_name(kind)}, not a boolean")
    if not isinstance(value, kind):
        raise ConfigError(
            f"{path}: [{section}] {key} must be {_kind_name(kind)}, not {type(value).__name__}"
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "a whole number",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_hostport(text: str, default_port: int, where: str) -> tuple[str, int]:
    """'host', 'host:port', '[v6]:port' -> (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{where}: unclosed '[' in {text!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{where}: expected ':port' after ']' in {text!r}")
            port = _port(rest[1:], where)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, where)
    if not host:
        raise ConfigError(f"{where}: no host in {text!r}")
    return host, port


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not a port number")
    return int(text)


_SIP_KEYS: dict[str, tuple[str, Kind]] = {
    "address": ("sip_address", str),
    "public_address": ("public_address", str),
    "t1": ("t1", (int, float)),
    "t2": ("t2", (int, float)),
    "t4": ("t4", (int, float)),
    "attempt_timeout": ("attempt_timeout_s", (int, float)),
    "user_agent": ("user_agent", str),
    "session_expires": ("session_expires", int),
    "min_se": ("min_se", int),
    "accept_refer": ("accept_refer", str),
}
_RTP_KEYS: dict[str, tuple[str, Kind]] = {
    "port_min": ("rtp_port_min", int),
    "port_max": ("rtp_port_max", int),
    "realtime_priority": ("rtp_realtime_priority", int),
    "srtp": ("rtp_srtp", str),
}
_TLS_KEYS: dict[str, tuple[str, Kind]] = {
    "ca_file": ("tls_ca_file", str),
    "cert_file": ("tls_cert_file", str),
    "key_file": ("tls_key_file", str),
    "verify": ("tls_verify", bool),
}
TRANSPORTS = ("udp", "tcp", "tls")
_DNS_KEYS: dict[str, tuple[str, Kind]] = {
    "port": ("dns_port", int),
    "timeout": ("dns_timeout_s", (int, float)),
}
_FILES_KEYS: dict[str, tuple[str, Kind]] = {
    "directory": ("files_directory", str),
}
_DAEMON_KEYS: dict[str, tuple[str, Kind]] = {
    "runtime_dir": ("runtime_dir", str),
    "socket": ("socket_path", str),
    "socket_group": ("socket_group", str),
    "log_level": ("log_level", str),
}
Kind = type | tuple[type, ...]
REDIRECT_POLICIES = ("trunk", "any", "none")
REFER_POLICIES = ("off", "trunk", "any")
#: What a call does when its media stream fails (``[stream] on_error``).
STREAM_ON_ERROR = ("hangup", "continue")
_TRUNK_KEYS: dict[str, Kind] = {
    "domain": str,
    "proxy": str,
    "username": str,
    "password": str,
    "realm": str,
    "redirects": str,
    "max_redirects": int,
    "from": str,
    "caller_id": str,
    "prefix": str,
    "register": bool,
    "registrar": str,
    "register_expires": int,
    "transport": str,
}
_LIMIT_KEYS: dict[str, Kind] = {
    "max_calls": int,
    "max_calls_per_second": (int, float),
    "max_duration": (int, float),
    "ring_timeout": (int, float),
    "media_timeout": (int, float),
    "control_connections": int,
    "reserved_for_dials": (int, float),
}


def load_config(path: Path | None) -> Config:
    """Read a TOML file (or nothing: the defaults) into a validated ``Config``."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data, path)


def config_from_dict(data: dict[str, Any], path: Path = Path("<config>")) -> Config:
    known = {
        "sip",
        "rtp",
        "dns",
        "daemon",
        "files",
        "trunk",
        "inbound",
        "limits",
        "stream",
        "headers",
        "tls",
    }
    for section in data:
        if section not in known:
            raise ConfigError(
                f"{path}: unknown section [{section}]; known: {', '.join(sorted(known))}"
            )
    changes: dict[str, Any] = {}
    for section, keys in (
        ("sip", _SIP_KEYS),
        ("rtp", _RTP_KEYS),
        ("dns", _DNS_KEYS),
        ("tls", _TLS_KEYS),
        ("daemon", _DAEMON_KEYS),
        ("files", _FILES_KEYS),
    ):
        table = _check("", section, data.get(section, {}), dict, path)
        for key, value in table.items():
            if section == "dns" and key == "nameservers":
                servers = _check(section, key, value, list, path)
                for server in servers:
                    _check(section, key, server, str, path)
                    try:
                        ipaddress.ip_address(server)
                    except ValueError:
                        raise ConfigError(
                            f"{path}: [dns] nameservers: {server!r} is not an IP address"
                        ) from None
                changes["dns_nameservers"] = tuple(servers)
                continue
            if section == "sip" and key == "transports":
                listed = [
                    str(_check(section, key, v, str, path)).lower()
                    for v in _check(section, key, value, list, path)
                ]
                if not listed or any(n not in TRANSPORTS for n in listed):
                    raise ConfigError(
                        f"{path}: [sip] transports must list some of {', '.join(TRANSPORTS)}"
                    )
                changes["transports"] = tuple(dict.fromkeys(listed))
                continue
            if section == "rtp" and key == "srtp_suites":
                suites = _check(section, key, value, list, path)
                for suite in suites:
                    _check(section, key, suite, str, path)
                    if suite not in SRTP_SUITES:
                        raise ConfigError(
                            f"{path}: [rtp] srtp_suites: {suite!r} is not one of "
                            f"{', '.join(SRTP_SUITES)}"
                        )
                if not suites:
                    raise ConfigError(f"{path}: [rtp] srtp_suites must name at least one suite")
                changes["rtp_srtp_suites"] = tuple(dict.fromkeys(suites))
                continue
            if key not in keys:
                raise ConfigError(f"{path}: unknown key [{section}] {key}")
            attr, kind = keys[key]
            _check(section, key, value, kind, path)
            if attr == "files_directory" and not value.strip():
                raise ConfigError(f"{path}: [files] directory must not be empty")
            if attr in ("runtime_dir", "socket_path", "files_directory"):
                value = Path(value)
            elif isinstance(value, int) and kind == (int, float):
                value = float(value)
            changes[attr] = value
    config = Config(**changes)
    if not (0 < config.t1 <= config.t2) or config.t4 <= 0:
        raise ConfigError(f"{path}: [sip] needs 0 < t1 <= t2 and t4 > 0")
    if not (1024 <= config.rtp_port_min < config.rtp_port_max <= 65535):
        raise ConfigError(f"{path}: [rtp] needs 1024 <= port_min < port_max <= 65535")
    if config.session_expires and not 90 <= config.min_se <= config.session_expires <= 86_400:
        raise ConfigError(
            f"{path}: [sip] needs 90 <= min_se <= session_expires <= 86400 "
            "(or session_expires = 0: no session timers)"
        )
    if not 0 <= config.rtp_realtime_priority <= 99:
        raise ConfigError(f"{path}: [rtp] realtime_priority must be 0 (off) to 99")
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(config, f"tls_{name}")
        if value is not None and not os.path.isfile(value):
            raise ConfigError(f"{path}: [tls] {name}: no such file {value!r}")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ConfigError(f"{path}: [tls] cert_file and key_file go together")
    if config.accept_refer not in REFER_POLICIES:
        raise ConfigError(
            f"{path}: [sip] accept_refer must be one of {', '.join(REFER_POLICIES)}, "
            f"not {config.accept_refer!r}"
        )
    if config.rtp_srtp not in SRTP_POLICIES:
        raise ConfigError(
            f"{path}: [rtp] srtp must be one of {', '.join(SRTP_POLICIES)}, not {config.rtp_srtp!r}"
        )

    trunk_table = _check("", "trunk", data.get("trunk", {}), dict, path)
    trunk: dict[str, Any] = {}
    for key, value in trunk_table.items():
        if key not in _TRUNK_KEYS:
            raise ConfigError(f"{path}: unknown key [trunk] {key}")
        _check("trunk", key, value, _TRUNK_KEYS[key], path)
        trunk["from_uri" if key == "from" else key] = value
    if "proxy" in trunk:
        parse_hostport(trunk["proxy"], 5060, f"{path}: [trunk] proxy")
    if trunk.get("redirects", "trunk") not in REDIRECT_POLICIES:
        raise ConfigError(
            f"{path}: [trunk] redirects must be one of {', '.join(REDIRECT_POLICIES)}, "
            f"not {trunk['redirects']!r}"
        )
    if ("username" in trunk or "password" in trunk) and not (
        "domain" in trunk or "proxy" in trunk or "registrar" in trunk
    ):
        raise ConfigError(
            f"{path}: [trunk] username and password need [trunk] domain or proxy (or "
            "registrar): credentials are sent only to the trunk"
        )
    if "transport" in trunk:
        trunk["transport"] = trunk["transport"].lower()
        if trunk["transport"] not in TRANSPORTS:
            raise ConfigError(f"{path}: [trunk] transport must be one of {', '.join(TRANSPORTS)}")
    if not 0 <= trunk.get("max_redirects", 0) <= 10:
        raise ConfigError(f"{path}: [trunk] max_redirects must be 0 to 10")
    if "registrar" in trunk:
        parse_hostport(trunk["registrar"], 5060, f"{path}: [trunk] registrar")
    if not 60 <= trunk.get("register_expires", 3600) <= 86_400:
        raise ConfigError(f"{path}: [trunk] register_expires must be 60 to 86400 s")
    if trunk.get("register"):
        if not ("domain" in trunk or "proxy" in trunk or "registrar" in trunk):
            raise ConfigError(f"{path}: [trunk] register needs domain, proxy or registrar")
        if "username" not in trunk:
            raise ConfigError(
                f"{path}: [trunk] register needs username (the user of the address of record)"
            )

    inbound_table = _check("", "inbound", data.get("inbound", {}), dict, path)
    inbound: dict[str, Any] = {}
    for key, value in inbound_table.items():
        if key in ("listen", "listen_tcp", "listen_tls"):
            inbound[key] = parse_hostport(
                _check("inbound", key, value, str, path),
                5061 if key == "listen_tls" else 5060,
                f"{path}: [inbound] {key}",
            )
        elif key == "routes":
            routes = _check("inbound", key, value, dict, path)
            for user, app in routes.items():
                _check("inbound.routes", user, app, str, path)
            inbound["routes"] = dict(routes)
        elif key == "unrouted_status":
            status = _check("inbound", key, value, int, path)
            if status not in (403, 404, 480, 486, 603):
                raise ConfigError(f"{path}: [inbound] unrouted_status must be 403/404/480/486/603")
            inbound[key] = status
        elif key in (
            "ring_ms",
            "max_calls_per_source",
            "max_connections",
            "max_connections_per_source",
        ):
            inbound[key] = _check("inbound", key, value, int, path)
            if inbound[key] < 0 or (key != "ring_ms" and not inbound[key]):
                raise ConfigError(f"{path}: [inbound] {key} must be positive")
        elif key in ("trusted_sources", "allowed_sources"):
            networks = _check("inbound", key, value, list, path)
            for network in networks:
                _check("inbound", key, network, str, path)
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"{path}: [inbound] {key}: {network!r} is not an address or "
                        "network (like 203.0.113.0/24)"
                    ) from None
            inbound[key] = tuple(networks)
        elif key in ("invites_per_source_per_second", "connection_idle_s"):
            rate = _check("inbound", key, value, (int, float), path)
            if rate <= 0:
                raise ConfigError(f"{path}: [inbound] {key} must be positive")
            inbound[key] = float(rate)
        elif key == "early_media":
            inbound[key] = _check("inbound", key, value, bool, path)
        else:
            raise ConfigError(f"{path}: unknown key [inbound] {key}")

    limits_table = _check("", "limits", data.get("limits", {}), dict, path)
    limits: dict[str, Any] = {}
    names = {f.name for f in fields(Limits)}
    for key, value in limits_table.items():
        if key not in _LIMIT_KEYS:
            raise ConfigError(f"{path}: unknown key [limits] {key}")
        _check("limits", key, value, _LIMIT_KEYS[key], path)
        if key == "reserved_for_dials":
            if not 0 <= value < 1:
                raise ConfigError(f"{path}: [limits] reserved_for_dials must be 0 <= share < 1")
            value = float(value)
        elif isinstance(value, int | float) and value <= 0:
            raise ConfigError(f"{path}: [limits] {key} must be positive")
        attr = key if key in names else f"{key}_s"
        limits[attr] = value
    for key in ("listen_tcp", "listen_tls"):
        if key in inbound and "listen" not in inbound:
            raise ConfigError(
                f"{path}: [inbound] {key} needs [inbound] listen: SIP is served over UDP "
                "too (RFC 3261 §18)"
            )
    if "listen_tls" in inbound and not config.tls_cert_file:
        raise ConfigError(
            f"{path}: [inbound] listen_tls needs [tls] cert_file and key_file: the "
            "certificate the listener serves"
        )
    if trunk.get("register") and "listen" not in inbound:
        raise ConfigError(
            f"{path}: [trunk] register needs [inbound] listen: the registered contact is "
            "where inbound calls arrive"
        )
    return replace(
        config,
        trunk=TrunkConfig(**trunk),
        inbound=InboundConfig(**inbound),
        limits=Limits(**limits),
        stream=_stream_config(data, path),
        headers=_headers_config(data, path),
    )


def _headers_config(data: dict[str, Any], path: Path) -> HeadersConfig:
    table = _check("", "headers", data.get("headers", {}), dict, path)
    lists: dict[str, HeaderNames] = {}
    for key, value in table.items():
        if key not in ("send", "receive"):
            raise ConfigError(f"{path}: unknown key [headers] {key}; known: receive, send")
        names = _check("headers", key, value, list, path)
        for name in names:
            _check("headers", key, name, str, path)
        try:
            lists[key] = HeaderNames.parse(names)
        except HeaderError as exc:
            raise ConfigError(f"{path}: [headers] {key}: {exc}") from None
    return HeadersConfig(**lists)


def _stream_config(data: dict[str, Any], path: Path) -> StreamConfig:
    table = _check("", "stream", data.get("stream", {}), dict, path)
    stream: dict[str, Any] = {}
    for key, value in table.items():
        if key == "on_error":
            if _check("stream", key, value, str, path) not in STREAM_ON_ERROR:
                raise ConfigError(f"{path}: [stream] on_error must be hangup or continue")
            stream["on_error"] = value
        elif key == "connect_timeout":
            seconds = _check("stream", key, value, (int, float), path)
            if not 0 < seconds <= 60:
                raise ConfigError(f"{path}: [stream] connect_timeout must be 0 to 60 s")
            stream["connect_timeout_s"] = float(seconds)
        elif key == "ca_file":
            stream["ca_file"] = Path(_check("stream", key, value, str, path))
        elif key == "headers":
            servers = _check("stream", key, value, dict, path)
            headers: dict[str, dict[str, str]] = {}
            for host, table_ in servers.items():
                named = _check("stream.headers", host, table_, dict, path)
                for name, header in named.items():
                    _check(f"stream.headers.{host}", name, header, str, path)
                    if not name.replace("-", "").isalnum() or "\r" in header or "\n" in header:
                        raise ConfigError(
                            f"{path}: [stream.headers.{host}] {name!r} is not a header"
                        )
                headers[host.lower()] = dict(named)
            stream["headers"] = headers
        else:
            raise ConfigError(f"{path}: unknown key [stream] {key}")
    return StreamConfig(**stream)
