"""Who a call goes to and who it comes from: the Request-URI, the host to locate, the From.

Pure functions over the ``[trunk]`` configuration (see ``gosipd.config``), so the rules
read in one place and are tested without a network:

- a full SIP URI with a host (``sip:echo@127.0.0.1:5070``, ``sips:+1555@sbc.example``)
  is dialled as it is, with no trunk needed; with a trunk ``proxy`` set it is sent
  through that proxy;
- a number (``+15551234567``, ``tel:+1-555-123-4567``) goes through the trunk: the
  Request-URI is ``sip:<prefix><number>@<domain>`` (Flowroute and others route on a
  tech prefix), and the host located per RFC 3263 is the ``proxy`` if set, else the
  ``domain``;
- the From is the per-call ``from`` (a URI, a name-addr with a display name, or a bare
  number at the trunk domain), else the trunk's ``from``, else ``sip:gosipd@<our IP>``;
  the trunk's ``caller_id`` becomes its display name unless one was given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gosipd.config import ConfigError, TrunkConfig, parse_hostport
from gosipd.sip import URI, NameAddr, SIPParseError

__all__ = ["DialError", "DialTarget", "caller_identity", "dial_target", "host_key"]

#: RFC 3966 visual separators, dropped from dialled numbers.
VISUAL_SEPARATORS = re.compile(r"[-.() ]")
NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
DEFAULT_SIP_PORT = 5060


class DialError(ValueError):
    """A target or identity we cannot dial with; the message says what and why."""


@dataclass(frozen=True)
class DialTarget:
    request_uri: URI
    #: The host (and port) to locate per RFC 3263: the URI's, or the trunk proxy's.
    host: str
    port: int | None
    #: Through the configured trunk proxy (an outbound proxy for the whole dialog).
    via_proxy: bool = False
    #: The transport asked for (the URI's ;transport=, or [trunk] transport); None:
    #: RFC 3263 chooses.
    transport: str | None = None

    @property
    def secure(self) -> bool:
        return self.request_uri.scheme == "sips"


def _proxy(trunk: TrunkConfig) -> tuple[str, int] | None:
    if not trunk.proxy:
        return None
    try:
        return parse_hostport(trunk.proxy, DEFAULT_SIP_PORT, "[trunk] proxy")
    except ConfigError as exc:
        raise DialError(str(exc)) from None


def normalise_number(text: str) -> str:
    """``tel:+1-555-123-4567;phone-context=...`` -> ``+15551234567``; DialError if it is
    not a number."""
    number = text.strip().removeprefix("tel:").split(";", 1)[0]
    number = VISUAL_SEPARATORS.sub("", number)
    if not NUMBER.match(number):
        raise DialError(
            f"{text!r} is neither a SIP URI nor a phone number (digits, * and #, "
            "optionally after +)"
        )
    return number


def host_key(host: str) -> str:
    """A host as the trunk, redirect and REFER checks compare it: no IPv6 brackets,
    lower case."""
    return host.strip("[]").lower()


def dial_target(to: str, trunk: TrunkConfig) -> DialTarget:
    """The Request-URI for ``to`` and where to send it (see the module docstring)."""
    target = to.strip()
    proxy = _proxy(trunk)
    if target.lower().startswith(("sip:", "sips:")):
        try:
            uri = URI.parse(target)
        except SIPParseError as exc:
            raise DialError(f"{target!r} is not a SIP URI: {exc.reason}") from None
        if proxy is not None:
            return DialTarget(uri, proxy[0], proxy[1], via_proxy=True, transport=trunk.transport)
        return DialTarget(uri, uri.host, uri.port, transport=uri.param("transport"))
    number = normalise_number(target)
    if not trunk.configured:
        raise DialError(
            f"{target!r} is a number, and no trunk is configured to dial it "
            "(give a full SIP URI, or set [trunk] domain or proxy)"
        )
    domain = trunk.domain or (proxy[0] if proxy else "")
    uri = URI(scheme="sip", user=f"{trunk.prefix}{number}", host=domain)
    if proxy is not None:
        return DialTarget(uri, proxy[0], proxy[1], via_proxy=True, transport=trunk.transport)
    return DialTarget(uri, domain, None, transport=trunk.transport)


def caller_identity(from_: str | None, trunk: TrunkConfig, local_ip: str) -> NameAddr:
    """The From of a new call (without its tag; see the module docstring)."""
    text = (from_ or "").strip() or trunk.from_uri or f"sip:gosipd@{_uri_host(local_ip)}"
    try:
        if text.lower().startswith(("sip:", "sips:")):
            identity = NameAddr(URI.parse(text))
        elif "<" in text:
            identity = NameAddr.parse(text)
        else:
            number = normalise_number(text)
            host = trunk.domain or _uri_host(local_ip)
            identity = NameAddr(URI(scheme="sip", user=number, host=host))
    except SIPParseError as exc:
        raise DialError(f"from {text!r} is not a SIP identity: {exc.reason}") from None
    if trunk.caller_id and not identity.display_name:
        identity = identity.replace(display_name=trunk.caller_id)
    return identity


def _uri_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
