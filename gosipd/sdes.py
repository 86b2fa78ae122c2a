"""SDES: SRTP keys in SDP (RFC 4568 ``a=crypto``), parsed, formatted and chosen.

Sans-I/O like ``gosipd.sdp``, which uses it for offer/answer: text in, text
out. Keys come from ``secrets`` unless the caller passes its own.

Only what SIP peers send is accepted: the ``inline:`` key method (the only
one RFC 4568 defines), one key per line, the crypto-suites of ``SUITES``,
no MKI and no session parameters (RFC 4568 §6.3: a line with a parameter
we do not understand must not be accepted, and we implement none of them).
A line we cannot use is skipped when answering, so the offerer's next
choice can be taken.

Keys must not leak: ``Crypto``'s repr hides the key, and no error message
here quotes the line it rejects.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_SUITES",
    "SUITES",
    "Crypto",
    "CryptoError",
    "SrtpKeys",
    "acceptable",
    "offer_lines",
]

#: Crypto-suite name -> (master key octets, master salt octets): RFC 4568 §6.2,
#: RFC 7714 §12 (the AEAD suite's salt is 12 octets).
SUITES: dict[str, tuple[int, int]] = {
    "AES_CM_128_HMAC_SHA1_80": (16, 14),
    "AES_CM_128_HMAC_SHA1_32": (16, 14),
    "AEAD_AES_128_GCM": (16, 12),
}
#: What we offer, most preferred first. AES_CM_128_HMAC_SHA1_80 leads: every
#: SDES peer has it, and RFC 4568 §6.2.1 makes it the one to offer.
DEFAULT_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM")

_LINE = re.compile(r"(\d{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+(\S+)((?:[ \t]+\S+)*)[ \t]*")
_LIFETIME = re.compile(r"(?:2\^(\d{1,2})|(\d{1,20}))")


class CryptoError(ValueError):
    """An ``a=crypto`` value we cannot use; the message never contains the key."""


@dataclass(frozen=True)
class Crypto:
    """One ``a=crypto:<tag> <suite> inline:<key||salt>[|<lifetime>]`` line."""

    tag: int
    suite: str
    key: bytes = field(repr=False)
    lifetime: int | None = None

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """Parse and check an ``a=crypto`` value: suite known, key of the right size."""
        m = _LINE.fullmatch(value)
        if m is None:
            raise CryptoError("a=crypto is not '<tag> <crypto-suite> <key-params>'")
        tag = int(m.group(1))
        suite = m.group(2)
        if suite not in SUITES:
            raise CryptoError(f"crypto-suite {suite[:40]!r} is not one we support")
        if m.group(4).strip():
            raise CryptoError(f"{suite}: session parameters are not supported")
        params = m.group(3)
        if ";" in params:
            raise CryptoError(f"{suite}: more than one key is not supported")
        if not params.startswith("inline:"):
            raise CryptoError(f"{suite}: the key method is not 'inline:'")
        parts = params[len("inline:") :].split("|")
        if len(parts) > 3 or (len(parts) == 3 or (len(parts) == 2 and ":" in parts[1])):
            raise CryptoError(f"{suite}: an MKI is not supported")
        try:
            key = base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(f"{suite}: the key is not base64") from None
        key_octets, salt_octets = SUITES[suite]
        if len(key) != key_octets + salt_octets:
            raise CryptoError(
                f"{suite}: the key and salt are {len(key)} octets, not {key_octets + salt_octets}"
            )
        lifetime = None
        if len(parts) == 2:
            lm = _LIFETIME.fullmatch(parts[1])
            if lm is None:
                raise CryptoError(f"{suite}: the key lifetime is not a number or 2^n")
            lifetime = 2 ** int(lm.group(1)) if lm.group(1) else int(lm.group(2))
        return cls(tag, suite, key, lifetime)

    def format(self) -> str:
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode('ascii')}"

    def with_new_key(self, keygen: Callable[[int], bytes] = secrets.token_bytes) -> Crypto:
        key_octets, salt_octets = SUITES[self.suite]
        return Crypto(self.tag, self.suite, keygen(key_octets + salt_octets))


@dataclass(frozen=True)
class SrtpKeys:
    """The outcome of SDES negotiation: one suite, our key (we send with) and theirs."""

    suite: str
    local: bytes = field(repr=False)
    remote: bytes = field(repr=False)


def offer_lines(
    suites: Sequence[str] = DEFAULT_SUITES,
    *,
    keygen: Callable[[int], bytes] = secrets.token_bytes,
) -> list[Crypto]:
    """Fresh ``a=crypto`` lines for an offer, tags 1, 2, ... in the order given."""
    lines = []
    for tag, suite in enumerate(suites, start=1):
        if suite not in SUITES:
            raise ValueError(f"SRTP crypto-suite {suite!r} is not one of {', '.join(SUITES)}")
        key_octets, salt_octets = SUITES[suite]
        lines.append(Crypto(tag, suite, keygen(key_octets + salt_octets)))
    return lines


def acceptable(values: Sequence[str], suites: Sequence[str]) -> tuple[Crypto | None, str]:
    """The first offered line we can use whose suite is in ``suites`` (the offerer's
    order of preference wins, RFC 4568 §7.1.1), else None and why not."""
    why = "the offer has no a=crypto line"
    for value in values:
        try:
            crypto = Crypto.parse(value)
        except CryptoError as exc:
            why = str(exc)
            continue
        if crypto.suite not in suites:
            why = f"crypto-suite {crypto.suite} is not enabled here"
            continue
        return crypto, ""
    return None, why
