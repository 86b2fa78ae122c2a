"""gosipd._srtp, the media thread's AES-CM SRTP, against RFC 3711's vectors and libsrtp.

The reference is pylibsrtp's own ``Session`` (libsrtp): every packet we
protect must be byte for byte what libsrtp protects, libsrtp must take
ours, we must take libsrtp's, and both must refuse the same replays and
forgeries, whatever order the network delivers packets in.
"""

from __future__ import annotations

import os
import random
import struct

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gosipd import _srtp
from gosipd.srtp import SrtpContext, SrtpError, rtp_context

PROFILE = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
SUITES = sorted(PROFILE)


def reference(suite: str, key: bytes, *, outbound: bool) -> pylibsrtp.Session:
    ssrc = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc, srtp_profile=PROFILE[suite]))


def ours(suite: str, key: bytes, *, outbound: bool) -> _srtp.RtpTransform:
    context = rtp_context(suite, key, outbound=outbound)
    assert isinstance(context, _srtp.RtpTransform)
    return context


def rtp(
    seq: int,
    payload: bytes,
    *,
    ssrc: int = 0x1234ABCD,
    csrcs: int = 0,
    extension: bytes | None = None,
) -> bytes:
    first = 0x80 | csrcs | (0x10 if extension is not None else 0)
    header = struct.pack("!BBHII", first, 0, seq & 0xFFFF, 160 * seq & 0xFFFFFFFF, ssrc)
    header += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if extension is not None:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return header + payload


def their_unprotect(session: pylibsrtp.Session, packet: bytes) -> bytes | None:
    try:
        return session.unprotect(packet)
    except pylibsrtp.Error:
        return None


def our_unprotect(context: _srtp.RtpTransform, packet: bytes) -> bytes | None:
    status, plain = context.unprotect(packet)
    return plain if status == _srtp.STATUS_OK else None


# RFC 3711 Appendix B.3: the key derivation test vectors
MASTER = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (0x00, "C61E7A93744F39EE10734AFE3FF7A087"),
        (0x02, "30CBBC08863D8C85D49DB34A9AE1"),
        (0x01, "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE"),
    ],
)
def test_session_keys_are_rfc_3711s_test_vectors(label: int, expected: str) -> None:
    want = bytes.fromhex(expected)
    assert _srtp.derive(MASTER, label, len(want)) == want


@settings(max_examples=60, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    key=st.binary(min_size=30, max_size=30),
    first=st.integers(0, 0xFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    csrcs=st.integers(0, 3),
    extension=st.none() | st.binary(min_size=0, max_size=12).map(lambda b: b[: len(b) // 4 * 4]),
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=12),
)
def test_what_we_protect_is_what_libsrtp_protects_and_both_take_the_others(
    suite: str,
    key: bytes,
    first: int,
    ssrc: int,
    csrcs: int,
    extension: bytes | None,
    sizes: list[int],
) -> None:
    mine, theirs = ours(suite, key, outbound=True), reference(suite, key, outbound=True)
    my_in, their_in = ours(suite, key, outbound=False), reference(suite, key, outbound=False)
    for n, size in enumerate(sizes):
        packet = rtp(first + n, os.urandom(size), ssrc=ssrc, csrcs=csrcs, extension=extension)
        status, protected = mine.protect(packet)
        assert status == _srtp.STATUS_OK
        assert protected == theirs.protect(packet)
        assert their_unprotect(their_in, protected) == packet
        assert our_unprotect(my_in, protected) == packet


@pytest.mark.parametrize("suite", SUITES)
def test_the_rollover_counter_follows_the_sequence_number_through_its_wrap(suite: str) -> None:
    """Three wraps, each crossed by packets reordered around it (RFC 3711 §3.3.1)."""
    key = os.urandom(30)
    sender = reference(suite, key, outbound=True)
    receiver = ours(suite, key, outbound=False)
    packets = [sender.protect(rtp(seq, b"\xff" * 160)) for seq in range(65000, 65536 * 3 + 500)]
    order = list(range(len(packets)))
    for start in range(0, len(order) - 8, 8):
        random.Random(start).shuffle(order[start : start + 8])  # reordered, never by 8 or more
    for i in order:
        assert our_unprotect(receiver, packets[i]) is not None, i


def test_replays_are_refused_and_a_reordered_packet_is_taken_once() -> None:
    key = os.urandom(30)
    sender = reference("AES_CM_128_HMAC_SHA1_80", key, outbound=True)
    receiver = ours("AES_CM_128_HMAC_SHA1_80", key, outbound=False)
    packets = {seq: sender.protect(rtp(seq, b"audio")) for seq in range(1000, 1300)}
    for seq in range(1000, 1200, 2):
        assert receiver.unprotect(packets[seq])[0] == _srtp.STATUS_OK
    assert receiver.unprotect(packets[1198])[0] == _srtp.STATUS_REPLAY_FAIL
    assert receiver.unprotect(packets[1101])[0] == _srtp.STATUS_OK  # late, inside the window
    assert receiver.unprotect(packets[1101])[0] == _srtp.STATUS_REPLAY_FAIL
    assert receiver.unprotect(packets[1070])[0] == _srtp.STATUS_REPLAY_OLD  # 128 behind
    assert receiver.unprotect(packets[1071])[0] == _srtp.STATUS_OK  # 127 behind
    for seq in range(1201, 1300):
        assert receiver.unprotect(packets[seq])[0] == _srtp.STATUS_OK


@settings(max_examples=40, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    first=st.integers(0, 0xFFFF),
    deliveries=st.lists(st.integers(0, 299), min_size=1, max_size=80),
)
def test_any_delivery_order_is_accepted_and_refused_as_libsrtp_does(
    suite: str, first: int, deliveries: list[int]
) -> None:
    """Duplicates, reordering, losses and jumps: the same packets get through both."""
    key = os.urandom(30)
    sender = reference(suite, key, outbound=True)
    packets = [sender.protect(rtp(first + n, os.urandom(20))) for n in range(300)]
    mine, theirs = ours(suite, key, outbound=False), reference(suite, key, outbound=False)
    for i in deliveries:
        assert our_unprotect(mine, packets[i]) == their_unprotect(theirs, packets[i]), i


@pytest.mark.parametrize("suite", SUITES)
def test_a_forged_or_damaged_packet_is_refused_and_changes_nothing(suite: str) -> None:
    key = os.urandom(30)
    sender = reference(suite, key, outbound=True)
    receiver = ours(suite, key, outbound=False)
    good = sender.protect(rtp(500, bytes(range(160))))
    following = sender.protect(rtp(501, b"y"))
    for bit in range(0, len(good) * 8, 7):
        damaged = bytearray(good)
        damaged[bit // 8] ^= 1 << (bit % 8)
        status, out = receiver.unprotect(bytes(damaged))
        assert status != _srtp.STATUS_OK, bit
        assert out == bytes(damaged)
    # a forger's packet far ahead moved nothing: the real one is still taken, and the next
    forged = bytearray(sender.protect(rtp(30000, b"x" * 160)))
    forged[-1] ^= 1
    assert receiver.unprotect(bytes(forged))[0] == _srtp.STATUS_AUTH_FAIL
    assert our_unprotect(receiver, good) == rtp(500, bytes(range(160)))
    assert receiver.unprotect(following)[0] == _srtp.STATUS_OK
    other = ours(suite, os.urandom(30), outbound=False)
    assert other.unprotect(good)[0] == _srtp.STATUS_AUTH_FAIL  # another key
    for short in (b"", good[:11], good[:15]):
        assert receiver.unprotect(short)[0] != _srtp.STATUS_OK


def test_an_index_is_never_protected_twice() -> None:
    """Keystream reuse would give away the XOR of two payloads."""
    sender = ours("AES_CM_128_HMAC_SHA1_80", os.urandom(30), outbound=True)
    assert sender.protect(rtp(7, b"first"))[0] == _srtp.STATUS_OK
    assert sender.protect(rtp(7, b"again"))[0] == _srtp.STATUS_REPLAY_FAIL


def test_each_ssrc_has_its_own_counter_and_window() -> None:
    key = os.urandom(30)
    a = reference("AES_CM_128_HMAC_SHA1_80", key, outbound=True)
    receiver = ours("AES_CM_128_HMAC_SHA1_80", key, outbound=False)
    first = [a.protect(rtp(seq, b"a", ssrc=1)) for seq in (100, 101)]
    second = [a.protect(rtp(seq, b"b", ssrc=2)) for seq in (60000, 60001)]
    for packet in (first[0], second[0], first[1], second[1]):
        assert receiver.unprotect(packet)[0] == _srtp.STATUS_OK
    for packet in first + second:
        assert receiver.unprotect(packet)[0] == _srtp.STATUS_REPLAY_FAIL
    # more SSRCs than it keeps: the least recently used is forgotten, the rest remembered
    for ssrc in range(3, 3 + _srtp.TRACKS - 1):
        assert receiver.unprotect(a.protect(rtp(5, b"c", ssrc=ssrc)))[0] == _srtp.STATUS_OK
    assert receiver.unprotect(second[1])[0] == _srtp.STATUS_REPLAY_FAIL


def test_keys_and_suites_are_checked_and_gcm_stays_with_libsrtp() -> None:
    with pytest.raises(SrtpError, match="30-octet"):
        rtp_context("AES_CM_128_HMAC_SHA1_80", b"short", outbound=True)
    with pytest.raises(SrtpError, match="unknown"):
        rtp_context("NULL_HMAC_SHA1_80", os.urandom(30), outbound=True)
    assert isinstance(rtp_context("AEAD_AES_128_GCM", os.urandom(28), outbound=True), SrtpContext)
    context = ours("AES_CM_128_HMAC_SHA1_32", os.urandom(30), outbound=False)
    assert "HMAC-SHA1-32 inbound" in repr(context)
    assert context.handle and context.function
