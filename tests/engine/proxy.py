"""A small SIP proxy for the simulated network: the hop between two user agents that
real calls have (a trunk's edge proxy, Kamailio), so the engine's route sets, Record-Route,
loose and strict routing, forking and digest challenges meet a real peer.

It is deliberately simple and stateless (RFC 3261 §16.11): it adds its Via with a branch
derived from the incoming one (so a retransmission or a CANCEL takes the same branch),
stamps received/rport on the Via it got, and forwards responses by the next Via. An
initial request addressed to the proxy is retargeted to every contact in ``targets``
(a stateless proxy should pick one; forking here is what lets a test see two 2xx). It can
Record-Route (loose, with ``;lr``, or strict, as an RFC 2543 proxy), and challenge
initial requests with 401 or 407, verifying the Digest answers with its own hashlib code
(never with ``gosipd.sip.digest``), and recording every verdict in ``verdicts``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gosipd import sip
from gosipd.sip import URI, Challenge, NameAddr, Request, Response, Via
from gosipd.sip import events as ev

Address = tuple[str, int]

_HASH = {
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}


@dataclass
class Authenticator:
    """Challenges initial requests (401 with WWW-Authenticate, or 407 with
    Proxy-Authenticate) and verifies answers for ``users`` (name -> password)."""

    status: int = 407
    realm: str = "sim.test"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    algorithm: str = "MD5"
    qop: tuple[str, ...] | None = ("auth",)
    nonces: int = 0
    last_nc: dict[str, int] = field(default_factory=dict)

    @property
    def header(self) -> str:
        return "WWW-Authenticate" if self.status == 401 else "Proxy-Authenticate"

    @property
    def answer_header(self) -> str:
        return "Authorization" if self.status == 401 else "Proxy-Authorization"

    def challenge(self) -> Challenge:
        self.nonces += 1
        return Challenge.digest(
            self.realm, f"nonce{self.nonces}", algorithm=self.algorithm, qop=self.qop
        )

    def verify(self, request: Request) -> str:
        """'ok', 'none' (no credentials for our realm) or what is wrong with them."""
        credentials = request.authorization if self.status == 401 else request.proxy_authorization
        mine = [c for c in credentials if c.realm == self.realm]
        if not mine:
            return "none"
        c = mine[0]
        password = self.users.get(c.username or "")
        if password is None:
            return "unknown user"
        h = _HASH[(c.algorithm or "MD5").upper()]
        ha1 = h(f"{c.username}:{self.realm}:{password}".encode())
        ha2 = h(f"{request.method}:{c.uri}".encode())
        if c.qop:
            expected = h(f"{ha1}:{c.nonce}:{c.nc}:{c.cnonce}:{c.qop}:{ha2}".encode())
            nc = int(c.nc or "0", 16)
            if nc <= self.last_nc.get(c.nonce or "", 0):
                return f"nonce count {c.nc} reused"
            self.last_nc[c.nonce or ""] = nc
        else:
            expected = h(f"{ha1}:{c.nonce}:{ha2}".encode())
        if c.uri != str(request.uri):
            return f"uri {c.uri!r} is not the Request-URI {request.uri}"
        return "ok" if c.response == expected else "wrong response"


class Proxy:
    def __init__(
        self,
        address: Address,
        *,
        targets: list[Address] = (),  # type: ignore[assignment]
        record_route: bool = True,
        strict: bool = False,
        auth: Authenticator | None = None,
    ) -> None:
        self.address = address
        self.targets = list(targets)
        self.record_route = record_route
        self.strict = strict
        self.auth = auth
        #: (method, verdict) for every request that met the authenticator
        self.verdicts: list[tuple[str, str]] = []
        self._accepted: dict[str, list[str]] = {}  # Call-ID -> credentials of its INVITE
        self._outbox: list[tuple[bytes, Address]] = []

    @property
    def uri(self) -> URI:
        host, port = self.address
        params = {} if self.strict else {"lr": None}
        return URI(host=host, port=port, params=params)

    # the sans-I/O surface the network drives

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out

    def events(self) -> list[ev.Event]:
        return []

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def receive(self, data: bytes, source: Address, now: float) -> None:
        message = sip.parse(data)
        if isinstance(message, Response):
            self._forward_response(message)
        else:
            self._forward_request(message, source)

    # requests

    def _is_me(self, uri: URI) -> bool:
        return (uri.host, uri.port or 5060) == self.address

    def _forward_request(self, request: Request, source: Address) -> None:
        request = request.copy()
        routes = request.route
        if self.strict and self._is_me(request.uri) and routes:
            # §16.4: we are a strict router: the last Route becomes the Request-URI
            request.uri = routes[-1].uri
            routes = routes[:-1]
        elif routes and self._is_me(routes[0].uri):
            routes = routes[1:]  # loose routing: our Route entry is done
        request.route = routes
        if request.method == "ACK" and request.to.tag == "proxy":
            return  # the ACK of our own challenge
        if self.auth is not None and not self._authorized(request, source):
            return
        via = request.via[0]
        stamps: dict[str, str | None] = {}
        if via.host != source[0]:
            stamps["received"] = source[0]
        if via.has_rport:
            stamps["rport"] = str(source[1])
        if stamps:
            request.via = [via.with_params(**stamps), *request.via[1:]]
        request.max_forwards = (request.max_forwards or 70) - 1
        if self._is_me(request.uri):
            # addressed to us: retarget to every contact (initial requests, their CANCEL
            # and the ACK of a failure, which keep the original Request-URI)
            destinations = [
                (URI(user=request.uri.user, host=host, port=port), (host, port))
                for host, port in self.targets
            ]
        else:
            hop = routes[0].uri if routes else request.uri
            destinations = [(request.uri, (hop.maddr or hop.host, hop.port or 5060))]
        for uri, destination in destinations:
            forwarded = request.copy()
            forwarded.uri = uri
            branch = hashlib.sha1(f"{via.branch}|{destination}".encode()).hexdigest()[:16]
            forwarded.push_via(Via("UDP", *self.address, branch=f"z9hG4bK{branch}"))
            if self.record_route and request.method == "INVITE" and request.to.tag is None:
                forwarded.record_route = [NameAddr(self.uri), *request.record_route]
            self._outbox.append((bytes(forwarded), destination))

    def _authorized(self, request: Request, source: Address) -> bool:
        """Challenge initial requests without good credentials; note what ACK and BYE
        carried (an ACK must carry the INVITE's very credentials, §13.2.2.4)."""
        assert self.auth is not None
        header = self.auth.answer_header
        if request.method == "ACK":
            if request.to.tag is not None:
                carried = request.headers.get_all(header)
                ok = carried and carried == self._accepted.get(request.call_id)
                self.verdicts.append(("ACK", "ok" if ok else f"carried {carried!r}"))
            return True
        if request.method == "CANCEL":
            return True  # a CANCEL cannot be challenged (§22.1)
        verdict = self.auth.verify(request)
        if request.to.tag is not None:
            if verdict != "none":
                self.verdicts.append((request.method, verdict))
            return True
        self.verdicts.append((request.method, verdict))
        if verdict != "ok":
            self._challenge(request, source)
            return False
        self._accepted[request.call_id] = request.headers.get_all(header)
        return True

    def _challenge(self, request: Request, source: Address) -> None:
        assert self.auth is not None
        response = Response.for_request(request, self.auth.status, to_tag="proxy")
        response.headers.add(self.auth.header, str(self.auth.challenge()))
        via = request.via[0]
        reply = (via.received or source[0], source[1] if via.has_rport else via.port or 5060)
        self._outbox.append((bytes(response), reply))

    # responses

    def _forward_response(self, response: Response) -> None:
        hops = response.via
        if len(hops) < 2 or (hops[0].host, hops[0].port) != self.address:
            return  # not through us
        response = response.copy()
        response.pop_via()
        via = response.via[0]
        host = via.received or via.host
        port = via.rport if via.rport is not None else (via.port or 5060)
        self._outbox.append((bytes(response), (host, port)))
