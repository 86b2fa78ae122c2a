"""SDES (RFC 4568 a=crypto) and SRTP offer/answer, with lines as real peers send them."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd import sdes, sdp
from gosipd.sdes import SUITES, Crypto, CryptoError
from gosipd.sdp import NegotiationError, SessionDescription, SrtpRefused

KEY30 = bytes(range(30))
KEY28 = bytes(range(28))
INLINE30 = base64.b64encode(KEY30).decode()


def lines(*text: str) -> str:
    return "\r\n".join(text) + "\r\n"


def sdp_with(
    proto: str, *crypto: str, host: str = "10.0.0.1", port: int = 7000
) -> SessionDescription:
    """One audio stream (PCMU and telephone-event) in ``proto`` with these a=crypto
    values: a far end's offer (10.0.0.1), or with ``answer_to`` its answer to ours."""
    return SessionDescription.parse(
        lines(
            "v=0",
            f"o=- 1 1 IN IP4 {host}",
            "s=-",
            f"c=IN IP4 {host}",
            "t=0 0",
            f"m=audio {port} {proto} 0 101",
            *(f"a=crypto:{c}" for c in crypto),
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=sendrecv",
        )
    )


def answer_to(proto: str, *crypto: str) -> SessionDescription:
    """What the far end (10.0.0.2) answers to our offer."""
    return sdp_with(proto, *crypto, host="10.0.0.2", port=9000)


# What baresip's srtp module (libre) offers, as seen in the interop capture.
BARESIP_LINES = (
    f"1 AES_CM_128_HMAC_SHA1_32 inline:{INLINE30}",
    f"2 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}",
    f"3 AEAD_AES_256_GCM inline:{base64.b64encode(bytes(44)).decode()}",
    f"4 AEAD_AES_128_GCM inline:{base64.b64encode(KEY28).decode()}",
)


@pytest.mark.parametrize(
    ("value", "suite", "lifetime"),
    [
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}", "AES_CM_128_HMAC_SHA1_80", None),
        (f"7 AES_CM_128_HMAC_SHA1_32 inline:{INLINE30}|2^31", "AES_CM_128_HMAC_SHA1_32", 2**31),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}|1048576", "AES_CM_128_HMAC_SHA1_80", 2**20),
        (
            f"2 AEAD_AES_128_GCM inline:{base64.b64encode(KEY28).decode()}",
            "AEAD_AES_128_GCM",
            None,
        ),
    ],
)
def test_crypto_lines_real_peers_send_are_read(
    value: str, suite: str, lifetime: int | None
) -> None:
    crypto = Crypto.parse(value)
    assert crypto.suite == suite and crypto.lifetime == lifetime
    assert len(crypto.key) == sum(SUITES[suite])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "not '<tag>"),
        (f"1 F8_128_HMAC_SHA1_80 inline:{INLINE30}", "not one we support"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}|2^20|1:4", "MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}|1:4", "MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30};inline:{INLINE30}", "more than one key"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30} UNENCRYPTED_SRTP", "session parameters"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{INLINE30}", "not 'inline:'"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!notbase64", "not base64"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(KEY28).decode()}", "28 octets"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}|forever", "lifetime"),
    ],
)
def test_crypto_lines_we_cannot_use_are_refused_without_quoting_the_key(
    value: str, reason: str
) -> None:
    with pytest.raises(CryptoError, match=reason) as info:
        Crypto.parse(value)
    assert INLINE30 not in str(info.value)


@given(
    tag=st.integers(0, 999_999_999),
    suite=st.sampled_from(sorted(SUITES)),
    data=st.data(),
)
def test_format_then_parse_gives_the_same_line(tag: int, suite: str, data: st.DataObject) -> None:
    key = data.draw(st.binary(min_size=sum(SUITES[suite]), max_size=sum(SUITES[suite])))
    crypto = Crypto(tag, suite, key)
    assert Crypto.parse(crypto.format()) == crypto


@given(st.text(max_size=300))
def test_any_text_is_a_line_or_a_crypto_error(text: str) -> None:
    try:
        crypto = Crypto.parse(text)
    except CryptoError:
        return
    assert len(crypto.key) == sum(SUITES[crypto.suite])
    assert Crypto.parse(crypto.format()) == replace(crypto, lifetime=None)


def test_the_repr_hides_the_key() -> None:
    crypto = Crypto(1, "AES_CM_128_HMAC_SHA1_80", KEY30)
    assert repr(KEY30) not in repr(crypto) and INLINE30 not in repr(crypto)
    offer = sdp.make_offer(
        "10.0.0.1", 4000, crypto=sdes.offer_lines(keygen=lambda n: KEY30[:n]), srtp="required"
    )
    assert INLINE30 not in repr(offer) and INLINE30 in offer.format()


def test_a_required_offer_is_rtp_savp_with_a_line_per_suite_and_fresh_keys() -> None:
    offer = sdp.make_offer("10.0.0.1", 4000, crypto=sdes.offer_lines(), srtp="required")
    m = offer.media[0]
    assert m.proto == "RTP/SAVP"
    parsed = [Crypto.parse(v) for v in m.get_all("crypto")]
    assert [c.tag for c in parsed] == [1, 2, 3]
    assert [c.suite for c in parsed] == list(sdes.DEFAULT_SUITES)
    assert len({c.key for c in parsed}) == 3
    best_effort = sdp.make_offer("10.0.0.1", 4000, crypto=sdes.offer_lines(), srtp="offer")
    assert best_effort.media[0].proto == "RTP/AVP" and best_effort.media[0].has("crypto")
    with pytest.raises(ValueError, match="a=crypto"):
        sdp.make_offer("10.0.0.1", 4000, srtp="required")


def test_baresips_offer_is_answered_with_its_first_suite_we_support_and_our_own_key() -> None:
    local, negotiated = sdp.answer(
        sdp_with("RTP/SAVP", *BARESIP_LINES), "10.0.0.2", 8000, srtp="required"
    )
    (line,) = local.media[0].get_all("crypto")
    ours = Crypto.parse(line)
    assert local.media[0].proto == "RTP/SAVP"
    assert (ours.tag, ours.suite) == (1, "AES_CM_128_HMAC_SHA1_32")  # the offerer's order
    assert negotiated.srtp is not None
    assert negotiated.srtp.suite == "AES_CM_128_HMAC_SHA1_32"
    assert negotiated.srtp.remote == KEY30 and negotiated.srtp.local == ours.key != KEY30


def test_suites_we_did_not_enable_are_passed_over() -> None:
    local, negotiated = sdp.answer(
        sdp_with("RTP/SAVP", *BARESIP_LINES),
        "10.0.0.2",
        8000,
        srtp="required",
        srtp_suites=("AEAD_AES_128_GCM",),
    )
    assert negotiated.srtp is not None and negotiated.srtp.suite == "AEAD_AES_128_GCM"
    assert Crypto.parse(local.media[0].get_all("crypto")[0]).tag == 4


@pytest.mark.parametrize(
    ("proto", "crypto", "policy", "outcome"),
    [
        # plain offers
        ("RTP/AVP", (), "off", None),
        ("RTP/AVP", (), "offer", None),
        ("RTP/AVP", (), "required", "the offer has no a=crypto"),
        # best-effort offers: RTP/AVP with a=crypto
        ("RTP/AVP", BARESIP_LINES[:1], "off", None),
        ("RTP/AVP", BARESIP_LINES[:1], "offer", "AES_CM_128_HMAC_SHA1_32"),
        ("RTP/AVP", BARESIP_LINES[:1], "required", "AES_CM_128_HMAC_SHA1_32"),
        ("RTP/AVP", BARESIP_LINES[2:3], "offer", None),  # only a suite we lack: plain
        ("RTP/AVP", BARESIP_LINES[2:3], "required", "no usable SRTP key"),
        # secure offers
        ("RTP/SAVP", BARESIP_LINES, "off", "needs SRTP, which is off"),
        ("RTP/SAVP", BARESIP_LINES, "offer", "AES_CM_128_HMAC_SHA1_32"),
        ("RTP/SAVP", (), "required", "no usable SRTP key"),
        ("RTP/SAVPF", BARESIP_LINES[1:2], "required", "AES_CM_128_HMAC_SHA1_80"),
    ],
)
def test_what_we_answer_under_each_policy(
    proto: str, crypto: tuple[str, ...], policy: sdp.SrtpPolicy, outcome: str | None
) -> None:
    offer = sdp_with(proto, *crypto)
    if outcome is not None and outcome not in SUITES:
        with pytest.raises(SrtpRefused, match=outcome) as info:
            sdp.answer(offer, "10.0.0.2", 8000, srtp=policy)
        assert info.value.sip_status == 488
        return
    local, negotiated = sdp.answer(offer, "10.0.0.2", 8000, srtp=policy)
    assert local.media[0].proto == proto  # we answer in the offer's profile
    assert (negotiated.srtp.suite if negotiated.srtp else None) == outcome
    assert len(local.media[0].get_all("crypto")) == (1 if outcome else 0)


def test_a_secure_stream_we_cannot_take_leaves_the_next_one_usable() -> None:
    offer = SessionDescription.parse(
        lines(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 7000 RTP/SAVP 0",
            f"a=crypto:{BARESIP_LINES[2]}",
            "m=audio 7002 RTP/AVP 0",
        )
    )
    local, negotiated = sdp.answer(offer, "10.0.0.2", 8000, srtp="offer")
    assert [m.port for m in local.media] == [0, 8000]
    assert negotiated.remote_port == 7002 and negotiated.srtp is None


def test_a_re_answer_keeps_our_key_so_our_context_goes_on() -> None:
    offer = sdp_with("RTP/SAVP", BARESIP_LINES[1])
    first, one = sdp.answer(offer, "10.0.0.2", 8000, srtp="required")
    again, two = sdp.answer(offer, "10.0.0.2", 8000, srtp="required", previous=first)
    assert one.srtp is not None and two.srtp is not None
    assert two.srtp.local == one.srtp.local
    assert again.origin.session_version == first.origin.session_version  # nothing changed
    other = sdp_with("RTP/SAVP", BARESIP_LINES[0])  # another suite: a new key
    _, three = sdp.answer(other, "10.0.0.2", 8000, srtp="required", previous=first)
    assert three.srtp is not None and three.srtp.local != one.srtp.local


def test_the_answer_to_our_offer_gives_both_keys() -> None:
    lines_ = sdes.offer_lines()
    offer = sdp.make_offer("10.0.0.1", 4000, crypto=lines_, srtp="required")
    negotiated = sdp.negotiate(
        offer, answer_to("RTP/SAVP", f"2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE30}")
    )
    assert negotiated.srtp is not None
    assert negotiated.srtp.suite == "AES_CM_128_HMAC_SHA1_32"
    assert negotiated.srtp.local == lines_[1].key and negotiated.srtp.remote == KEY30


@pytest.mark.parametrize(
    ("policy", "proto", "crypto", "reason"),
    [
        ("required", "RTP/AVP", (), "SRTP was required and the answer has no a=crypto"),
        ("offer", "RTP/SAVP", (), "SRTP was required"),
        ("required", "RTP/SAVP", (f"9 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}",), "tag 9"),
        (
            "required",
            "RTP/SAVP",
            (f"1 AES_CM_128_HMAC_SHA1_32 inline:{INLINE30}",),  # tag 1 was _80
            "not one we offered",
        ),
        (
            "required",
            "RTP/SAVP",
            (
                f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}",
                f"2 AES_CM_128_HMAC_SHA1_32 inline:{INLINE30}",
            ),
            "2 a=crypto lines",
        ),
        ("required", "RTP/SAVP", ("1 AES_CM_128_HMAC_SHA1_80 inline:short",), "answer's a=crypto"),
    ],
)
def test_answers_that_break_srtp_are_refused(
    policy: sdp.SrtpPolicy, proto: str, crypto: tuple[str, ...], reason: str
) -> None:
    offer = sdp.make_offer("10.0.0.1", 4000, crypto=sdes.offer_lines(), srtp=policy)
    with pytest.raises(SrtpRefused, match=reason):
        sdp.negotiate(offer, answer_to(proto, *crypto))


def test_a_plain_answer_to_a_best_effort_offer_is_plain_rtp() -> None:
    offer = sdp.make_offer("10.0.0.1", 4000, crypto=sdes.offer_lines(), srtp="offer")
    assert sdp.negotiate(offer, answer_to("RTP/AVP")).srtp is None


def test_an_answer_with_srtp_to_a_plain_offer_is_refused() -> None:
    offer = sdp.make_offer("10.0.0.1", 4000)
    with pytest.raises(NegotiationError, match="did not offer"):
        sdp.negotiate(offer, answer_to("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE30}"))


def test_hold_keeps_the_keys_of_the_offer() -> None:
    offer = sdp.make_offer("10.0.0.1", 4000, crypto=sdes.offer_lines(), srtp="required")
    held = sdp.hold(offer)
    assert held.media[0].get_all("crypto") == offer.media[0].get_all("crypto")
    assert held.media[0].proto == "RTP/SAVP"
