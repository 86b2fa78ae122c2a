"""SRTP and SRTCP contexts (RFC 3711, RFC 7714) for one call's media.

libsrtp comes with ``pylibsrtp`` (the binding aiortc uses, with libsrtp and
its crypto linked in). We use its C API through the binding's cffi ``lib``
rather than its ``Session`` class because the media loop is native: RTP is
protected and unprotected by the media thread itself, without the GIL
(``gosipd._media``), so it needs a C entry point and a context pointer
(``handle`` and ``function``), not a Python method per packet. RTCP, a few
packets a second, is protected here in Python.

RTP with the AES-CM suites goes through ``gosipd._srtp`` instead, the same
transform on the same OpenSSL without libsrtp's per-packet context set-up
(its docstring says why: the media budget); ``rtp_context`` picks.

**One context per direction and per kind.** libsrtp's ``srtp_t`` is not
thread-safe, and the RTP and RTCP of a call are handled by two threads (the
media thread and the call's trio thread). So a call holds four contexts:
RTP out (our key, the media thread), RTP in (the far end's key, the media
thread), RTCP out and RTCP in (the trio thread). RFC 3711 derives separate
RTP and RTCP session keys from one master key, so splitting them this way
changes nothing on the wire.

**Keys** are bytes of master key followed by master salt (the RFC 4568
``inline:`` value, decoded). ``SrtpContext`` never shows its key in a repr,
and nothing here logs.
"""

from __future__ import annotations

import ctypes
from typing import Any

from pylibsrtp import _binding  # the cffi binding: libsrtp's C API, linked in the wheel

from gosipd import _srtp
from gosipd.sdes import SUITES

__all__ = [
    "PROFILES",
    "RtpContext",
    "SrtpContext",
    "SrtpError",
    "rtp_context",
]

_ffi: Any = _binding.ffi
_lib: Any = _binding.lib

_MAX_PACKET = 1500
#: The most octets protection adds: an RTCP index (4) and a 16-octet tag (GCM).
MAX_OVERHEAD = 4 + 16


class SrtpError(Exception):
    """libsrtp refused a key, a policy or a packet."""

    def __init__(self, reason: str, status: int = 1) -> None:
        super().__init__(reason)
        self.status = status


#: RFC 4568 / RFC 7714 crypto-suite name -> libsrtp profile (key sizes: ``gosipd.sdes``).
PROFILES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": int(_lib.srtp_profile_aes128_cm_sha1_80),
    "AES_CM_128_HMAC_SHA1_32": int(_lib.srtp_profile_aes128_cm_sha1_32),
    "AEAD_AES_128_GCM": int(_lib.srtp_profile_aead_aes_128_gcm),
}


#: libsrtp's RTP entry points, for the media thread when a context is libsrtp's.
_PROTECT, _UNPROTECT = (
    int(_ffi.cast("uintptr_t", _ffi.addressof(_lib, name)))
    for name in ("srtp_protect", "srtp_unprotect")
)
#: The suites ``gosipd._srtp`` protects RTP with (its docstring says why), by tag length.
_NATIVE_SUITES = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}


def _give_crypto_functions() -> None:
    """Hand ``gosipd._srtp`` the OpenSSL entry points of the copy linked into the binding.

    ``dlopen`` of the already loaded binding returns that same copy, so both
    implementations share one OpenSSL (and its CPU-feature detection).
    """
    library = ctypes.CDLL(_binding.__file__)
    _srtp.set_crypto_functions(
        *(
            ctypes.cast(getattr(library, name), ctypes.c_void_p).value
            for name in _srtp.CRYPTO_FUNCTIONS
        )
    )


_give_crypto_functions()


class SrtpContext:
    """One direction of SRTP (``outbound``: we protect; else we unprotect) with one key.

    The key is checked here (length, suite); the same object can protect or
    unprotect RTCP in Python (``protect_rtcp``/``unprotect_rtcp``) or hand its
    ``srtp_t`` to the media thread (``handle``), never both at once.
    """

    __slots__ = ("_buffer", "_key", "_session", "outbound", "suite")

    def __init__(self, suite: str, master: bytes, *, outbound: bool) -> None:
        if suite not in PROFILES:
            raise SrtpError(f"unknown SRTP crypto-suite {suite!r}", 2)
        length = sum(SUITES[suite])
        if len(master) != length:
            raise SrtpError(
                f"{suite} needs a {length}-octet master key and salt, got {len(master)}", 2
            )
        self.suite = suite
        self.outbound = outbound
        policy = _ffi.new("srtp_policy_t *")
        _check(
            _lib.srtp_crypto_policy_set_from_profile_for_rtp(
                _ffi.addressof(policy.rtp), PROFILES[suite]
            )
        )
        _check(
            _lib.srtp_crypto_policy_set_from_profile_for_rtcp(
                _ffi.addressof(policy.rtcp), PROFILES[suite]
            )
        )
        self._key = _ffi.new("unsigned char[]", master)
        policy.key = self._key
        policy.ssrc.type = _lib.ssrc_any_outbound if outbound else _lib.ssrc_any_inbound
        policy.window_size = (
            128  # libsrtp's default; RFC 3711 §3.3.2 asks >= 64 (2.5 s of 20 ms packets)
        )
        session = _ffi.new("srtp_t *")
        _check(_lib.srtp_create(session, policy))
        self._session = _ffi.gc(session, _dealloc)
        self._buffer = _ffi.new("unsigned char[]", _MAX_PACKET + MAX_OVERHEAD)

    def __repr__(self) -> str:
        way = "outbound" if self.outbound else "inbound"
        return f"<SrtpContext {self.suite} {way}>"

    @property
    def handle(self) -> int:
        """The ``srtp_t`` as an address, valid while this object lives."""
        return int(_ffi.cast("uintptr_t", self._session[0]))

    @property
    def function(self) -> int:
        """The address of ``srtp_protect`` (outbound) or ``srtp_unprotect``, for ``handle``."""
        return _PROTECT if self.outbound else _UNPROTECT

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._process(packet, _lib.srtp_protect_rtcp)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return self._process(packet, _lib.srtp_unprotect_rtcp)

    def _process(self, packet: bytes, function: Any) -> bytes:
        n = len(packet)
        if n > _MAX_PACKET:
            raise SrtpError(f"a {n}-octet packet is longer than {_MAX_PACKET}", 2)
        self._buffer[0:n] = packet
        length = _ffi.new("int *", n)
        status = function(self._session[0], self._buffer, length)
        if status != 0:
            raise SrtpError(_reason(status), status)
        return bytes(_ffi.buffer(self._buffer, length[0]))


#: What the media thread is given for RTP: anything with ``handle`` and ``function``.
RtpContext = SrtpContext | _srtp.RtpTransform


def rtp_context(suite: str, master: bytes, *, outbound: bool) -> RtpContext:
    """The context for one direction of a call's RTP: ``gosipd._srtp`` for AES-CM, else libsrtp.

    Raises ``SrtpError`` for an unknown suite or a key of the wrong length.
    """
    tag_length = _NATIVE_SUITES.get(suite)
    if tag_length is None:
        return SrtpContext(suite, master, outbound=outbound)
    length = sum(SUITES[suite])
    if len(master) != length:
        raise SrtpError(f"{suite} needs a {length}-octet master key and salt, got {len(master)}", 2)
    return _srtp.RtpTransform(master, tag_length, outbound)


def _dealloc(session: Any) -> None:
    _lib.srtp_dealloc(session[0])


def _check(status: int) -> None:
    if status != 0:
        raise SrtpError(f"libsrtp: {_reason(status)}", status)


def _reason(status: int) -> str:
    return {
        2: "unsupported parameter",
        3: "out of memory",
        7: "authentication failed",
        9: "replayed packet",
        10: "packet too old (replay window)",
        13: "no context for this SSRC",
    }.get(status, f"error {status}")
