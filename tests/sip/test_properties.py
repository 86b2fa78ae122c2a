"""Property tests: any bytes give a message or SIPParseError (nothing else, no hang),
and any message built from valid parts survives serialise -> parse unchanged."""

from __future__ import annotations

import ipaddress
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gosipd import sip
from gosipd.sip import URI, CSeq, NameAddr, Via

from .exercise import PIECES, corpus, exercise

#: GOSIPD_SIP_EXAMPLES=50 runs fifty times as many examples (a soak; tests/fuzz/fuzz_sip.py
#: is the million-input run).
SCALE = int(os.environ.get("GOSIPD_SIP_EXAMPLES", "1"))
CORPUS = corpus()


@settings(max_examples=400 * SCALE, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_sipparseerror(data: bytes) -> None:
    exercise(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "splice", "token"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "splice":
            other = draw(st.sampled_from(CORPUS))
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start : start + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.sampled_from(PIECES))
    return bytes(data)


@settings(max_examples=600 * SCALE, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_real_messages_parse_or_raise_sipparseerror(data: bytes) -> None:
    exercise(data)


# -- generated valid messages round-trip

TOKEN = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN, min_size=1, max_size=12)
labels = st.from_regex(r"\A[a-z]([a-z0-9-]{0,8}[a-z0-9])?\Z")
hostnames = st.builds(
    lambda ls, top: ".".join([*ls, top]),
    st.lists(labels, max_size=3),
    st.from_regex(r"\A[a-z][a-z0-9]{0,5}\Z"),
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(a).compressed)
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(0, 65535)
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=16
)
uri_params = st.lists(
    st.tuples(tokens, st.none() | st.text(min_size=1, max_size=8)),
    max_size=3,
    unique_by=lambda kv: kv[0].lower(),
)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> URI:
    user = draw(st.none() | st.text(min_size=1, max_size=12))
    return URI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=draw(st.none() | st.text(max_size=6)) if user is not None else None,
        host=draw(hosts),
        port=draw(ports),
        params=draw(uri_params),
        headers=draw(
            st.lists(
                st.tuples(tokens, st.text(max_size=8)),
                max_size=2 if with_headers else 0,
                unique_by=lambda kv: kv[0].lower(),
            )
        ),
    )


tel_uris = st.builds(lambda n: URI(scheme="tel", user="+" + n), st.from_regex(r"\A[0-9]{1,15}\Z"))
uris = st.one_of(sip_uris(), tel_uris)
request_uris = st.one_of(sip_uris(with_headers=False), tel_uris)  # no '?' in a Request-URI
header_params = st.lists(
    st.tuples(tokens, st.none() | tokens | text.map(sip.quote)),
    max_size=3,
    unique_by=lambda kv: kv[0].lower(),
).map(lambda items: [(k, v) for k, v in items if k.lower() not in ("tag", "q", "expires")])


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    address = NameAddr(draw(uris), draw(st.none() | text), draw(header_params))
    tag = draw(st.none() | tokens)
    return address.with_tag(tag) if tag is not None else address


@st.composite
def vias(draw: st.DrawFn) -> Via:
    return Via(
        draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"])),
        draw(hosts),
        draw(ports),
        branch="z9hG4bK" + draw(tokens),
        rport=draw(st.booleans()),
    )


@settings(max_examples=300 * SCALE, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=tokens,
    uri=request_uris,
    from_=name_addrs(),
    to=name_addrs(),
    call_id=st.from_regex(
        r"\A[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,20}(@[A-Za-z0-9.]{1,10})?\Z"
    ),
    number=st.integers(0, 2**31 - 1),
    hops=st.lists(vias(), min_size=1, max_size=3),
    contacts=st.lists(name_addrs(), max_size=2),
    extra=st.lists(st.tuples(tokens.map(lambda t: "X-" + t), text), max_size=3),
    body=st.binary(max_size=64),
)
def test_generated_requests_round_trip(
    method: str,
    uri: URI,
    from_: NameAddr,
    to: NameAddr,
    call_id: str,
    number: int,
    hops: list[Via],
    contacts: list[NameAddr],
    extra: list[tuple[str, str]],
    body: bytes,
) -> None:
    request = sip.Request.create(
        method,
        uri,
        from_=from_,
        to=to,
        call_id=call_id,
        cseq=number,
        via=hops,
        contact=contacts,
        headers=extra,
        body=body,
        content_type="application/octet-stream" if body else None,
    )
    data = bytes(request)
    parsed = sip.parse(data)
    assert isinstance(parsed, sip.Request)
    assert bytes(parsed) == data
    assert (parsed.method, parsed.uri, parsed.call_id, parsed.cseq) == (
        method,
        uri,
        call_id,
        CSeq(number, method),
    )
    assert parsed.uri.user == uri.user and parsed.uri.params == uri.params
    assert parsed.from_ == from_ and parsed.to == to
    assert parsed.from_.display_name == from_.display_name and parsed.to.tag == to.tag
    assert parsed.via == hops and [v.branch for v in parsed.via] == [h.branch for h in hops]
    assert parsed.contact == contacts
    assert [(k, v.strip(" \t")) for k, v in extra] == [
        (k, v) for k, v in parsed.headers if k.startswith("X-")
    ]
    assert parsed.body == body
    assert sip.validate(parsed, accept=("application/octet-stream",)) is None


@settings(max_examples=300 * SCALE)
@given(uris)
def test_uris_round_trip_through_their_text(uri: URI) -> None:
    again = URI.parse(str(uri))
    assert again == uri and hash(again) == hash(uri)
    assert (again.user, again.password, again.host, again.port) == (
        uri.user,
        uri.password,
        uri.host,
        uri.port,
    )
    assert again.params.items() == uri.params.items()
    assert again.headers.items() == uri.headers.items()


@settings(max_examples=200 * SCALE)
@given(
    st.integers(100, 699),
    text,
    st.lists(vias(), min_size=1, max_size=2),
    name_addrs(),
    name_addrs(),
    st.none() | tokens,
)
def test_generated_responses_round_trip(
    status: int, reason: str, hops: list[Via], from_: NameAddr, to: NameAddr, to_tag: str | None
) -> None:
    request = sip.Request.create(
        "INVITE",
        "sip:x@example.com",
        from_=from_,
        to=to.without_params("tag"),
        call_id="c1",
        cseq=1,
        via=hops,
    )
    response = sip.Response.for_request(request, status, reason.strip(" \t"), to_tag=to_tag)
    data = bytes(response)
    parsed = sip.parse(data)
    assert isinstance(parsed, sip.Response)
    assert bytes(parsed) == data
    assert (parsed.status, parsed.reason) == (status, reason.strip(" \t"))
    assert parsed.via == hops and parsed.from_ == from_ and parsed.cseq == CSeq(1, "INVITE")
    assert parsed.to.tag == (to_tag if status != 100 else None)


VALUE_PARSERS = [
    sip.URI.parse,
    sip.NameAddr.parse,
    sip.Via.parse,
    sip.CSeq.parse,
    sip.ContentType.parse,
    sip.Challenge.parse,
    sip.Credentials.parse,
    sip.RAck.parse,
    sip.RetryAfter.parse,
    sip.parse_date,
    sip.split_list,
    sip.unquote,
]
value_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=TOKEN + ' <>;:@,="\\[]?&%/ \t', max_size=80),
    st.sampled_from(["sip:", "<sip:a@b>", "SIP/2.0/UDP h", '"x', "[::1]", "%zz", "1 INVITE"]),
)


@settings(max_examples=400 * SCALE)
@given(st.sampled_from(VALUE_PARSERS), value_text)
def test_value_parsers_return_a_value_or_raise_sipparseerror(parse: object, text: str) -> None:
    assert callable(parse)
    try:
        value = parse(text)
    except sip.SIPParseError as error:
        assert error.reason
        return
    str(value)
    repr(value)
