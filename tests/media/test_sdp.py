"""SDP parse/format and RFC 3264 offer/answer, as tables of what real peers send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd import sdp
from gosipd.sdp import NegotiationError, SDPParseError, SessionDescription


def lines(*text: str) -> str:
    return "\r\n".join(text) + "\r\n"


BARESIP_OFFER = lines(
    "v=0",
    "o=- 1286148069 2716573402 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 28900 RTP/AVP 0 8 101",
    "b=AS:64",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp-mux",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:2890844526 cname:f5a3e1b0@baresip",
)

FLOWROUTE_LIKE_OFFER = lines(
    "v=0",
    "o=FreeSWITCH 1700000000 1700000001 IN IP4 34.226.36.32",
    "s=FreeSWITCH",
    "c=IN IP4 34.226.36.32",
    "t=0 0",
    "m=audio 21372 RTP/AVP 9 0 8 18 96 13",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:96 telephone-event/8000",
    "a=fmtp:96 0-16",
    "a=rtpmap:13 CN/8000",
    "a=ptime:20",
    "a=maxptime:40",
    "a=rtcp:21373 IN IP4 34.226.36.32",
)

IPV6_WITH_EVERYTHING = lines(
    "v=0",
    "o=alice 2890844526 2890842807 IN IP6 2001:db8::1",
    "s=A call",
    "i=session information",
    "u=http://example.com/seminar",
    "e=alice@example.com",
    "p=+1 617 555-6011",
    "c=IN IP6 2001:db8::1",
    "b=CT:128",
    "t=2873397496 2873404696",
    "r=7d 1h 0 25h",
    "z=2882844526 -1h",
    "k=prompt",
    "a=tool:gosipd-test",
    "a=recvonly",
    "m=audio 49170 RTP/AVP 0",
    "i=the voice stream",
    "c=IN IP6 2001:db8::2",
    "b=AS:80",
    "b=TIAS:64000",
    "k=prompt",
    "a=rtpmap:0 PCMU/8000",
    "a=ptime:30",
    "m=video 0 RTP/AVP 31",
    "a=rtpmap:31 H261/90000",
    "m=application 9 UDP/BFCP *",
    "y=an unknown line type, kept",
)


@pytest.mark.parametrize(
    "text",
    [BARESIP_OFFER, FLOWROUTE_LIKE_OFFER, IPV6_WITH_EVERYTHING],
    ids=["baresip", "flowroute", "ipv6"],
)
def test_well_formed_sdp_round_trips_unchanged(text: str) -> None:
    assert SessionDescription.parse(text).format() == text


def test_bare_lf_line_ends_are_accepted_and_written_as_crlf() -> None:
    parsed = SessionDescription.parse(BARESIP_OFFER.replace("\r\n", "\n").encode())
    assert parsed.format() == BARESIP_OFFER


def test_parsed_fields_are_typed() -> None:
    s = SessionDescription.parse(FLOWROUTE_LIKE_OFFER)
    assert s.origin.session_version == 1700000001
    m = s.media[0]
    assert m.port == 21372 and m.proto == "RTP/AVP"
    assert m.rtpmap()[96] == ("telephone-event", 8000, 1)
    assert m.rtpmap()[0] == ("PCMU", 8000, 1)
    assert m.fmtp(18) == "annexb=no"
    assert m.ptime == 20 and m.get("maxptime") == "40"
    assert m.get("rtcp") == "21373 IN IP4 34.226.36.32"
    v6 = SessionDescription.parse(IPV6_WITH_EVERYTHING)
    assert v6.connection_for(v6.media[0]).address == "2001:db8::2"  # type: ignore[union-attr]
    assert v6.direction_of(v6.media[0]) == "recvonly"  # inherited from the session level
    assert v6.media[0].bandwidths == [("AS", "80"), ("TIAS", "64000")]


@pytest.mark.parametrize(
    ("text", "line_number", "fragment"),
    [
        ("o=x 1 1 IN IP4 1.2.3.4\r\n", 1, "first line must be v="),
        (lines("v=1", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0"), 1, "unsupported SDP version"),
        (lines("v=0", "o=x 1 IN IP4 1.2.3.4", "s=-", "t=0 0"), 2, "o= needs"),
        (lines("v=0", "o=x 1 one IN IP4 1.2.3.4", "s=-", "t=0 0"), 2, "sess-version"),
        (lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "c=IN IP4 1.2.3", "t=0 0"), 4, "not an IP4"),
        (
            lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "m=audio 70000 RTP/AVP 0"),
            5,
            "port 70000",
        ),
        (
            lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "m=audio 5 RTP/AVP zero"),
            5,
            "payload types",
        ),
        (
            lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "a=rtpmap:0 PCMU"),
            5,
            "a=rtpmap needs",
        ),
        (lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "a=ptime:fast"), 5, "a=ptime"),
        (lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "garbage"), 5, "<type>=<value>"),
        (
            lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "m=audio 5 RTP/AVP 0", "t=0 0"),
            6,
            "inside a media",
        ),
        (lines("v=0", "s=-", "o=x 1 1 IN IP4 1.2.3.4", "t=0 0"), 3, "out of the RFC 4566 order"),
        (lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "b=AS", "t=0 0"), 4, "b= needs"),
    ],
)
def test_bad_sdp_error_names_the_line(text: str, line_number: int, fragment: str) -> None:
    with pytest.raises(SDPParseError) as info:
        SessionDescription.parse(text)
    assert info.value.line_number == line_number
    assert fragment in str(info.value)
    assert f"line {line_number}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (lines("v=0", "s=-", "t=0 0"), "no o= line"),
        (lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "t=0 0"), "no s= line"),
        (lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-"), "no t= line"),
        (
            lines("v=0", "o=x 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "m=audio 5 RTP/AVP 0"),
            "no c= line",
        ),
        ("", "empty"),
        ("v=0\r\n" + "a=x\r\n" * 3000, "exceed the limit"),
    ],
)
def test_incomplete_sdp_error_says_what_is_missing(text: str, fragment: str) -> None:
    with pytest.raises(SDPParseError, match=fragment):
        SessionDescription.parse(text)


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_sdp_parse_error(text: str) -> None:
    try:
        parsed = SessionDescription.parse(text)
    except SDPParseError:
        return
    SessionDescription.parse(parsed.format())  # what we accept, we can write and re-read


# --- offer / answer ---------------------------------------------------------


def test_our_offer_lists_pcmu_pcma_and_telephone_event() -> None:
    offer = sdp.make_offer("192.0.2.10", 40000, session_id=42)
    assert offer.format() == lines(
        "v=0",
        "o=gosipd 42 42 IN IP4 192.0.2.10",
        "s=gosipd",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_offer_options_cn_pcma_only_ipv6_and_mux() -> None:
    offer = sdp.make_offer(
        "2001:db8::5", 40002, codecs=("PCMA",), cn=True, dtmf=False, rtcp_mux=True
    )
    m = offer.media[0]
    assert offer.connection is not None and offer.connection.addrtype == "IP6"
    assert m.formats == ["8", "13"]
    assert m.has("rtcp-mux")
    assert _telephone_event(m) is None


def _telephone_event(m: sdp.MediaDescription) -> int | None:
    return next((pt for pt, (n, _, _) in m.rtpmap().items() if n == "telephone-event"), None)


@pytest.mark.parametrize(
    ("offer_text", "codec", "pt", "te", "ptime", "rtcp"),
    [
        (BARESIP_OFFER, "PCMU", 0, 101, 20, ("127.0.0.1", 28900)),  # rtcp-mux accepted
        (FLOWROUTE_LIKE_OFFER, "PCMU", 0, 96, 20, ("34.226.36.32", 21373)),  # G722 skipped
    ],
)
def test_answer_picks_first_supported_codec_and_keeps_offerers_event_pt(
    offer_text: str, codec: str, pt: int, te: int, ptime: int, rtcp: tuple[str, int]
) -> None:
    offer = SessionDescription.parse(offer_text)
    ans, media = sdp.answer(offer, "192.0.2.10", 40000)
    assert (media.codec, media.payload_type, media.telephone_event_pt, media.ptime) == (
        codec,
        pt,
        te,
        ptime,
    )
    assert media.remote_rtcp == rtcp
    assert ans.media[0].formats == [str(pt), str(te)]
    assert ans.media[0].fmtp(te) == "0-15"
    assert media.direction == "sendrecv"


def test_answer_uses_pcma_when_it_is_the_only_common_codec() -> None:
    offer = sdp.make_offer("192.0.2.1", 5000, codecs=("PCMA",))
    _ans, media = sdp.answer(offer, "192.0.2.2", 6000)
    assert (media.codec, media.payload_type) == ("PCMA", 8)


def test_answer_uses_the_offerers_dynamic_rtpmap_for_g711() -> None:
    offer = SessionDescription.parse(
        lines(
            "v=0",
            "o=x 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 7000 RTP/AVP 8 120",
            "a=rtpmap:120 telephone-event/8000",
        )
    )
    ans, media = sdp.answer(offer, "10.0.0.2", 7002)
    assert (media.codec, media.telephone_event_pt) == ("PCMA", 120)
    assert ans.media[0].formats == ["8", "120"]


def test_answer_rejects_other_streams_with_port_zero_in_the_same_order() -> None:
    offer = SessionDescription.parse(
        lines(
            "v=0",
            "o=x 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=video 9000 RTP/AVP 96",
            "a=rtpmap:96 H264/90000",
            "m=audio 7000 RTP/SAVP 0",
            "m=audio 7002 RTP/AVP 0",
        )
    )
    ans, media = sdp.answer(offer, "10.0.0.2", 8000)
    assert [(m.media, m.port, m.proto) for m in ans.media] == [
        ("video", 0, "RTP/AVP"),
        ("audio", 0, "RTP/SAVP"),
        ("audio", 8000, "RTP/AVP"),
    ]
    assert media.remote == ("10.0.0.1", 7002)


@pytest.mark.parametrize(
    ("media_lines", "reason"),
    [
        (["m=audio 7000 RTP/AVP 18", "a=rtpmap:18 G729/8000"], "no offered codec"),
        (["m=audio 0 RTP/AVP 0"], r"disabled \(port 0\)"),
        (["m=video 7000 RTP/AVP 31"], "no audio stream"),
        (["m=audio 7000 RTP/SAVP 0"], "RTP/SAVP needs SRTP, which is off"),
        (["m=audio 7000 RTP/AVP 96", "a=rtpmap:96 PCMU/16000"], "no offered codec"),
    ],
)
def test_offer_with_nothing_usable_raises_488(media_lines: list[str], reason: str) -> None:
    offer = SessionDescription.parse(
        lines("v=0", "o=x 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", *media_lines)
    )
    with pytest.raises(NegotiationError, match=reason) as info:
        sdp.answer(offer, "10.0.0.2", 8000)
    assert info.value.sip_status == 488


def test_negotiate_reads_the_answer_to_our_offer() -> None:
    offer = sdp.make_offer("192.0.2.1", 5000, rtcp_mux=True)
    answer = SessionDescription.parse(
        lines(
            "v=0",
            "o=sipp-uas 1 2 IN IP4 127.0.0.1",
            "s=sipp echo",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            "m=audio 20700 RTP/AVP 8 100",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:100 telephone-event/8000",
            "a=ptime:30",
            "a=rtcp-mux",
            "a=sendrecv",
        )
    )
    media = sdp.negotiate(offer, answer)
    assert media.remote == ("127.0.0.1", 20700)
    assert media.rtcp_mux and media.remote_rtcp == ("127.0.0.1", 20700)
    assert (media.codec, media.payload_type) == ("PCMA", 8)
    assert media.telephone_event_pt == 100  # we send events with the answerer's number
    assert media.receive_telephone_event_pt == 101  # and accept ours
    assert media.ptime == 30


def test_negotiate_without_telephone_event_in_answer_falls_back_to_inband() -> None:
    offer = sdp.make_offer("192.0.2.1", 5000)
    answer = SessionDescription.parse(
        lines(
            "v=0",
            "o=a 1 2 IN IP4 10.0.0.9",
            "s=-",
            "c=IN IP4 10.0.0.9",
            "t=0 0",
            "m=audio 20700 RTP/AVP 0",
        )
    )
    media = sdp.negotiate(offer, answer)
    assert media.telephone_event_pt is None and media.receive_telephone_event_pt is None


@pytest.mark.parametrize(
    ("answer_media", "reason"),
    [
        ("m=audio 0 RTP/AVP 0", "rejected the audio stream"),
        ("m=audio 9 RTP/AVP 18", "no codec we offered"),
    ],
)
def test_negotiate_failure_is_a_negotiation_error(answer_media: str, reason: str) -> None:
    offer = sdp.make_offer("192.0.2.1", 5000)
    answer = SessionDescription.parse(
        lines("v=0", "o=a 1 2 IN IP4 10.0.0.9", "s=-", "c=IN IP4 10.0.0.9", "t=0 0", answer_media)
    )
    with pytest.raises(NegotiationError, match=reason):
        sdp.negotiate(offer, answer)


def test_answer_with_wrong_stream_count_is_refused() -> None:
    offer = sdp.make_offer("192.0.2.1", 5000)
    answer = SessionDescription.parse(
        lines(
            "v=0",
            "o=a 1 2 IN IP4 10.0.0.9",
            "s=-",
            "c=IN IP4 10.0.0.9",
            "t=0 0",
            "m=audio 20700 RTP/AVP 0",
            "m=audio 20702 RTP/AVP 0",
        )
    )
    with pytest.raises(NegotiationError, match="2 media streams"):
        sdp.negotiate(offer, answer)


# --- hold and resume, both ways ---------------------------------------------


@pytest.mark.parametrize(
    ("offer_direction", "legacy", "our_direction", "answer_attribute"),
    [
        ("sendrecv", False, "sendrecv", "sendrecv"),
        ("sendonly", False, "recvonly", "recvonly"),  # they hold us (music on hold)
        ("recvonly", False, "sendonly", "sendonly"),
        ("inactive", False, "inactive", "inactive"),
        ("sendrecv", True, "recvonly", "recvonly"),  # RFC 2543: c=0.0.0.0
        ("sendonly", True, "recvonly", "recvonly"),
    ],
)
def test_answer_to_hold_offers(
    offer_direction: sdp.Direction, legacy: bool, our_direction: str, answer_attribute: str
) -> None:
    address = "0.0.0.0" if legacy else "10.0.0.1"
    offer = SessionDescription.parse(
        lines(
            "v=0",
            "o=x 1 1 IN IP4 10.0.0.1",
            "s=-",
            f"c=IN IP4 {address}",
            "t=0 0",
            "m=audio 7000 RTP/AVP 0",
            f"a={offer_direction}",
        )
    )
    ans, media = sdp.answer(offer, "10.0.0.2", 8000)
    assert media.direction == our_direction
    assert ans.media[0].direction_attribute == answer_attribute
    assert media.sending == (our_direction in ("sendrecv", "sendonly"))


@pytest.mark.parametrize(
    ("answer_attribute", "our_direction"),
    [("recvonly", "sendonly"), ("inactive", "inactive"), ("sendrecv", "sendonly")],
)
def test_our_hold_reoffer_and_its_answer(answer_attribute: str, our_direction: str) -> None:
    first = sdp.make_offer("192.0.2.1", 5000, session_id=7)
    held = sdp.hold(first)
    assert held.media[0].direction_attribute == "sendonly"
    assert held.origin.session_version == first.origin.session_version + 1
    answer = SessionDescription.parse(
        lines(
            "v=0",
            "o=a 1 2 IN IP4 10.0.0.9",
            "s=-",
            "c=IN IP4 10.0.0.9",
            "t=0 0",
            "m=audio 20700 RTP/AVP 0",
            f"a={answer_attribute}",
        )
    )
    assert sdp.negotiate(held, answer).direction == our_direction


def test_hold_when_already_held_is_inactive_and_legacy_form_zeroes_the_address() -> None:
    first = sdp.make_offer("192.0.2.1", 5000, direction="recvonly")
    assert sdp.hold(first).media[0].direction_attribute == "inactive"
    legacy = sdp.hold(sdp.make_offer("192.0.2.1", 5000), legacy=True)
    assert legacy.connection is not None and legacy.connection.address == "0.0.0.0"
    assert legacy.direction_of(legacy.media[0]) == "sendonly"
    assert sdp.answer(legacy, "10.0.0.2", 8000)[1].direction == "recvonly"


def test_resume_restores_sendrecv_and_the_address() -> None:
    first = sdp.make_offer("192.0.2.1", 5000, session_id=9)
    held = sdp.hold(first, legacy=True)
    resumed = sdp.resume(held, "192.0.2.1")
    assert resumed.media[0].direction_attribute == "sendrecv"
    assert resumed.connection is not None and resumed.connection.address == "192.0.2.1"
    assert resumed.origin.session_version == held.origin.session_version + 1


# --- o= version rules (RFC 3264 §8) -----------------------------------------


def test_reoffer_without_change_keeps_the_version_with_change_adds_one() -> None:
    first = sdp.make_offer("192.0.2.1", 5000, session_id=100, session_version=5)
    same = sdp.make_offer("192.0.2.1", 5000, previous=first)
    assert (same.origin.session_id, same.origin.session_version) == ("100", 5)
    assert same.format() == first.format()
    moved = sdp.make_offer("192.0.2.1", 5002, previous=first)
    assert (moved.origin.session_id, moved.origin.session_version) == ("100", 6)


def test_repeated_answers_in_a_dialog_follow_the_version_rules() -> None:
    offer = SessionDescription.parse(BARESIP_OFFER)
    first, _ = sdp.answer(offer, "192.0.2.10", 40000, session_id=77)
    again, _ = sdp.answer(offer, "192.0.2.10", 40000, previous=first)
    assert again.format() == first.format()
    held_offer = SessionDescription.parse(BARESIP_OFFER.replace("a=sendrecv", "a=sendonly"))
    held, media = sdp.answer(held_offer, "192.0.2.10", 40000, previous=first)
    assert held.origin.session_version == first.origin.session_version + 1
    assert held.origin.session_id == first.origin.session_id
    assert media.direction == "recvonly"


def test_unchanged_remote_reoffer_is_detected_by_version() -> None:
    a = SessionDescription.parse(BARESIP_OFFER)
    b = SessionDescription.parse(BARESIP_OFFER)
    assert a.same_content(b) and a.origin.session_version == b.origin.session_version


def test_local_address_must_be_an_ip_literal() -> None:
    with pytest.raises(ValueError, match="not an IP literal"):
        sdp.make_offer("pbx.example.com", 5000)
    with pytest.raises(ValueError, match="codec 'G729'"):
        sdp.make_offer("192.0.2.1", 5000, codecs=("G729",))
