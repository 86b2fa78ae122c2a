"""Header pass-through: what a dial may add to its INVITE, and what an app is told of
an inbound INVITE's headers.

Trunks read identity from headers the engine does not own: P-Asserted-Identity and
Privacy (RFC 3325, RFC 3323) for caller ID and its withholding, Diversion and
History-Info for forwarded calls, and X- headers for whatever the carrier or the
app's own SBC agrees. Both directions go through an allow-list of names (``[headers]
send`` and ``receive``, prefixes ending in ``*``), because a dial that sets
``Require`` or ``Session-Expires`` changes what the engine must do, and a caller's
headers are hostile input of any size.

An asserted identity is only worth what its sender is: ``asserted_identity`` is
reported only for INVITEs from ``[inbound] trusted_sources`` or ``allowed_sources``
(RFC 3325 §5, the trust domain), while the raw header, as the caller sent it, stays
in ``headers`` for an app that knows better.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gosipd._sipparse import Headers, NameAddr, SIPParseError
from gosipd.networks import Networks

__all__ = [
    "DEFAULT_RECEIVE",
    "DEFAULT_SEND",
    "MAX_RECEIVED",
    "MAX_RECEIVED_VALUE",
    "RESERVED",
    "HeaderError",
    "HeaderNames",
    "Incoming",
    "check_outbound",
    "incoming",
]

#: Headers a dial may never set, whatever the allow-list says: the engine owns them
#: and a wrong one breaks the call (or, for the credentials, leaks to the wrong host).
RESERVED = frozenset(
    {
        "via",
        "v",
        "from",
        "f",
        "to",
        "t",
        "call-id",
        "i",
        "cseq",
        "contact",
        "m",
        "content-length",
        "l",
        "content-type",
        "c",
        "max-forwards",
        "route",
        "record-route",
        "authorization",
        "proxy-authorization",
    }
)

#: What a dial may set, and what an app is shown, unless ``[headers]`` says otherwise.
DEFAULT_SEND = (
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Privacy",
    "Diversion",
    "History-Info",
    "Remote-Party-ID",
    "Subject",
    "Call-Info",
    "Alert-Info",
    "User-to-User",
    "X-*",
)
DEFAULT_RECEIVE = DEFAULT_SEND

#: An inbound INVITE's headers reported at most, and the longest value reported; what
#: is over is dropped and counted (``headers_dropped``), never truncated into a lie.
MAX_RECEIVED = 32
MAX_RECEIVED_VALUE = 1024

#: Headers whose every element is a name-addr (``"Name" <uri>;params``).
_NAME_ADDR_HEADERS = frozenset(
    {"p-asserted-identity", "p-preferred-identity", "diversion", "history-info", "remote-party-id"}
)
#: RFC 3325 §9.1: one sip:/sips: and one tel: identity at most.
_IDENTITY_HEADERS = frozenset({"p-asserted-identity", "p-preferred-identity"})
#: priv-value of RFC 3323 §4.2, RFC 3325 §9.3 and RFC 7044 §7.
PRIVACY_VALUES = frozenset({"header", "session", "user", "none", "critical", "id", "history"})
_TOKEN = re.compile(r"^[A-Za-z0-9!%'+\-.^_`|~]{1,64}$")


class HeaderError(ValueError):
    """A header a dial or the configuration names that may not pass."""


@dataclass(frozen=True)
class HeaderNames:
    """An allow-list: exact names and ``Prefix-*`` patterns, case-insensitive."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> HeaderNames:
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in patterns:
            name = pattern.strip()
            prefix = name.endswith("*")
            stem = name[:-1] if prefix else name
            if not (_TOKEN.match(stem) or (prefix and not stem)):
                raise HeaderError(f"{pattern!r} is not a header name or a 'Prefix-*' pattern")
            if not prefix and stem.lower() in RESERVED:
                raise HeaderError(f"{stem} is owned by the engine and cannot pass")
            if prefix:
                prefixes.append(stem.lower())
            else:
                exact.add(stem.lower())
        return cls(frozenset(exact), tuple(prefixes))

    def allows(self, name: str) -> bool:
        key = name.lower()
        if key in RESERVED:
            return False
        return key in self.exact or any(key.startswith(p) for p in self.prefixes)


def check_outbound(headers: Sequence[tuple[str, str]], allowed: HeaderNames) -> None:
    """Refuse, naming the header, what a dial may not add or what a trunk would refuse."""
    for name, value in headers:
        if not allowed.allows(name):
            raise HeaderError(f"{name} is not in [headers] send, so a dial may not set it")
        key = name.lower()
        if key in _NAME_ADDR_HEADERS:
            elements = Headers([(name, value)]).get_all(name) or [value]
            schemes = []
            for element in elements:
                try:
                    uri = NameAddr.parse(element).uri
                except (SIPParseError, ValueError):
                    raise HeaderError(f"{name}: {element!r} is not a name-addr") from None
                schemes.append("tel" if uri.scheme == "tel" else "sip")
            if key in _IDENTITY_HEADERS and (len(schemes) > 2 or len(set(schemes)) != len(schemes)):
                raise HeaderError(f"{name} may carry one sip:/sips: and one tel: identity")
        elif key == "privacy":
            values = [v.strip().lower() for v in value.split(";")]
            unknown = [v for v in values if v not in PRIVACY_VALUES]
            if unknown:
                raise HeaderError(
                    f"Privacy: {unknown[0]!r} is not one of {', '.join(sorted(PRIVACY_VALUES))}"
                )


@dataclass(frozen=True)
class Incoming:
    """What an app is told about who is calling."""

    caller_name: str | None
    headers: tuple[tuple[str, str], ...]
    #: The first P-Asserted-Identity URI, from a trusted source only.
    asserted_identity: str | None
    trusted_source: bool
    dropped: int


def incoming(
    headers: Headers,
    from_: NameAddr,
    source_host: str,
    allowed: HeaderNames,
    trusted: Networks,
) -> Incoming:
    """The allowed headers of an inbound INVITE, bounded, and its identity."""
    kept: list[tuple[str, str]] = []
    dropped = 0
    for name, value in headers:
        if not allowed.allows(name):
            continue
        if len(kept) >= MAX_RECEIVED or len(value) > MAX_RECEIVED_VALUE:
            dropped += 1
            continue
        kept.append((name, value))
    is_trusted = source_host.strip("[]") in trusted
    identity = None
    if is_trusted:
        for element in headers.get_all("P-Asserted-Identity"):
            try:
                identity = str(NameAddr.parse(element).uri)
            except (SIPParseError, ValueError):
                continue
            break
    return Incoming(
        caller_name=from_.display_name or None,
        headers=tuple(kept),
        asserted_identity=identity,
        trusted_source=is_trusted,
        dropped=dropped,
    )
