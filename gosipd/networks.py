"""IP addresses and networks: the sets a configuration names (trunks, SBCs), and the
local address the kernel would send from. Shared by the supervisor and the calls."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["Networks", "local_address_towards"]


class Networks:
    """A set of IP networks; an empty set contains nothing."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, host: object) -> bool:
        if not self._networks or not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def local_address_towards(address: str) -> str:
    """The address the kernel would send from to reach ``address`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
