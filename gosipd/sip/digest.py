"""Digest access authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

A challenge (the parameters of a WWW-Authenticate or Proxy-Authenticate
header) and the user's credentials go in; the value of an Authorization or
Proxy-Authorization header comes out. No I/O: the client nonce comes from
an injectable source so tests can reproduce a response byte for byte.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gosipd.sip.message import Request, Response

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Credentials",
    "DigestChallenge",
    "DigestError",
    "DigestSession",
    "challenges_in",
    "credentials_in",
    "digest_response",
]

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}

#: Algorithms we can answer, strongest first (RFC 8760 asks a UAC to prefer the strongest).
SUPPORTED_ALGORITHMS = ("SHA-512-256", "SHA-256", "MD5")


class DigestError(Exception):
    """A challenge we cannot answer: unknown scheme, algorithm or qop; a missing parameter."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username and password; the password never appears in a repr or a log."""

    username: str
    password: str
    realm: str | None = None  # None: answer any realm

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', realm={self.realm!r})"


@dataclass(frozen=True)
class DigestChallenge:
    """The parameters of one Digest challenge (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # from Proxy-Authenticate (407) rather than WWW-Authenticate (401)

    @classmethod
    def from_params(
        cls, scheme: str, params: Mapping[str, str | None], *, proxy: bool = False
    ) -> DigestChallenge:
        """The challenge of a WWW-Authenticate (or, ``proxy``, Proxy-Authenticate) header
        with this scheme and these parameters (values as written, quotes included)."""
        if scheme.lower() != "digest":
            raise DigestError(f"cannot answer a {scheme!r} challenge, only Digest")
        lowered = {k.lower(): _unquote(v or "") for k, v in params.items()}
        for required in ("realm", "nonce"):
            if required not in lowered:
                raise DigestError(f"Digest challenge has no {required!r} parameter")
        algorithm = lowered.get("algorithm", "MD5").upper()
        base = algorithm.removesuffix("-SESS")
        if base not in _HASHES:
            raise DigestError(f"Digest algorithm {algorithm!r} is not supported")
        qop = tuple(q.strip().lower() for q in lowered.get("qop", "").split(",") if q.strip())
        if qop and "auth" not in qop and "auth-int" not in qop:
            raise DigestError(f"Digest qop {lowered['qop']!r} offers neither auth nor auth-int")
        return cls(
            realm=lowered["realm"],
            nonce=lowered["nonce"],
            algorithm=algorithm,
            qop=qop,
            opaque=lowered.get("opaque"),
            stale=lowered.get("stale", "").lower() == "true",
            proxy=proxy,
        )


def _unquote(value: str) -> str:
    """A parameter value as written -> its text (quoted-string unescaped)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, escaped = [], False
        for ch in value[1:-1]:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_response(
    challenge: DigestChallenge,
    credentials: Credentials,
    *,
    method: str,
    uri: str,
    body: bytes = b"",
    nonce_count: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization header value answering ``challenge`` for this request."""
    algorithm = challenge.algorithm
    hash_ = _HASHES[algorithm.removesuffix("-SESS")]

    def h(text: str) -> str:
        return hash_(text.encode("utf-8"))

    if "auth" in challenge.qop:
        qop: str | None = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    else:
        qop = None
    if cnonce is None:
        cnonce = secrets.token_hex(8)
    a1 = f"{credentials.username}:{challenge.realm}:{credentials.password}"
    ha1 = h(a1)
    if algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + hash_(body)
    ha2 = h(a2)
    nc = f"{nonce_count:08x}"
    if qop:
        response = h(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    else:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")
    parts = [
        f"username={_quote(credentials.username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(parts)


#: The challenge a request is answered for: (realm, from Proxy-Authenticate).
ChallengeKey = tuple[str, bool]


@dataclass
class DigestSession:
    """The credentials a UAC holds for one call: answered challenges, reused on later requests.

    ``answer`` is given the challenges of a 401/407 and the credentials the challenged
    request carried. A realm that request already answered challenges again: the
    credentials were refused, and (unless the server says the nonce was merely ``stale``)
    RFC 3261 §22.2 asks not to retry them, so ``answer`` returns None. A challenge to a
    request that carried nothing for the realm is always answered, so a BYE challenged
    with a fresh nonce after the INVITE went through is answered too. Answered
    challenges are replayed (nonce count advanced) on later requests of the call, as
    §22.3 allows.
    """

    credentials: Credentials
    cnonce_source: Callable[[], str] = field(default=lambda: secrets.token_hex(8))
    _active: dict[ChallengeKey, DigestChallenge] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _cnonces: dict[str, str] = field(default_factory=dict)

    def answer(
        self,
        challenges: Iterable[DigestChallenge],
        *,
        method: str,
        uri: str,
        body: bytes = b"",
        sent: Iterable[tuple[str, bool, str]] = (),
    ) -> list[tuple[str, str]] | None:
        """``accept`` the challenges, then the headers a request answering them carries
        (``headers_for``); None when we must give up."""
        if not self.accept(challenges, sent=sent):
            return None
        return self.headers_for(method=method, uri=uri, body=body)

    def accept(
        self, challenges: Iterable[DigestChallenge], *, sent: Iterable[tuple[str, bool, str]] = ()
    ) -> bool:
        """Take the challenges of a 401/407 to answer on the next requests; False when we
        must give up instead.

        ``sent``: ``(realm, proxy, nonce)`` of each credential the challenged request
        carried. False when no challenge is for our realm, or one challenges a realm the
        request already answered (with a nonce that is not stale, or with the very nonce
        it is stale about).
        """
        usable = [c for c in challenges if self.credentials.realm in (None, c.realm)]
        if not usable:
            return False
        usable.sort(key=lambda c: SUPPORTED_ALGORITHMS.index(c.algorithm.removesuffix("-SESS")))
        chosen: dict[ChallengeKey, DigestChallenge] = {}
        for challenge in usable:
            chosen.setdefault((challenge.realm, challenge.proxy), challenge)
        carried = {(realm, proxy): nonce for realm, proxy, nonce in sent}
        for key, challenge in chosen.items():
            if key in carried and (not challenge.stale or carried[key] == challenge.nonce):
                return False
        for key, challenge in chosen.items():
            self._active[key] = challenge
            self._counts[challenge.nonce] = 0
            self._cnonces[challenge.nonce] = self.cnonce_source()
        return True

    def headers_for(self, *, method: str, uri: str, body: bytes = b"") -> list[tuple[str, str]]:
        """Authorization headers for a new request, from the challenges answered so far."""
        headers = []
        for challenge in self._active.values():
            self._counts[challenge.nonce] += 1
            value = digest_response(
                challenge,
                self.credentials,
                method=method,
                uri=uri,
                body=body,
                nonce_count=self._counts[challenge.nonce],
                cnonce=self._cnonces[challenge.nonce],
            )
            name = "Proxy-Authorization" if challenge.proxy else "Authorization"
            headers.append((name, value))
        return headers


def challenges_in(response: Response) -> list[DigestChallenge]:
    """The Digest challenges of a 401/407 we can answer (others are skipped)."""
    challenges = []
    for proxy, values in ((False, response.www_authenticate), (True, response.proxy_authenticate)):
        for challenge in values:
            try:
                challenges.append(
                    DigestChallenge.from_params(challenge.scheme, challenge.params, proxy=proxy)
                )
            except DigestError:
                continue
    return challenges


def credentials_in(request: Request) -> list[tuple[str, bool, str]]:
    """(realm, proxy, nonce) of each Digest credential ``request`` carried."""
    sent = []
    for proxy, values in ((False, request.authorization), (True, request.proxy_authorization)):
        for credentials in values:
            if credentials.is_digest and credentials.realm is not None:
                sent.append((credentials.realm, proxy, credentials.nonce or ""))
    return sent
