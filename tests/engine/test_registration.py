"""REGISTER as a UA (RFC 3261 §10) against a registrar played by the test, in simulated
time: digest, refresh before expiry, 423, backoff after failures, and unregistering.

The registrar checks each Authorization itself (RFC 2617 MD5 with qop=auth, computed
here with hashlib), so a wrong digest fails the test rather than passing quietly."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import pytest

from gosipd.sip import URI, Request, Response, parse
from gosipd.sip import events as ev
from gosipd.sip.digest import Credentials
from gosipd.sip.registration import Registration, RegistrationConfig, RegistrationState
from gosipd.sip.timers import Timers

US = ("192.0.2.10", 5060)
REGISTRAR = ("192.0.2.1", 5060)
USER, PASSWORD, REALM = "12345678", "s3cret", "trunk.example"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass
class Registrar:
    """Answers REGISTER: 401 without (valid) credentials, else 200 with the binding."""

    password: str = PASSWORD
    grant: int | None = None  # expires to grant (None: what was asked)
    min_expires: int | None = None
    fresh_nonce_each_time: bool = False
    script: list[Response | None] = field(default_factory=list)  # canned answers first
    received: list[Request] = field(default_factory=list)
    nonce: str = "n0"
    _count: int = 0

    def answer(self, request: Request) -> Response | None:
        self.received.append(request)
        if self.script:
            scripted = self.script.pop(0)
            if scripted is None:
                return None  # lost
            return _as_answer(scripted, request)
        if not self._authorized(request):
            self._count += 1
            if self.fresh_nonce_each_time or not request.authorization:
                self.nonce = f"n{self._count}"
            challenge = Response.for_request(request, 401, to_tag="reg")
            challenge.headers.add(
                "WWW-Authenticate",
                f'Digest realm="{REALM}", nonce="{self.nonce}", qop="auth", algorithm=MD5',
            )
            return challenge
        asked = request.expires or 0
        if self.min_expires is not None and 0 < asked < self.min_expires:
            brief = Response.for_request(request, 423, to_tag="reg")
            brief.headers.add("Min-Expires", str(self.min_expires))
            return brief
        ok = Response.for_request(request, 200, to_tag="reg")
        if asked:
            granted = self.grant if self.grant is not None else asked
            ok.headers.add("Contact", f"{request.contact[0]};expires={granted}")
        return ok

    def _authorized(self, request: Request) -> bool:
        for credentials in request.authorization:
            param = credentials.param
            if param("nonce") != self.nonce or param("username") != USER:
                continue
            ha1 = md5(f"{USER}:{REALM}:{self.password}")
            ha2 = md5(f"REGISTER:{param('uri')}")
            nc, cnonce = param("nc"), param("cnonce")
            expected = md5(f"{ha1}:{self.nonce}:{nc}:{cnonce}:auth:{ha2}")
            return param("response") == expected
        return False


def _as_answer(response: Response, request: Request) -> Response:
    answer = Response.for_request(request, response.status, response.reason, to_tag="reg")
    for name, value in response.headers:
        if name.lower() not in ("via", "from", "to", "call-id", "cseq", "content-length"):
            answer.headers.add(name, value)
    return answer


def canned(status: int, *headers: tuple[str, str]) -> Response:
    template = Request.create(
        "REGISTER",
        "sip:x",
        from_=parse_name("<sip:x@x>;tag=1"),
        to=parse_name("<sip:x@x>"),
        call_id="c",
        cseq=1,
    )
    response = Response.for_request(template, status)
    for name, value in headers:
        response.headers.add(name, value)
    return response


def parse_name(text: str):
    from gosipd.sip import NameAddr

    return NameAddr.parse(text)


class Clock:
    """Drives a Registration against a Registrar: delivers each REGISTER at once (or
    drops it, as the registrar's script says) and fires timers in order."""

    def __init__(self, registrar: Registrar, **config: object) -> None:
        self.now = 0.0
        self.registrar = registrar
        defaults: dict[str, object] = {
            "aor": URI.parse(f"sip:{USER}@trunk.example"),
            "registrar": URI.parse("sip:trunk.example"),
            "contact": URI.parse(f"sip:{USER}@{US[0]}:{US[1]}"),
            "local_address": US,
            "credentials": Credentials(USER, PASSWORD),
            "expires": 300,
        }
        self.reg = Registration(
            RegistrationConfig(**{**defaults, **config}),  # type: ignore[arg-type]
            timers=Timers(),
            rng=random.Random(7),
        )
        self.reg.destination = REGISTRAR
        self.events: list[tuple[float, ev.Event]] = []
        self.sent: list[tuple[float, Request]] = []

    def pump(self) -> None:
        while outgoing := self.reg.datagrams_to_send():
            self._deliver(outgoing)
        self.events += [(self.now, e) for e in self.reg.events()]

    def _deliver(self, outgoing: list[tuple[bytes, tuple[str, int]]]) -> None:
        for data, destination in outgoing:
            assert destination == REGISTRAR
            request = parse(data)
            assert isinstance(request, Request)
            self.sent.append((self.now, request))
            response = self.registrar.answer(request)
            if response is not None:
                self.reg.receive(parse(bytes(response)), self.now)  # type: ignore[arg-type]

    def run(self, until: float) -> None:
        self.pump()
        while (deadline := self.reg.next_timer()) is not None and deadline <= until:
            self.now = deadline
            self.reg.handle_timer(self.now)
            self.pump()
        self.now = until

    def of(self, kind: type) -> list[tuple[float, ev.Event]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


def test_a_challenged_registration_is_answered_and_refreshed_before_it_lapses():
    clock = Clock(Registrar(grant=120))
    clock.reg.start(0.0)
    clock.run(0.0)

    assert clock.reg.state is RegistrationState.REGISTERED
    first, second = (r for _, r in clock.sent)
    assert not first.authorization and second.authorization  # 401, then the answer
    assert first.call_id == second.call_id and second.cseq.number == first.cseq.number + 1
    assert second.headers.get("Expires") == "300"
    assert str(second.contact[0].uri) == f"sip:{USER}@{US[0]}:{US[1]}"
    ((at, registered),) = clock.of(ev.Registered)
    assert registered.expires == 120 and at == 0.0

    clock.run(500.0)
    refreshes = [t for t, r in clock.sent[2:]]
    # every 88 s (120 - 32), each with the answered nonce replayed: no new challenge
    assert refreshes == [88.0, 176.0, 264.0, 352.0, 440.0]
    assert all(r.authorization for _, r in clock.sent[2:])
    assert clock.reg.state is RegistrationState.REGISTERED
    assert clock.reg.expires_at == 440.0 + 120


def test_a_refresh_challenged_with_a_new_nonce_is_answered_again():
    """A registrar that retires its nonce without saying stale is still answered."""
    clock = Clock(Registrar(fresh_nonce_each_time=True))
    clock.reg.start(0.0)
    clock.run(1000.0)

    assert clock.reg.state is RegistrationState.REGISTERED
    assert not clock.of(ev.RegistrationFailed)
    assert len(clock.of(ev.Registered)) >= 4


def test_a_423_asks_again_for_the_registrars_minimum():
    clock = Clock(Registrar(min_expires=3600), expires=60)
    clock.reg.start(0.0)
    clock.run(0.0)

    assert clock.reg.state is RegistrationState.REGISTERED
    assert [r.headers.get("Expires") for _, r in clock.sent] == ["60", "60", "3600"]
    assert clock.reg.granted == 3600


def test_wrong_credentials_fail_without_a_loop_and_retry_with_backoff():
    clock = Clock(Registrar(password="other"))
    clock.reg.start(0.0)
    clock.run(0.0)

    assert clock.reg.state is RegistrationState.FAILED
    ((_, failed),) = clock.of(ev.RegistrationFailed)
    assert failed.status == 401
    assert len(clock.sent) <= 1 + 3  # the first REGISTER, and at most three answers
    assert 15.0 <= failed.retry_in <= 30.0

    clock.run(4 * 3600.0)
    waits = [e.retry_in for _, e in clock.of(ev.RegistrationFailed)]
    windows = [min(1800.0, 30.0 * 2**i) for i in range(len(waits))]
    assert all(w / 2 <= wait <= w for wait, w in zip(waits, windows, strict=True))
    assert max(waits) <= 1800.0 and len(waits) >= 8


def test_an_unanswered_register_fails_after_timer_f_and_is_tried_again():
    clock = Clock(Registrar(script=[None] * 11))  # E retransmits: all of them lost
    clock.reg.start(0.0)
    clock.run(31.0)
    assert clock.reg.state is RegistrationState.REGISTERING
    clock.run(33.0)

    ((at, failed),) = clock.of(ev.RegistrationFailed)
    assert at == pytest.approx(32.0) and failed.status is None and failed.reason == "timeout"
    clock.run(200.0)
    assert clock.reg.state is RegistrationState.REGISTERED


def test_a_503_with_retry_after_is_honoured():
    clock = Clock(Registrar(script=[canned(503, ("Retry-After", "600"))]))
    clock.reg.start(0.0)
    clock.run(0.0)

    ((_, failed),) = clock.of(ev.RegistrationFailed)
    assert failed.status == 503 and failed.retry_in >= 600
    clock.run(599.0)
    assert len(clock.sent) == 1
    clock.run(700.0)
    assert clock.reg.state is RegistrationState.REGISTERED


def test_a_200_listing_other_bindings_but_not_ours_is_a_failure():
    other = ("Contact", "<sip:someone@198.51.100.9:5060>;expires=300")
    clock = Clock(Registrar(script=[canned(200, other)]))
    clock.reg.start(0.0)
    clock.run(0.0)

    ((_, failed),) = clock.of(ev.RegistrationFailed)
    assert failed.status == 200 and "no binding" in failed.reason


def test_stop_removes_the_binding_with_expires_0():
    clock = Clock(Registrar())
    clock.reg.start(0.0)
    clock.run(10.0)
    clock.reg.stop(clock.now)
    clock.run(20.0)

    last = clock.sent[-1][1]
    assert last.headers.get("Expires") == "0" and last.authorization
    assert clock.reg.state is RegistrationState.STOPPED
    assert clock.of(ev.Unregistered)
    clock.run(5000.0)
    assert clock.sent[-1][1] is last  # no refresh after the stop
