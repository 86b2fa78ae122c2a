# C-level declarations of _dsp for other Cython modules (the media loop cimports
# DtmfDetector to run it without the GIL). Only what is shared is declared here.
from libc.stdint cimport int16_t, int64_t

cdef enum:
    DTMF_FILTERS = 8  # four row and four column frequencies
    DTMF_PENDING = 16  # finished digits held until the caller pops them


cdef class DtmfDetector:
    cdef double _coef[DTMF_FILTERS]
    cdef double _s1[DTMF_FILTERS]
    cdef double _s2[DTMF_FILTERS]
    cdef double _energy
    cdef int _filled
    cdef int _last_hit
    cdef int _hits
    cdef int _current
    cdef int _current_blocks
    cdef int _misses
    cdef int _pending_digit[DTMF_PENDING]
    cdef int _pending_ms[DTMF_PENDING]
    cdef int _pending_head
    cdef int _pending_count
    cdef readonly int rate
    cdef readonly int block_size
    cdef readonly int64_t blocks_seen

    cdef void feed_samples(self, const int16_t* pcm, Py_ssize_t n) noexcept nogil
    cdef bint pop_digit(self, int* event, int* duration_ms) noexcept nogil
    cdef void _decide(self) noexcept nogil
    cdef void _finish_current(self) noexcept nogil
    cdef list _drain(self)
