"""RFC 4475 torture messages: every one behaves as MANIFEST.tsv says.

"accept" messages parse, reach a serialisation fixed point with the same fields, and
are owed the status the manifest gives (None for "process normally"); "reject" ones
raise SIPParseError or fail validation with the listed status, and a rejected request
that framed well enough is still answered.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from gosipd import sip

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

# What a UA built on gosipd offers: the methods it serves and the extensions it has.
UA_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE", "INFO")
UA_SUPPORTED = ("100rel", "timer", "replaces")


@dataclass(frozen=True)
class Case:
    file: str
    section: str
    title: str
    parser: str
    handling: str

    @property
    def data(self) -> bytes:
        return (DATA / self.file).read_bytes()

    def __str__(self) -> str:
        return f"{self.file} (RFC 4475 §{self.section} {self.title})"


def _cases() -> list[Case]:
    with (DATA / "MANIFEST.tsv").open(newline="") as f:
        rows = [row for row in csv.reader(f, delimiter="\t") if row and not row[0].startswith("#")]
    return [Case(*row) for row in rows]


CASES = _cases()
ACCEPTED = [c for c in CASES if c.parser.startswith("accept")]
REJECTED = [c for c in CASES if c.parser == "reject"]

# The status validate() owes each accepted message when the method check is left to the
# caller (allow=None): the manifest's "process normally" and "405 or 501" are None here.
VALIDATE = {
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "bext01.dat": 420,
    "invut.dat": 415,
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "sdp01.dat": 406,
}


def test_the_manifest_lists_all_49_messages_and_they_are_vendored_byte_exact() -> None:
    assert len(CASES) == 49
    assert sorted(c.file for c in CASES) == sorted(p.name for p in DATA.glob("*.dat"))
    # byte-exact: CRLF line ends survive, and the embedded NUL and non-UTF-8 octets too
    assert b"\r\n" in (DATA / "wsinv.dat").read_bytes()
    assert b"\x00" in (DATA / "intmeth.dat").read_bytes()


def test_the_validate_table_is_the_manifest_status_column() -> None:
    # an accepted row whose handling starts with a status code is owed exactly that one
    for case in ACCEPTED:
        head = case.handling.split()[0]
        expected = int(head) if head.isdigit() else None
        assert VALIDATE.get(case.file) == expected, case
    assert len(ACCEPTED) + len(REJECTED) == 49


def _fields(message: sip.Request | sip.Response) -> tuple[object, ...]:
    """Start line, header fields and body; Content-Length is left out because the
    serialiser always writes the one true length (mcl01 has two, inv2543 none)."""
    start = (
        (message.method, str(message.uri))
        if isinstance(message, sip.Request)
        else (message.status, message.reason)
    )
    fields = [(name, value) for name, value in message.headers if name != "Content-Length"]
    return (start, fields, message.body)


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_accepted_message_reaches_a_serialisation_fixed_point(case: Case) -> None:
    first = sip.parse(case.data)
    once = bytes(first)
    second = sip.parse(once)
    twice = bytes(second)
    assert twice == once
    assert _fields(second) == _fields(first)
    assert bytes(sip.parse(twice)) == twice


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_accepted_message_is_owed_the_manifest_status(case: Case) -> None:
    message = sip.parse(case.data)
    assert sip.validate(message, supported=UA_SUPPORTED) == VALIDATE.get(case.file)


@pytest.mark.parametrize("case", REJECTED, ids=str)
def test_rejected_message_is_refused_with_the_manifest_status(case: Case) -> None:
    expected = int(case.handling.split()[0]) if case.handling[0].isdigit() else None
    try:
        message = sip.parse(case.data)
    except sip.SIPParseError as error:
        assert error.reason
        if case.handling.startswith("response"):
            assert error.status == 0  # never answered
            assert sip.Response.for_malformed(error) is None
        else:
            assert error.status == expected
            reply = sip.Response.for_malformed(error, to_tag="r4475")
            assert reply is not None and reply.status == expected
            # the reply is routable: it carries the request's Via, From, Call-ID, CSeq
            assert reply.headers.get_all("Via") == error.headers.get_all("Via")
            assert reply.headers.get("Call-ID") == error.headers.get("Call-ID")
        return
    rejection = sip.check(message, supported=UA_SUPPORTED)
    assert rejection is not None, f"{case} parsed and validated"
    if case.handling.startswith("response"):
        assert isinstance(message, sip.Response)  # a response is dropped, not answered
    else:
        assert rejection.status == expected
        assert rejection.detail


def test_rejections_say_what_and_where() -> None:
    def reason(name: str) -> str:
        data = (DATA / name).read_bytes()
        try:
            rejection = sip.check(sip.parse(data))
        except sip.SIPParseError as error:
            return error.reason
        assert rejection is not None
        return rejection.detail

    assert reason("mismatch01.dat") == (
        "line 6: header 'CSeq': method 'INVITE' does not match request line 'OPTIONS'"
    )
    assert "line 1" in reason("lwsstart.dat") and "SP" in reason("lwsstart.dat")
    assert "line 1" in reason("trws.dat") and "whitespace" in reason("trws.dat")
    assert "Request-URI" in reason("ltgtruri.dat") and "'<'" in reason("ltgtruri.dat")
    assert "Request-URI" in reason("escruri.dat") and "header" in reason("escruri.dat")
    assert "Content-Length" in reason("clerr.dat") and "9999" in reason("clerr.dat")
    assert "'-999'" in reason("ncl.dat")
    assert "line 7: header 'Via'" in reason("badinv01.dat")
    assert "line 2: header 'To': unterminated quoted string" in reason("quotbal.dat")
    assert "line 8: header 'Date'" in reason("baddate.dat")
    assert "header 'Contact'" in reason("regbadct.dat") and "'<' '>'" in reason("regbadct.dat")
    assert "header 'To'" in reason("badaspec.dat") and "whitespace" in reason("badaspec.dat")
    assert "header 'From'" in reason("baddn.dat") or "empty line" in reason("baddn.dat")
    assert "SIP/7.0" in reason("badvers.dat")
    assert "4294967301" in reason("bigcode.dat")
    assert "CSeq number" in reason("scalar02.dat")


def test_parse_error_offsets_point_into_the_datagram() -> None:
    data = (DATA / "clerr.dat").read_bytes()
    with pytest.raises(sip.SIPParseError) as info:
        sip.parse(data)
    assert data[info.value.offset :].startswith(b"Content-Length: 9999")
    assert info.value.line == 10


# -- what the accepted messages contain


def _parse(name: str) -> sip.Request | sip.Response:
    return sip.parse((DATA / name).read_bytes())


def test_wsinv_whitespace_folding_and_compact_forms_are_understood() -> None:
    m = _parse("wsinv.dat")
    assert isinstance(m, sip.Request)
    assert m.method == "INVITE"
    assert m.uri.params.get("unknownparam", "absent") is None
    assert m.to.uri == sip.URI.parse("sip:vivekg@chair-dnrc.example.com")
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.number, m.cseq.method) == (9, "INVITE")
    hops = m.via
    assert [v.host for v in hops] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert [v.transport for v in hops] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in hops] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.route[0].uri.lr
    (contact,) = m.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params["newparam"] == "newvalue"
    assert "secondparam" in contact.params
    assert contact.q == 0.33
    assert m.sdp is not None and m.sdp.startswith(b"v=0\r\n")


def test_intmeth_keeps_every_valid_character() -> None:
    m = _parse("intmeth.dat")
    assert isinstance(m, sip.Request)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert (
        m.from_.params["fromParam''~+*_!.-%"]
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.via[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_escapes_are_decoded_on_read_and_re_encoded_on_write() -> None:
    m = _parse("esc01.dat")
    assert isinstance(m, sip.Request)
    assert m.uri.user == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert m.to.uri.user == "user"
    assert m.to.uri == sip.URI.parse("sip:user@example.com")
    assert m.from_.uri.user == "I have spaces"
    (contact,) = m.contact
    assert contact.uri.user == "caller"
    assert contact.uri.params["lr"] is None
    assert contact.uri.params["name"] == "value%41"
    rebuilt = contact.uri.replace(port=5060)
    assert str(rebuilt) == "sip:caller@host5.example.net:5060;lr;name=value%2541"
    assert sip.URI.parse(str(rebuilt)).params["name"] == "value%41"


def test_escaped_nulls_survive() -> None:
    m = _parse("escnull.dat")
    assert m.to.uri.user == "null-\x00-null"
    assert [c.uri.user for c in m.contact] == ["\x00", "\x00\x00"]


def test_percent_that_is_not_an_escape_is_kept_where_tokens_allow_it() -> None:
    m = _parse("esc02.dat")
    assert isinstance(m, sip.Request)
    assert m.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert m.via[0].branch == "z9hG4bK209%fzsnel234"
    # "C%6Fntact" is an unknown header, not a Contact
    assert [str(c.uri) for c in m.contact] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_no_space_between_display_name_and_angle_bracket() -> None:
    m = _parse("lwsdisp.dat")
    assert m.from_.display_name == "caller"
    assert m.from_.uri == sip.URI.parse("sip:caller@example.com")


def test_long_values_and_many_via_spellings() -> None:
    m = _parse("longreq.dat")
    assert len(m.via) == 34
    assert m.via[0].host == "sip33.example.com"
    assert m.via[-1].host == "host.example.com"
    assert m.to.uri.port == 6000
    assert len(m.to.display_name or "") > 90
    assert len(m.call_id) > 100


def test_trailing_octets_after_content_length_are_ignored() -> None:
    m = _parse("dblreq.dat")
    assert isinstance(m, sip.Request)
    assert m.method == "REGISTER"
    assert m.body == b""
    assert bytes(m).endswith(b"Content-Length: 0\r\n\r\n")


def test_semicolon_in_the_user_part() -> None:
    m = _parse("semiuri.dat")
    assert isinstance(m, sip.Request)
    assert m.uri.user == "user;par=u@example.net"
    assert m.uri.host == "example.com"
    assert not m.uri.params
    assert [r.mime for r in m.accept] == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_varied_and_unknown_transports() -> None:
    m = _parse("transports.dat")
    assert [v.transport for v in m.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_multipart_body_parts_are_found() -> None:
    m = _parse("mpart01.dat")
    assert m.content_type is not None and m.content_type.boundary == "7a9cbec02ceef655"
    parts = m.parts
    assert [p.content_type.mime for p in parts] == ["text/plain", "application/octet-stream"]
    assert parts[0].body == b"Hello"
    assert parts[1].body.startswith(b"0\x82\x01R")
    assert m.sdp is None  # this multipart has no application/sdp part


def test_unusual_and_empty_reason_phrases() -> None:
    unusual = _parse("unreason.dat")
    assert isinstance(unusual, sip.Response)
    assert unusual.status == 200
    assert unusual.reason.startswith("= 2**3 * 5**2 \u043d\u043e ")
    assert (
        bytes(unusual).split(b"\r\n")[0] == (DATA / "unreason.dat").read_bytes().split(b"\r\n")[0]
    )
    empty = _parse("noreason.dat")
    assert isinstance(empty, sip.Response)
    assert (empty.status, empty.reason) == (100, "")


def test_atypical_but_valid_messages() -> None:
    assert _parse("badbranch.dat").via[0].branch == "z9hG4bK"
    assert _parse("zeromf.dat").max_forwards == 0
    bcast = _parse("bcast.dat")
    assert bcast.via[1].host == "255.255.255.255"
    unksm2 = _parse("unksm2.dat")
    assert unksm2.to.uri.scheme == "isbn" and unksm2.to.uri.opaque == "2983792873"
    assert unksm2.from_.uri.scheme == "http"
    assert unksm2.contact[0].uri.opaque == "John_Smith"
    regaut = _parse("regaut01.dat")
    (credentials,) = regaut.authorization
    assert credentials.scheme == "NoOneKnowsThisScheme"
    assert credentials.param("opaque-data") == "here"
    # a Contact parameter written after a bare URI belongs to the Contact, not the URI
    cparam01 = _parse("cparam01.dat").contact[0]
    assert "unknownparam" in cparam01.params and not cparam01.uri.params
    cparam02 = _parse("cparam02.dat").contact[0]
    assert "unknownparam" in cparam02.uri.params and not cparam02.params
    regescrt = _parse("regescrt.dat").contact[0]
    assert regescrt.uri.headers["Route"] == "<sip:sip.example.com>"
    inv2543 = _parse("inv2543.dat")
    assert inv2543.via[0].branch is None
    assert inv2543.body.startswith(b"v=0") and inv2543.headers.get("Content-Length") is None


def test_bext01_owes_420_listing_the_unknown_option_tags() -> None:
    rejection = sip.check(_parse("bext01.dat"), supported=UA_SUPPORTED)
    assert rejection is not None
    assert rejection.status == 420
    assert rejection.headers == (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)


def test_invut_owes_415_with_accept() -> None:
    rejection = sip.check(_parse("invut.dat"), accept=("application/sdp",))
    assert rejection is not None
    assert (rejection.status, rejection.headers) == (415, (("Accept", "application/sdp"),))


def test_unknown_methods_and_registers_owe_501_or_405_to_a_ua() -> None:
    assert sip.validate(_parse("intmeth.dat"), allow=UA_METHODS) == 501
    assert sip.validate(_parse("esc02.dat"), allow=UA_METHODS) == 501
    for name in ("regaut01.dat", "cparam01.dat", "cparam02.dat", "regescrt.dat"):
        rejection = sip.check(_parse(name), allow=UA_METHODS)
        assert rejection is not None and rejection.status == 405, name
        assert rejection.headers == (("Allow", ", ".join(UA_METHODS)),)
