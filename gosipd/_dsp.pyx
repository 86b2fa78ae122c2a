# cython: language_level=3
"""Audio DSP for one call: G.711 codecs, mixing, gain, level, comfort noise, tones,
in-band DTMF detection.

Everything here works on 16-bit native-endian linear PCM at any rate (8 kHz
in practice) and on G.711 octets. It is the media loop's inner work, so it is
written for the cost of one 20 ms frame *including the Python call*: bytes
objects take a fast path with no buffer-protocol round trip, other buffers
(bytearray, memoryview, numpy int16 arrays) go through one checked
acquisition, and every ``*_into`` variant writes into the caller's buffer
without allocating.

The G.711 encoders are 64 KiB lookup tables built at import from the same
segment search that CPython's ``audioop`` (and SoX before it) uses, so the
output is bit-exact with ``audioop.lin2ulaw`` / ``lin2alaw`` for every input;
the tests check all 65,536 of them.
"""

from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_ND,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport cos, log10, lround, pow, sin, sqrt
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memset

cimport cython

import os

__all__ = [
    "CALL_PROGRESS_TONES",
    "DTMF_COLUMN_HZ",
    "DTMF_EVENT_DIGITS",
    "DTMF_FREQUENCIES",
    "DTMF_ROW_HZ",
    "ComfortNoise",
    "DtmfDetector",
    "ToneGenerator",
    "alaw_decode",
    "alaw_decode_into",
    "alaw_encode",
    "alaw_encode_into",
    "gain",
    "gain_into",
    "mix",
    "mix_into",
    "rms_dbov",
    "ulaw_decode",
    "ulaw_decode_into",
    "ulaw_encode",
    "ulaw_encode_into",
]

DEF FULL_SCALE = 32768.0
#: Floor that ``rms_dbov`` reports for digital silence (a float, so JSON can carry it).
SILENCE_DBOV = -100.0
#: The most samples one generator call will produce (10 s at 8 kHz), so a typo
#: cannot ask for gigabytes.
MAX_GENERATED_SAMPLES = 80_000
#: The largest gain accepted, in dB, either way; beyond it nothing is left but clipping or zero.
MAX_GAIN_DB = 96.0

# --------------------------------------------------------------------------
# G.711 tables
# --------------------------------------------------------------------------

# µ-law depends only on sample >> 2 and A-law on sample >> 3, so the encode
# tables hold 16 Ki and 8 Ki entries: small enough to stay in L1 cache.
cdef uint8_t ULAW_FROM_LINEAR[16384]
cdef uint8_t ALAW_FROM_LINEAR[8192]
cdef int16_t LINEAR_FROM_ULAW[256]
cdef int16_t LINEAR_FROM_ALAW[256]

cdef int16_t[8] SEG_UEND = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]
cdef int16_t[8] SEG_AEND = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]


cdef int _segment(int value, int16_t* ends) noexcept:
    cdef int i
    for i in range(8):
        if value <= ends[i]:
            return i
    return 8


cdef uint8_t _ulaw_of(int sample) noexcept:
    # The 14-bit sox algorithm that audioop applies to sample >> 2.
    cdef int pcm = sample >> 2
    cdef int mask, seg
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    if pcm > 8159:
        pcm = 8159
    pcm += 0x84 >> 2
    seg = _segment(pcm, SEG_UEND)
    if seg >= 8:
        return <uint8_t>(0x7F ^ mask)
    return <uint8_t>(((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask)


cdef uint8_t _alaw_of(int sample) noexcept:
    # The 13-bit sox algorithm that audioop applies to sample >> 3.
    cdef int pcm = sample >> 3
    cdef int mask, seg, aval
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, SEG_AEND)
    if seg >= 8:
        return <uint8_t>(0x7F ^ mask)
    aval = seg << 4
    if seg < 2:
        aval |= (pcm >> 1) & 0xF
    else:
        aval |= (pcm >> seg) & 0xF
    return <uint8_t>(aval ^ mask)


cdef int16_t _linear_of_ulaw(int code) noexcept:
    cdef int u = (~code) & 0xFF
    cdef int t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return <int16_t>((0x84 - t) if (u & 0x80) else (t - 0x84))


cdef int16_t _linear_of_alaw(int code) noexcept:
    cdef int a = code ^ 0x55
    cdef int t = (a & 0x0F) << 4
    cdef int seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return <int16_t>(t if (a & 0x80) else -t)


cdef void _build_tables() noexcept:
    cdef int i
    for i in range(16384):
        ULAW_FROM_LINEAR[i] = _ulaw_of(<int16_t><uint16_t>(i << 2))
    for i in range(8192):
        ALAW_FROM_LINEAR[i] = _alaw_of(<int16_t><uint16_t>(i << 3))
    for i in range(256):
        LINEAR_FROM_ULAW[i] = _linear_of_ulaw(i)
        LINEAR_FROM_ALAW[i] = _linear_of_alaw(i)


_build_tables()

# --------------------------------------------------------------------------
# Buffer access: a fast path for bytes, one checked acquisition otherwise
# --------------------------------------------------------------------------


cdef bint _is_int16_format(const char* fmt) noexcept:
    if fmt == NULL:
        return False
    if fmt[0] == b"@" or fmt[0] == b"=" or fmt[0] == b"<":
        # "<" is native only on little-endian hosts, which is all we build for.
        fmt += 1
    return fmt[0] == b"h" and fmt[1] == 0


cdef bint _is_octet_format(const char* fmt) noexcept:
    if fmt == NULL:
        return True
    return (fmt[0] == b"B" or fmt[0] == b"b" or fmt[0] == b"c") and fmt[1] == 0


cdef const char* _read_buffer(object obj, Py_buffer* view, Py_ssize_t* nbytes,
                              bint pcm, str what) except NULL:
    """Return a pointer to obj's octets; view.obj is NULL when nothing to release."""
    memset(view, 0, sizeof(Py_buffer))
    if type(obj) is bytes:
        nbytes[0] = len(<bytes>obj)
        return PyBytes_AS_STRING(obj)
    if isinstance(obj, str) or not PyObject_CheckBuffer(obj):
        raise TypeError(
            f"{what} must be a bytes-like object "
            f"({'int16 samples' if pcm else 'octets'}), not {type(obj).__name__}"
        )
    PyObject_GetBuffer(obj, view, PyBUF_ND | PyBUF_FORMAT)
    if view.itemsize == 1 and _is_octet_format(view.format):
        pass
    elif pcm and view.itemsize == 2 and _is_int16_format(view.format):
        pass
    else:
        fmt = view.format.decode("ascii", "replace") if view.format != NULL else "B"
        PyBuffer_Release(view)
        raise TypeError(
            f"{what} must hold {'int16 samples' if pcm else 'octets'}, "
            f"not items of format {fmt!r} and size {view.itemsize}"
        )
    nbytes[0] = view.len
    return <const char*>view.buf


cdef char* _write_buffer(object obj, Py_buffer* view, Py_ssize_t* nbytes,
                         bint pcm, str what) except NULL:
    if isinstance(obj, (bytes, str)) or not PyObject_CheckBuffer(obj):
        raise TypeError(
            f"{what} must be a writable bytes-like object "
            f"(bytearray, memoryview, numpy array), not {type(obj).__name__}"
        )
    try:
        PyObject_GetBuffer(obj, view, PyBUF_ND | PyBUF_FORMAT | PyBUF_WRITABLE)
    except BufferError as exc:
        raise TypeError(f"{what} must be writable and contiguous: {exc}") from None
    if not (
        (view.itemsize == 1 and _is_octet_format(view.format))
        or (pcm and view.itemsize == 2 and _is_int16_format(view.format))
    ):
        fmt = view.format.decode("ascii", "replace") if view.format != NULL else "B"
        PyBuffer_Release(view)
        raise TypeError(
            f"{what} must hold {'int16 samples' if pcm else 'octets'}, "
            f"not items of format {fmt!r} and size {view.itemsize}"
        )
    nbytes[0] = view.len
    return <char*>view.buf


cdef inline Py_ssize_t _samples_of(Py_ssize_t nbytes, str what) except -1:
    if nbytes & 1:
        raise ValueError(f"{what} has {nbytes} bytes: 16-bit PCM needs an even count")
    return nbytes >> 1

# --------------------------------------------------------------------------
# G.711 encode / decode
# --------------------------------------------------------------------------


cdef inline void _encode(const int16_t* src, uint8_t* dst, Py_ssize_t n,
                         const uint8_t* table, int shift) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = table[(<uint16_t>src[i]) >> shift]


cdef inline void _decode(const uint8_t* src, int16_t* dst, Py_ssize_t n,
                         const int16_t* table) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = table[src[i]]


cdef bytes _encode_bytes(object pcm, const uint8_t* table, int shift):
    cdef Py_buffer view
    cdef Py_ssize_t nbytes, n
    if type(pcm) is bytes and not (len(<bytes>pcm) & 1):
        # The media loop's case: no buffer acquisition at all.
        n = len(<bytes>pcm) >> 1
        out = PyBytes_FromStringAndSize(NULL, n)
        _encode(<const int16_t*>PyBytes_AS_STRING(pcm), <uint8_t*>PyBytes_AS_STRING(out),
                n, table, shift)
        return out
    cdef const char* src = _read_buffer(pcm, &view, &nbytes, True, "pcm")
    try:
        n = _samples_of(nbytes, "pcm")
        out = PyBytes_FromStringAndSize(NULL, n)
        _encode(<const int16_t*>src, <uint8_t*>PyBytes_AS_STRING(out), n, table, shift)
        return out
    finally:
        PyBuffer_Release(&view)


cdef bytes _decode_bytes(object data, const int16_t* table):
    cdef Py_buffer view
    cdef Py_ssize_t n
    if type(data) is bytes:
        n = len(<bytes>data)
        out = PyBytes_FromStringAndSize(NULL, n * 2)
        _decode(<const uint8_t*>PyBytes_AS_STRING(data), <int16_t*>PyBytes_AS_STRING(out),
                n, table)
        return out
    cdef const char* src = _read_buffer(data, &view, &n, False, "data")
    try:
        out = PyBytes_FromStringAndSize(NULL, n * 2)
        _decode(<const uint8_t*>src, <int16_t*>PyBytes_AS_STRING(out), n, table)
        return out
    finally:
        PyBuffer_Release(&view)


cdef Py_ssize_t _encode_into(object pcm, object out, const uint8_t* table,
                             int shift) except -1:
    cdef Py_buffer src_view, dst_view
    cdef Py_ssize_t nbytes, room, n
    cdef const char* src = _read_buffer(pcm, &src_view, &nbytes, True, "pcm")
    cdef char* dst
    try:
        n = _samples_of(nbytes, "pcm")
        dst = _write_buffer(out, &dst_view, &room, False, "out")
        try:
            if room < n:
                raise ValueError(f"out has room for {room} octets, {n} are needed")
            _encode(<const int16_t*>src, <uint8_t*>dst, n, table, shift)
        finally:
            PyBuffer_Release(&dst_view)
        return n
    finally:
        PyBuffer_Release(&src_view)


cdef Py_ssize_t _decode_into(object data, object out, const int16_t* table) except -1:
    cdef Py_buffer src_view, dst_view
    cdef Py_ssize_t n, room
    cdef const char* src = _read_buffer(data, &src_view, &n, False, "data")
    cdef char* dst
    try:
        dst = _write_buffer(out, &dst_view, &room, True, "out")
        try:
            if room < n * 2:
                raise ValueError(
                    f"out has room for {room // 2} samples, {n} are needed"
                )
            _decode(<const uint8_t*>src, <int16_t*>dst, n, table)
        finally:
            PyBuffer_Release(&dst_view)
        return n
    finally:
        PyBuffer_Release(&src_view)


@cython.always_allow_keywords(False)
def ulaw_encode(pcm):
    """int16 PCM -> G.711 µ-law octets, bit-exact with ``audioop.lin2ulaw(pcm, 2)``."""
    return _encode_bytes(pcm, ULAW_FROM_LINEAR, 2)


@cython.always_allow_keywords(False)
def ulaw_decode(data):
    """G.711 µ-law octets -> native int16 PCM, bit-exact with ``audioop.ulaw2lin``."""
    return _decode_bytes(data, LINEAR_FROM_ULAW)


@cython.always_allow_keywords(False)
def alaw_encode(pcm):
    """int16 PCM -> G.711 A-law octets, bit-exact with ``audioop.lin2alaw(pcm, 2)``."""
    return _encode_bytes(pcm, ALAW_FROM_LINEAR, 3)


@cython.always_allow_keywords(False)
def alaw_decode(data):
    """G.711 A-law octets -> native int16 PCM, bit-exact with ``audioop.alaw2lin``."""
    return _decode_bytes(data, LINEAR_FROM_ALAW)


def ulaw_encode_into(pcm, out):
    """Encode into ``out`` (writable, at least one octet per sample); return octets written."""
    return _encode_into(pcm, out, ULAW_FROM_LINEAR, 2)


def ulaw_decode_into(data, out):
    """Decode into ``out`` (writable, two bytes per octet); return samples written."""
    return _decode_into(data, out, LINEAR_FROM_ULAW)


def alaw_encode_into(pcm, out):
    """Encode into ``out`` (writable, at least one octet per sample); return octets written."""
    return _encode_into(pcm, out, ALAW_FROM_LINEAR, 3)


def alaw_decode_into(data, out):
    """Decode into ``out`` (writable, two bytes per octet); return samples written."""
    return _decode_into(data, out, LINEAR_FROM_ALAW)

# --------------------------------------------------------------------------
# Mixing, gain and level
# --------------------------------------------------------------------------


cdef inline int16_t _saturate(int64_t v) noexcept nogil:
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <int16_t>v


cdef extern from "_dsp_simd.h" nogil:
    void _add_saturate "gosipd_add_saturate"(
        int16_t* dst, const int16_t* a, const int16_t* b, size_t n)


cdef inline void _add_into(int16_t* acc, const int16_t* src, Py_ssize_t n) noexcept nogil:
    _add_saturate(acc, acc, src, <size_t>n)


cdef inline void _add_pair(int16_t* dst, const int16_t* a, const int16_t* b,
                           Py_ssize_t n) noexcept nogil:
    _add_saturate(dst, a, b, <size_t>n)


def mix(*frames):
    """Saturating sum of two or more int16 frames of equal length -> bytes.

    Sums are clipped to the int16 range after each addition, as ``audioop.add``
    does for two frames.
    """
    cdef Py_ssize_t count = len(frames)
    cdef object first, second
    cdef bytes out
    if count == 2:
        first = frames[0]
        second = frames[1]
        if (type(first) is bytes and type(second) is bytes
                and len(<bytes>first) == len(<bytes>second) and not (len(<bytes>first) & 1)):
            out = PyBytes_FromStringAndSize(NULL, len(<bytes>first))
            _add_pair(<int16_t*>PyBytes_AS_STRING(out),
                      <const int16_t*>PyBytes_AS_STRING(first),
                      <const int16_t*>PyBytes_AS_STRING(second), len(<bytes>first) >> 1)
            return out
    if count < 2:
        raise TypeError(f"mix needs at least two frames, got {count}")
    cdef Py_buffer view_a, view_b
    cdef Py_ssize_t len_a, len_b
    cdef const char* a = _read_buffer(frames[0], &view_a, &len_a, True, "frame 1")
    cdef const char* b
    try:
        _samples_of(len_a, "frame 1")
        b = _read_buffer(frames[1], &view_b, &len_b, True, "frame 2")
        try:
            if len_b != len_a:
                raise ValueError(
                    f"frame 2 has {len_b // 2} samples, frame 1 has {len_a // 2}"
                )
            out = PyBytes_FromStringAndSize(NULL, len_a)
            _add_pair(<int16_t*>PyBytes_AS_STRING(out), <const int16_t*>a,
                      <const int16_t*>b, len_a >> 1)
        finally:
            PyBuffer_Release(&view_b)
    finally:
        PyBuffer_Release(&view_a)
    cdef Py_ssize_t k
    for k in range(2, count):
        _accumulate(<int16_t*>PyBytes_AS_STRING(out), len_a, frames[k], k + 1)
    return out


cdef int _accumulate(int16_t* acc, Py_ssize_t acc_bytes, object frame,
                     Py_ssize_t position) except -1:
    cdef Py_buffer view
    cdef Py_ssize_t nbytes
    name = f"frame {position}"
    cdef const char* src = _read_buffer(frame, &view, &nbytes, True, name)
    try:
        if nbytes != acc_bytes:
            raise ValueError(
                f"{name} has {nbytes // 2} samples, frame 1 has {acc_bytes // 2}"
            )
        _add_into(acc, <const int16_t*>src, acc_bytes >> 1)
    finally:
        PyBuffer_Release(&view)
    return 0


def mix_into(acc, *frames):
    """Add each frame into the writable int16 buffer ``acc``, saturating, in place."""
    if not frames:
        raise TypeError("mix_into needs at least one frame to add")
    cdef Py_buffer view
    cdef Py_ssize_t nbytes, k
    cdef char* dst = _write_buffer(acc, &view, &nbytes, True, "acc")
    try:
        _samples_of(nbytes, "acc")
        for k in range(len(frames)):
            _accumulate(<int16_t*>dst, nbytes, frames[k], k + 2)
    finally:
        PyBuffer_Release(&view)


cdef int64_t _gain_q16(double db) except? -1:
    if not (-MAX_GAIN_DB <= db <= MAX_GAIN_DB):
        raise ValueError(f"gain must be within ±{MAX_GAIN_DB:g} dB, got {db!r}")
    return lround(pow(10.0, db / 20.0) * 65536.0)


cdef void _apply_gain(const int16_t* src, int16_t* dst, Py_ssize_t n,
                      int64_t q16) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = _saturate((<int64_t>src[i] * q16 + 32768) >> 16)


def gain(pcm, double db):
    """Scale int16 PCM by ``db`` decibels, saturating at full scale -> bytes."""
    cdef int64_t q16 = _gain_q16(db)
    cdef Py_buffer view
    cdef Py_ssize_t nbytes
    cdef const char* src = _read_buffer(pcm, &view, &nbytes, True, "pcm")
    try:
        n = _samples_of(nbytes, "pcm")
        out = PyBytes_FromStringAndSize(NULL, nbytes)
        _apply_gain(<const int16_t*>src, <int16_t*>PyBytes_AS_STRING(out), n, q16)
        return out
    finally:
        PyBuffer_Release(&view)


def gain_into(buf, double db):
    """Scale the writable int16 buffer ``buf`` by ``db`` decibels in place, saturating."""
    cdef int64_t q16 = _gain_q16(db)
    cdef Py_buffer view
    cdef Py_ssize_t nbytes
    cdef char* dst = _write_buffer(buf, &view, &nbytes, True, "buf")
    try:
        n = _samples_of(nbytes, "buf")
        _apply_gain(<const int16_t*>dst, <int16_t*>dst, n, q16)
    finally:
        PyBuffer_Release(&view)


def rms_dbov(pcm):
    """RMS level of int16 PCM in dBov (a full-scale square wave is 0 dBov,
    a full-scale sine -3.01); digital silence or no samples reads ``SILENCE_DBOV``."""
    cdef Py_buffer view
    cdef Py_ssize_t nbytes, n, i
    cdef const char* src = _read_buffer(pcm, &view, &nbytes, True, "pcm")
    cdef const int16_t* s = <const int16_t*>src
    cdef uint64_t total = 0
    cdef double level
    try:
        n = _samples_of(nbytes, "pcm")
        with nogil:
            for i in range(n):
                total += <uint64_t>(<int64_t>s[i] * s[i])
    finally:
        PyBuffer_Release(&view)
    if n == 0 or total == 0:
        return SILENCE_DBOV
    level = 20.0 * log10(sqrt(<double>total / n) / FULL_SCALE)
    return max(level, SILENCE_DBOV)

# --------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------


cdef inline uint64_t _splitmix64(uint64_t* state) noexcept nogil:
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef double _amplitude_of(double level_dbov, str what) except -1.0:
    if not (-127.0 <= level_dbov <= 0.0):
        raise ValueError(f"{what} must be between -127 and 0 dBov, got {level_dbov!r}")
    return FULL_SCALE * pow(10.0, level_dbov / 20.0)


cdef Py_ssize_t _check_samples(Py_ssize_t samples) except -1:
    if samples < 0 or samples > MAX_GENERATED_SAMPLES:
        raise ValueError(
            f"samples must be between 0 and {MAX_GENERATED_SAMPLES}, got {samples}"
        )
    return samples


cdef class ComfortNoise:
    """White noise at a set RMS level, frame after frame, reproducible from a seed.

    Each sample is the sum of four independent uniform variates (an Irwin-Hall
    approximation of Gaussian noise): independent samples make the spectrum
    flat, and the near-Gaussian shape sounds like line noise rather than hiss.
    """

    cdef uint64_t _state
    cdef double _scale
    cdef readonly double level_dbov

    def __init__(self, double level_dbov=-60.0, seed=None):
        rms = _amplitude_of(level_dbov, "level_dbov")
        self.level_dbov = level_dbov
        # Four uniforms on [-1, 1) sum to variance 4/3.
        self._scale = rms / sqrt(4.0 / 3.0)
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
        self._state = <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF)

    cdef void _fill(self, int16_t* dst, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef uint64_t r
        cdef double v
        for i in range(n):
            r = _splitmix64(&self._state)
            v = (
                <double>(<int16_t>(r & 0xFFFF))
                + <double>(<int16_t>((r >> 16) & 0xFFFF))
                + <double>(<int16_t>((r >> 32) & 0xFFFF))
                + <double>(<int16_t>(r >> 48))
            ) / FULL_SCALE
            dst[i] = _saturate(lround(v * self._scale))

    def frame(self, Py_ssize_t samples=160):
        """The next ``samples`` samples of noise as int16 bytes."""
        _check_samples(samples)
        out = PyBytes_FromStringAndSize(NULL, samples * 2)
        self._fill(<int16_t*>PyBytes_AS_STRING(out), samples)
        return out

    def fill_into(self, buf):
        """Fill the writable int16 buffer ``buf`` with the next samples of noise."""
        cdef Py_buffer view
        cdef Py_ssize_t nbytes
        cdef char* dst = _write_buffer(buf, &view, &nbytes, True, "buf")
        try:
            self._fill(<int16_t*>dst, _samples_of(nbytes, "buf"))
        finally:
            PyBuffer_Release(&view)


DTMF_FREQUENCIES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}

#: name -> (frequencies in Hz, cadence in ms as on/off pairs, or None for steady).
#: North American values (ANSI T1.401) unless the name says otherwise; the
#: ``eu_`` ones are the CEPT/ITU-T E.180 425 Hz family, ``uk_`` BT's.
CALL_PROGRESS_TONES = {
    "dial": ((350, 440), None),
    "ringback": ((440, 480), (2000, 4000)),
    "busy": ((480, 620), (500, 500)),
    "reorder": ((480, 620), (250, 250)),
    "call_waiting": ((440,), (300, 9700)),
    "eu_dial": ((425,), None),
    "eu_ringback": ((425,), (1000, 4000)),
    "eu_busy": ((425,), (500, 500)),
    "eu_congestion": ((425,), (250, 250)),
    "uk_dial": ((350, 450), None),
    "uk_ringback": ((400, 450), (400, 200, 400, 2000)),
    "uk_busy": ((400,), (375, 375)),
}

DEF MAX_TONE_FREQUENCIES = 4
DEF MAX_CADENCE_STEPS = 8


cdef class ToneGenerator:
    """Sum of up to four sines, phase-continuous across frames, with an optional cadence.

    ``level_dbov`` is the RMS level of *each* frequency component (DTMF and
    call-progress specifications state levels per component). A cadence is a
    sequence of on/off durations in milliseconds, repeated; each burst starts
    at phase zero, so switching on never clicks.
    """

    cdef double _phase[MAX_TONE_FREQUENCIES]
    cdef double _step[MAX_TONE_FREQUENCIES]
    cdef int _count
    cdef double _amplitude
    cdef int64_t _cadence[MAX_CADENCE_STEPS]
    cdef int _cadence_steps
    cdef int64_t _cadence_total
    cdef int64_t _position
    cdef readonly tuple frequencies
    cdef readonly int rate
    cdef readonly double level_dbov
    cdef readonly object cadence

    def __init__(self, frequencies, double level_dbov=-13.0, int rate=8000, cadence=None):
        if isinstance(frequencies, (int, float)):
            frequencies = (frequencies,)
        frequencies = tuple(frequencies)
        if not 1 <= len(frequencies) <= MAX_TONE_FREQUENCIES:
            raise ValueError(
                f"a tone has 1 to {MAX_TONE_FREQUENCIES} frequencies, got {len(frequencies)}"
            )
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        for f in frequencies:
            if not isinstance(f, (int, float)) or not (0 < f < rate / 2):
                raise ValueError(
                    f"frequency {f!r} Hz is not between 0 and the Nyquist limit {rate / 2:g} Hz"
                )
        self.frequencies = frequencies
        self.rate = rate
        self.level_dbov = level_dbov
        self._amplitude = _amplitude_of(level_dbov, "level_dbov") * sqrt(2.0)
        self._count = len(frequencies)
        cdef int i
        for i in range(self._count):
            self._phase[i] = 0.0
            self._step[i] = <double>frequencies[i] / rate
        self._cadence_steps = 0
        self._cadence_total = 0
        self._position = 0
        if cadence is not None:
            cadence = tuple(cadence)
            if not cadence or len(cadence) % 2 or len(cadence) > MAX_CADENCE_STEPS:
                raise ValueError(
                    "cadence must be on/off pairs in ms, at most "
                    f"{MAX_CADENCE_STEPS // 2} of them, got {cadence!r}"
                )
            for i, ms in enumerate(cadence):
                if not isinstance(ms, int) or ms < 0:
                    raise ValueError(f"cadence step {ms!r} is not a whole number of ms >= 0")
                self._cadence[i] = (<int64_t>ms * rate) // 1000
                self._cadence_total += self._cadence[i]
            if self._cadence_total == 0:
                raise ValueError("cadence must not be all zero")
            self._cadence_steps = len(cadence)
        self.cadence = cadence

    @classmethod
    def dtmf(cls, digit, double level_dbov=-13.0, int rate=8000):
        """The dual tone of a DTMF digit (0-9, *, #, A-D)."""
        key = str(digit).upper()
        if key not in DTMF_FREQUENCIES:
            raise ValueError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")
        return cls(DTMF_FREQUENCIES[key], level_dbov, rate)

    @classmethod
    def call_progress(cls, name, double level_dbov=-16.0, int rate=8000):
        """A named call-progress tone with its cadence (see ``CALL_PROGRESS_TONES``)."""
        if name not in CALL_PROGRESS_TONES:
            raise ValueError(
                f"unknown call-progress tone {name!r}; known: {', '.join(CALL_PROGRESS_TONES)}"
            )
        frequencies, cadence = CALL_PROGRESS_TONES[name]
        return cls(frequencies, level_dbov, rate, cadence)

    cdef bint _sounding(self) noexcept nogil:
        """Whether the cadence is in an 'on' step; restarts phases at each burst."""
        if self._cadence_steps == 0:
            return True
        cdef int64_t at = self._position % self._cadence_total
        cdef int k, j
        for k in range(self._cadence_steps):
            if at < self._cadence[k]:
                if k % 2 == 0 and at == 0:
                    for j in range(self._count):
                        self._phase[j] = 0.0
                return k % 2 == 0
            at -= self._cadence[k]
        return False

    cdef void _fill(self, int16_t* dst, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef int k
        cdef double v
        for i in range(n):
            if self._sounding():
                v = 0.0
                for k in range(self._count):
                    v += sin(6.283185307179586 * self._phase[k])
                    self._phase[k] += self._step[k]
                    if self._phase[k] >= 1.0:
                        self._phase[k] -= 1.0
                dst[i] = _saturate(lround(v * self._amplitude))
            else:
                dst[i] = 0
            self._position += 1

    def frame(self, Py_ssize_t samples=160):
        """The next ``samples`` samples of the tone as int16 bytes."""
        _check_samples(samples)
        out = PyBytes_FromStringAndSize(NULL, samples * 2)
        self._fill(<int16_t*>PyBytes_AS_STRING(out), samples)
        return out

    def fill_into(self, buf):
        """Fill the writable int16 buffer ``buf`` with the next samples of the tone."""
        cdef Py_buffer view
        cdef Py_ssize_t nbytes
        cdef char* dst = _write_buffer(buf, &view, &nbytes, True, "buf")
        try:
            self._fill(<int16_t*>dst, _samples_of(nbytes, "buf"))
        finally:
            PyBuffer_Release(&view)

# --------------------------------------------------------------------------
# In-band DTMF detection
# --------------------------------------------------------------------------

#: The DTMF frequencies, rows then columns.
DTMF_ROW_HZ = (697, 770, 852, 941)
DTMF_COLUMN_HZ = (1209, 1336, 1477, 1633)
#: RFC 4733 event code (0-15) -> digit, the order ``DtmfDetector`` reports in.
DTMF_EVENT_DIGITS = "0123456789*#ABCD"
# Goertzel block length at 8 kHz (12.75 ms), as in spandsp: short enough for
# 40 ms tones to give three blocks, long enough to separate 697 from 770 Hz.
cdef int _BLOCK_8K = 102
# Each tone must reach this level (dBov, RMS per component) to count.
cdef double _MIN_LEVEL_DBOV = -36.0
# Blocks in a row with the same digit before it counts, and without it before it ends.
cdef int _HITS_TO_START = 2
cdef int _MISSES_TO_END = 2
DTMF_BLOCK_8K = _BLOCK_8K
DTMF_MIN_LEVEL_DBOV = _MIN_LEVEL_DBOV
DTMF_HITS_TO_START = _HITS_TO_START
DTMF_MISSES_TO_END = _MISSES_TO_END

# keypad position (row * 4 + column) -> RFC 4733 event code
cdef int[16] _EVENT_AT = [1, 2, 3, 12, 4, 5, 6, 13, 7, 8, 9, 14, 10, 0, 11, 15]

# Acceptance thresholds (ratios of Goertzel powers), after spandsp's detector.
DEF _TWIST_LIMIT = 6.3  # 8 dB either way between the row and the column tone
DEF _RELATIVE_PEAK = 6.3  # the winner is 8 dB above the others in its group
DEF _TONE_SHARE = 0.82  # the two tones hold this share of the block's energy


cdef class DtmfDetector:
    """Finds DTMF digits in 16-bit PCM, frame after frame (Goertzel filters).

    Audio is cut into blocks of ``block_size`` samples (102 at 8 kHz); a
    block holds a digit when exactly one row and one column tone stand out
    (each 8 dB above the rest of its group, within 8 dB of each other, above
    ``DTMF_MIN_LEVEL_DBOV``, and together most of the block's energy). A
    digit starts after two such blocks in a row and ends after two blocks
    without it, so a single corrupted block neither invents nor splits a
    digit. Each digit is reported once, when it ends, with its duration.
    """

    def __init__(self, int rate=8000):
        if rate < 4000 or rate > 48000:
            raise ValueError(f"rate must be 4000..48000 Hz, got {rate}")
        self.rate = rate
        self.block_size = (_BLOCK_8K * rate) // 8000
        cdef int i
        frequencies = DTMF_ROW_HZ + DTMF_COLUMN_HZ
        for i in range(DTMF_FILTERS):
            self._coef[i] = 2.0 * cos(6.283185307179586 * frequencies[i] / rate)
        self.reset()

    def reset(self):
        """Forget any tone in progress and any digit not yet popped."""
        cdef int i
        for i in range(DTMF_FILTERS):
            self._s1[i] = 0.0
            self._s2[i] = 0.0
        self._energy = 0.0
        self._filled = 0
        self._last_hit = -1
        self._hits = 0
        self._current = -1
        self._current_blocks = 0
        self._misses = 0
        self._pending_head = 0
        self._pending_count = 0
        self.blocks_seen = 0

    cdef void feed_samples(self, const int16_t* pcm, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef int k
        cdef double x, s0
        for i in range(n):
            x = <double>pcm[i]
            self._energy += x * x
            for k in range(DTMF_FILTERS):
                s0 = self._coef[k] * self._s1[k] - self._s2[k] + x
                self._s2[k] = self._s1[k]
                self._s1[k] = s0
            self._filled += 1
            if self._filled == self.block_size:
                self._decide()

    cdef void _decide(self) noexcept nogil:
        cdef double power[DTMF_FILTERS]
        cdef int k, row = 0, col = 4, hit = -1
        cdef double n = self.block_size
        # A full-scale-relative floor: a sine of amplitude A gives (A * n / 2)^2.
        cdef double amplitude = 32768.0 * 1.4142135623730951 * pow(10.0, _MIN_LEVEL_DBOV / 20.0)
        cdef double floor = (amplitude * n / 2.0) * (amplitude * n / 2.0)
        for k in range(DTMF_FILTERS):
            power[k] = (self._s1[k] * self._s1[k] + self._s2[k] * self._s2[k]
                        - self._coef[k] * self._s1[k] * self._s2[k])
        for k in range(1, 4):
            if power[k] > power[row]:
                row = k
        for k in range(5, 8):
            if power[k] > power[col]:
                col = k
        if (power[row] >= floor and power[col] >= floor
                and power[col] < power[row] * _TWIST_LIMIT
                and power[row] < power[col] * _TWIST_LIMIT
                and power[row] + power[col] > _TONE_SHARE * (n / 2.0) * self._energy):
            hit = _EVENT_AT[row * 4 + (col - 4)]
            for k in range(4):
                if k != row and power[k] * _RELATIVE_PEAK > power[row]:
                    hit = -1
            for k in range(4, 8):
                if k != col and power[k] * _RELATIVE_PEAK > power[col]:
                    hit = -1
        for k in range(DTMF_FILTERS):
            self._s1[k] = 0.0
            self._s2[k] = 0.0
        self._energy = 0.0
        self._filled = 0
        self.blocks_seen += 1

        if hit >= 0 and hit == self._last_hit:
            self._hits += 1
        else:
            self._hits = 1 if hit >= 0 else 0
        self._last_hit = hit
        if self._current >= 0:
            if hit == self._current:
                self._current_blocks += 1 + self._misses  # a one-block dropout is bridged
                self._misses = 0
                return
            self._misses += 1
            if self._misses < _MISSES_TO_END and hit < 0:
                return
            self._finish_current()
        if hit >= 0 and self._hits >= _HITS_TO_START:
            self._current = hit
            self._current_blocks = self._hits
            self._misses = 0

    cdef void _finish_current(self) noexcept nogil:
        cdef int slot
        if self._pending_count < DTMF_PENDING:
            slot = (self._pending_head + self._pending_count) % DTMF_PENDING
            self._pending_digit[slot] = self._current
            self._pending_ms[slot] = <int>(
                (<int64_t>self._current_blocks * self.block_size * 1000) // self.rate)
            self._pending_count += 1
        self._current = -1
        self._current_blocks = 0
        self._misses = 0

    cdef bint pop_digit(self, int* event, int* duration_ms) noexcept nogil:
        if self._pending_count == 0:
            return False
        event[0] = self._pending_digit[self._pending_head]
        duration_ms[0] = self._pending_ms[self._pending_head]
        self._pending_head = (self._pending_head + 1) % DTMF_PENDING
        self._pending_count -= 1
        return True

    def feed(self, pcm):
        """Feed int16 PCM; return the digits that ended, as (digit, duration in ms)."""
        cdef Py_buffer view
        cdef Py_ssize_t nbytes
        cdef const char* src = _read_buffer(pcm, &view, &nbytes, True, "pcm")
        try:
            n = _samples_of(nbytes, "pcm")
            with nogil:
                self.feed_samples(<const int16_t*>src, n)
        finally:
            PyBuffer_Release(&view)
        return self._drain()

    def flush(self):
        """End of audio: finish a digit still sounding; return what ended."""
        if self._current >= 0:
            self._finish_current()
        return self._drain()

    cdef list _drain(self):
        cdef int event, ms
        out = []
        while self.pop_digit(&event, &ms):
            out.append((DTMF_EVENT_DIGITS[event], ms))
        return out
