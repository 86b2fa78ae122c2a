# cython: language_level=3
"""SRTP for RTP with AES_CM_128_HMAC_SHA1_80 and _32 (RFC 3711), for the media thread.

**Why not libsrtp here.** libsrtp with OpenSSL 3 re-initialises an EVP
cipher context (for the packet's IV) and copies HMAC digest contexts (two
provider contexts, reallocated) for every packet. Warm, that is about 1 µs;
in a media thread woken once per 20 ms among hundreds of call processes,
every one of those scattered structures is a cache and TLB miss, and
protect plus unprotect cost 15-20 µs a tick, half again the whole plain
media loop (``bench/media.py``). This transform keeps one call direction's
state in one small struct and never re-initialises anything per packet:

- the keystream is AES-128 in ECB over the packet's counter blocks, through
  one EVP context set up once with the session key (counter mode is ECB of
  the counters, XORed in: RFC 3711 §4.1.1);
- the tag is HMAC-SHA1 from the inner and outer SHA-1 states precomputed
  from the session authentication key (RFC 2104 §4), copied per packet.

The primitives are OpenSSL's, the copy linked into pylibsrtp's binding
(``gosipd.srtp`` hands over their addresses), so nothing is linked here and
no cipher is written here. What is written here is RFC 3711's framing: key
derivation (§4.3, key derivation rate 0), the packet index from the
rollover counter (§3.3.1, Appendix A) and the replay window (§3.3.2, 128
packets as libsrtp's default). It is checked bit for bit against libsrtp
(``tests/media/test_srtp_native.py``) and against RFC 3711's test vectors.
AEAD_AES_128_GCM and all of SRTCP stay on libsrtp (``gosipd.srtp``).

**Streams.** A context tracks up to ``TRACKS`` SSRCs (a far end that
changes SSRC keeps its replay state; the least recently used is forgotten),
each with its own rollover counter and window, as libsrtp's
``ssrc_any_inbound``/``_outbound`` streams. A new SSRC, or a new index, is
only stored once its packet authenticated (inbound) or was protected
(outbound). Protecting an index twice is refused: it would reuse keystream.

The two C entry points have libsrtp's signature and status codes, so the
media loop calls either implementation the same way. One context is used
by one thread at a time.
"""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset

# libsrtp's srtp_err_status_t values, which the media loop understands
cdef enum:
    OK = 0
    BAD_PARAM = 2
    AUTH_FAIL = 7
    CIPHER_FAIL = 8
    REPLAY_FAIL = 9
    REPLAY_OLD = 10

cdef enum:
    _TRACKS = 4  # SSRCs one context keeps state for
    _WINDOW = 128  # the replay window, in packets
    _BLOCKS = 128  # keystream blocks per packet: 2048 octets of payload
    _SALT = 14
    _DIGEST = 20

TRACKS = _TRACKS

STATUS_OK = OK
STATUS_AUTH_FAIL = AUTH_FAIL
STATUS_REPLAY_FAIL = REPLAY_FAIL
STATUS_REPLAY_OLD = REPLAY_OLD

# OpenSSL's entry points (public API), resolved by gosipd.srtp
ctypedef void* (*ctx_new_f)() noexcept nogil
ctypedef void (*ctx_free_f)(void* ctx) noexcept nogil
ctypedef const void* (*cipher_f)() noexcept nogil
ctypedef int (*init_f)(void* ctx, const void* cipher, void* engine, const uint8_t* key,
                       const uint8_t* iv) noexcept nogil
ctypedef int (*padding_f)(void* ctx, int pad) noexcept nogil
ctypedef int (*update_f)(void* ctx, uint8_t* out, int* outl, const uint8_t* inp,
                         int inl) noexcept nogil
ctypedef int (*sha_init_f)(void* c) noexcept nogil
ctypedef int (*sha_update_f)(void* c, const void* data, size_t n) noexcept nogil
ctypedef int (*sha_final_f)(uint8_t* md, void* c) noexcept nogil
ctypedef int (*memcmp_f)(const void* a, const void* b, size_t n) noexcept nogil

cdef ctx_new_f _ctx_new = NULL
cdef ctx_free_f _ctx_free = NULL
cdef cipher_f _aes_128_ecb = NULL
cdef init_f _encrypt_init = NULL
cdef padding_f _set_padding = NULL
cdef update_f _encrypt_update = NULL
cdef sha_init_f _sha1_init = NULL
cdef sha_update_f _sha1_update = NULL
cdef sha_final_f _sha1_final = NULL
cdef memcmp_f _crypto_memcmp = NULL

#: The names set_crypto_functions takes, in order.
CRYPTO_FUNCTIONS = (
    "EVP_CIPHER_CTX_new", "EVP_CIPHER_CTX_free", "EVP_aes_128_ecb", "EVP_EncryptInit_ex",
    "EVP_CIPHER_CTX_set_padding", "EVP_EncryptUpdate", "SHA1_Init", "SHA1_Update",
    "SHA1_Final", "CRYPTO_memcmp",
)


def set_crypto_functions(*addresses):
    """Give this module OpenSSL's functions, named in ``CRYPTO_FUNCTIONS``."""
    global _ctx_new, _ctx_free, _aes_128_ecb, _encrypt_init, _set_padding
    global _encrypt_update, _sha1_init, _sha1_update, _sha1_final, _crypto_memcmp
    if len(addresses) != len(CRYPTO_FUNCTIONS) or not all(addresses):
        raise ValueError(f"need the addresses of {', '.join(CRYPTO_FUNCTIONS)}")
    cdef uintptr_t[10] a
    for i in range(10):
        a[i] = addresses[i]
    _ctx_new = <ctx_new_f>a[0]
    _ctx_free = <ctx_free_f>a[1]
    _aes_128_ecb = <cipher_f>a[2]
    _encrypt_init = <init_f>a[3]
    _set_padding = <padding_f>a[4]
    _encrypt_update = <update_f>a[5]
    _sha1_init = <sha_init_f>a[6]
    _sha1_update = <sha_update_f>a[7]
    _sha1_final = <sha_final_f>a[8]
    _crypto_memcmp = <memcmp_f>a[9]


cdef struct ShaState:
    uint64_t words[16]  # OpenSSL's SHA_CTX is 96 octets; room to spare, aligned

cdef struct Track:
    uint32_t ssrc
    bint used
    uint64_t highest  # the highest index protected or authenticated (48 bits)
    uint64_t window[2]  # bit k: index highest - k was seen
    uint64_t touched  # for forgetting the least recently used

cdef struct Stream:
    void* ecb  # EVP_CIPHER_CTX: AES-128-ECB with the session key, no padding
    ShaState inner
    ShaState outer
    uint8_t salt[_SALT]
    int tag_length
    uint64_t clock  # packets seen, for Track.touched
    Track tracks[_TRACKS]


cdef inline uint32_t _be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef int _payload_offset(const uint8_t* p, int n) noexcept nogil:
    """Where the encrypted part starts: after the CSRCs and the header extension."""
    if n < 12 or (p[0] >> 6) != 2:
        return -1
    cdef int offset = 12 + 4 * (p[0] & 0x0F)
    if p[0] & 0x10:
        if n < offset + 4:
            return -1
        offset += 4 + 4 * ((<int>p[offset + 2] << 8) | p[offset + 3])
    return offset if offset <= n else -1


cdef Track* _find(Stream* s, uint32_t ssrc) noexcept nogil:
    cdef int i
    for i in range(_TRACKS):
        if s.tracks[i].used and s.tracks[i].ssrc == ssrc:
            return &s.tracks[i]
    return NULL


cdef int _index(const Track* t, uint16_t seq, uint64_t* index) noexcept nogil:
    """The packet's 48-bit index (RFC 3711 §3.3.1), or why it is refused (replay)."""
    if t == NULL:
        index[0] = seq  # a stream's first packet: ROC 0 (RFC 3711 §3.3.1)
        return OK
    cdef int64_t roc = <int64_t>(t.highest >> 16)
    cdef int64_t s_l = <int64_t>(t.highest & 0xFFFF)
    cdef int64_t v = roc
    if s_l < 32768:
        if seq - s_l > 32768:
            v = roc - 1
    elif s_l - 32768 > seq:
        v = roc + 1
    if v < 0 or v > <int64_t>0xFFFFFFFF:
        return REPLAY_OLD  # before the stream's first packet, or past 2^48
    cdef uint64_t guess = (<uint64_t>v << 16) | seq
    cdef uint64_t k
    if guess <= t.highest:
        k = t.highest - guess
        if k >= _WINDOW:
            return REPLAY_OLD
        if (t.window[k >> 6] >> (k & 63)) & 1:
            return REPLAY_FAIL
    index[0] = guess
    return OK


cdef void _commit(Stream* s, Track* t, uint32_t ssrc, uint64_t index) noexcept nogil:
    """Record an index that was protected or authenticated."""
    cdef int i
    cdef uint64_t k, shift
    if t == NULL:
        t = &s.tracks[0]
        for i in range(_TRACKS):
            if not s.tracks[i].used:
                t = &s.tracks[i]
                break
            if s.tracks[i].touched < t.touched:
                t = &s.tracks[i]
        t.used = True
        t.ssrc = ssrc
        t.highest = index
        t.window[0] = 1
        t.window[1] = 0
    elif index > t.highest:
        shift = index - t.highest
        if shift >= _WINDOW:
            t.window[0] = 0
            t.window[1] = 0
        elif shift >= 64:
            t.window[1] = t.window[0] << (shift - 64)
            t.window[0] = 0
        else:
            t.window[1] = (t.window[1] << shift) | (t.window[0] >> (64 - shift))
            t.window[0] = t.window[0] << shift
        t.window[0] |= 1
        t.highest = index
    else:
        k = t.highest - index
        t.window[k >> 6] |= (<uint64_t>1) << (k & 63)
    s.clock += 1
    t.touched = s.clock


cdef int _keystream_xor(void* ecb, const uint8_t* iv, uint8_t* data, int n) noexcept nogil:
    """XOR AES-CM's keystream for ``iv`` (the counter in its last two octets) into data."""
    cdef int j
    cdef uint8_t blocks[_BLOCKS * 16]
    cdef int count = (n + 15) >> 4
    cdef int outl = 0
    if count > _BLOCKS:
        return BAD_PARAM
    for j in range(count):
        memcpy(&blocks[16 * j], iv, 14)
        blocks[16 * j + 14] = <uint8_t>(j >> 8)
        blocks[16 * j + 15] = <uint8_t>j
    if _encrypt_update(ecb, blocks, &outl, blocks, 16 * count) != 1 or outl != 16 * count:
        return CIPHER_FAIL
    for j in range(n):
        data[j] ^= blocks[j]
    return OK


cdef void _crypt_iv(const Stream* s, uint32_t ssrc, uint64_t index, uint8_t* iv) noexcept nogil:
    """IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16), as 14 octets (RFC 3711 §4.1.1)."""
    cdef int j
    memcpy(iv, s.salt, _SALT)
    iv[4] ^= <uint8_t>(ssrc >> 24)
    iv[5] ^= <uint8_t>(ssrc >> 16)
    iv[6] ^= <uint8_t>(ssrc >> 8)
    iv[7] ^= <uint8_t>ssrc
    for j in range(6):
        iv[8 + j] ^= <uint8_t>(index >> (40 - 8 * j))


cdef void _tag(const Stream* s, const uint8_t* p, int n, uint32_t roc,
               uint8_t* digest) noexcept nogil:
    """HMAC-SHA1(k_a, packet || ROC) (RFC 3711 §4.2.1)."""
    cdef ShaState c
    cdef uint8_t roc_octets[4]
    roc_octets[0] = <uint8_t>(roc >> 24)
    roc_octets[1] = <uint8_t>(roc >> 16)
    roc_octets[2] = <uint8_t>(roc >> 8)
    roc_octets[3] = <uint8_t>roc
    memcpy(&c, &s.inner, sizeof(ShaState))
    _sha1_update(&c, p, <size_t>n)
    _sha1_update(&c, roc_octets, 4)
    _sha1_final(digest, &c)
    memcpy(&c, &s.outer, sizeof(ShaState))
    _sha1_update(&c, digest, _DIGEST)
    _sha1_final(digest, &c)


cdef int _locate(Stream* s, const uint8_t* p, int n, int* offset, Track** t,
                 uint64_t* index) noexcept nogil:
    """The packet's payload offset, its SSRC's track (NULL: new) and its index."""
    offset[0] = _payload_offset(p, n)
    if offset[0] < 0:
        return BAD_PARAM
    t[0] = _find(s, _be32(p + 8))
    return _index(t[0], (<uint16_t>p[2] << 8) | p[3], index)


cdef int _crypt(const Stream* s, uint8_t* p, int offset, int n, uint64_t index) noexcept nogil:
    """AES-CM over the payload, in place: encrypts and decrypts alike."""
    cdef uint8_t iv[_SALT]
    _crypt_iv(s, _be32(p + 8), index, iv)
    return _keystream_xor(s.ecb, iv, p + offset, n - offset)


cdef int rtp_protect(void* context, void* packet, int* length) noexcept nogil:
    """Encrypt and tag an RTP packet in place; the buffer has room for the tag."""
    cdef Stream* s = <Stream*>context
    cdef uint8_t* p = <uint8_t*>packet
    cdef int n = length[0]
    cdef int offset = 0
    cdef Track* t = NULL
    cdef uint64_t index = 0
    cdef int status = _locate(s, p, n, &offset, &t, &index)
    if status == OK:
        status = _crypt(s, p, offset, n, index)
    if status != OK:
        return status
    cdef uint8_t digest[_DIGEST]
    _tag(s, p, n, <uint32_t>(index >> 16), digest)
    memcpy(p + n, digest, s.tag_length)
    length[0] = n + s.tag_length
    _commit(s, t, _be32(p + 8), index)
    return OK


cdef int rtp_unprotect(void* context, void* packet, int* length) noexcept nogil:
    """Check and decrypt an SRTP packet in place; nothing is changed unless it is OK."""
    cdef Stream* s = <Stream*>context
    cdef uint8_t* p = <uint8_t*>packet
    cdef int n = length[0] - s.tag_length
    cdef int offset = 0
    cdef Track* t = NULL
    cdef uint64_t index = 0
    cdef int status = _locate(s, p, n, &offset, &t, &index)
    if status != OK:
        return status
    cdef uint8_t digest[_DIGEST]
    _tag(s, p, n, <uint32_t>(index >> 16), digest)
    if _crypto_memcmp(digest, p + n, s.tag_length) != 0:
        return AUTH_FAIL
    status = _crypt(s, p, offset, n, index)
    if status != OK:
        return status
    length[0] = n
    _commit(s, t, _be32(p + 8), index)
    return OK


cdef void _hmac_state(const uint8_t* key, uint8_t pad_octet, ShaState* state) noexcept nogil:
    """SHA-1 after the key XOR ipad or opad block (RFC 2104 §2; the key is 20 octets)."""
    cdef int j
    cdef uint8_t pad[64]
    memset(pad, pad_octet, 64)
    for j in range(_DIGEST):
        pad[j] ^= key[j]
    _sha1_init(state)
    _sha1_update(state, pad, 64)
    memset(pad, 0, 64)


cdef bint _derive(const uint8_t* master_key, const uint8_t* master_salt, uint8_t label,
                  uint8_t* out, int n):
    """One session key (RFC 3711 §4.3.1 and §4.3.3, key derivation rate 0)."""
    cdef void* ecb = _ctx_new()
    if ecb == NULL:
        return False
    cdef uint8_t iv[_SALT]
    memcpy(iv, master_salt, _SALT)
    iv[7] ^= label  # x = (label || r) XOR master salt, right-aligned; r = 0
    memset(out, 0, n)
    cdef bint ok = (_encrypt_init(ecb, _aes_128_ecb(), NULL, master_key, NULL) == 1
                    and _set_padding(ecb, 0) == 1
                    and _keystream_xor(ecb, iv, out, n) == OK)
    _ctx_free(ecb)
    return ok


def derive(bytes master, int label, int length):
    """A session key from a master key and salt (30 octets): for the tests' RFC vectors."""
    if _ctx_new == NULL:
        raise RuntimeError("set_crypto_functions() was not called")
    if len(master) != 16 + _SALT or not 0 <= label <= 255 or not 0 < length <= 64:
        raise ValueError("need 30 octets of master key and salt, a label and 1..64 octets")
    cdef uint8_t out[64]
    cdef const uint8_t* m = master
    if not _derive(m, m + 16, <uint8_t>label, out, length):
        raise RuntimeError("OpenSSL refused AES-128-ECB")
    return bytes(out[:length])


cdef class RtpTransform:
    """One direction of SRTP for RTP with AES-CM-128 and an 80- or 32-bit HMAC-SHA1 tag.

    ``handle`` and ``function`` are for the media thread (``gosipd._media``);
    ``protect``/``unprotect`` do the same in Python (tests, references).
    """

    cdef Stream _s
    cdef readonly bint outbound

    def __cinit__(self, bytes master, int tag_length, bint outbound):
        if _ctx_new == NULL:
            raise RuntimeError("set_crypto_functions() was not called")
        if len(master) != 16 + _SALT:
            raise ValueError(
                f"AES-CM-128 needs 30 octets of master key and salt, got {len(master)}")
        if tag_length not in (4, 10):
            raise ValueError(f"the HMAC-SHA1 tag is 4 or 10 octets, not {tag_length}")
        memset(&self._s, 0, sizeof(Stream))
        self.outbound = outbound
        self._s.tag_length = tag_length
        cdef const uint8_t* m = master
        cdef uint8_t key[16]
        cdef uint8_t auth[_DIGEST]
        if not (_derive(m, m + 16, 0x00, key, 16)
                and _derive(m, m + 16, 0x01, auth, _DIGEST)
                and _derive(m, m + 16, 0x02, self._s.salt, _SALT)):
            raise RuntimeError("OpenSSL refused AES-128-ECB")
        _hmac_state(auth, 0x36, &self._s.inner)
        _hmac_state(auth, 0x5C, &self._s.outer)
        memset(auth, 0, _DIGEST)
        self._s.ecb = _ctx_new()
        ok = (self._s.ecb != NULL
              and _encrypt_init(self._s.ecb, _aes_128_ecb(), NULL, key, NULL) == 1
              and _set_padding(self._s.ecb, 0) == 1)
        memset(key, 0, 16)
        if not ok:
            raise RuntimeError("OpenSSL refused AES-128-ECB")

    def __dealloc__(self):
        if self._s.ecb != NULL:
            _ctx_free(self._s.ecb)  # frees (and cleanses) the key schedule
        memset(&self._s, 0, sizeof(Stream))

    def __repr__(self):
        return f"<RtpTransform AES-CM-128 HMAC-SHA1-{self._s.tag_length * 8} " \
               f"{'outbound' if self.outbound else 'inbound'}>"

    @property
    def handle(self):
        """The state's address, valid while this object lives."""
        return <uintptr_t>&self._s

    @property
    def function(self):
        """The address of the C protect (outbound) or unprotect (inbound) function."""
        return <uintptr_t>(&rtp_protect if self.outbound else &rtp_unprotect)

    def protect(self, packet):
        """(status, SRTP packet) for an RTP packet."""
        return self._run(packet, True)

    def unprotect(self, packet):
        """(status, RTP packet) for an SRTP packet; the packet is unchanged unless OK."""
        return self._run(packet, False)

    cdef tuple _run(self, packet, bint protect):
        cdef bytes data = bytes(packet)
        cdef int n = len(data)
        if n > _BLOCKS * 16:
            return BAD_PARAM, data
        cdef uint8_t buffer[_BLOCKS * 16 + _DIGEST]
        memcpy(buffer, <const char*>data, n)
        cdef int status
        if protect:
            status = rtp_protect(&self._s, buffer, &n)
        else:
            status = rtp_unprotect(&self._s, buffer, &n)
        return status, (bytes(buffer[:n]) if status == OK else data)
