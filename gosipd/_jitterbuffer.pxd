# C-level declarations of the jitter buffer, for the media loop (gosipd/_media.pyx),
# which runs it without the GIL. See _jitterbuffer.pyx for the design.
from libc.stdint cimport int16_t, int64_t, uint8_t, uint32_t, uint64_t

cdef enum:
    JB_RING = 4096  # samples held (512 ms at 8 kHz); a power of two
    JB_MAX_FRAME = 320  # the largest playout frame (40 ms)
    JB_BUCKETS = 5  # transit history, one bucket per second
    JB_FAR_TO_RESYNC = 2  # out-of-window packets in a row that restart the playout

    # push() results
    JB_ACCEPTED = 0
    JB_DUPLICATE = 1
    JB_LATE = 2
    JB_RESYNC = 3
    JB_DISCARDED = 4

    # pop() frame kinds
    JB_AUDIO = 0  # every sample received
    JB_PARTIAL = 1  # some samples received, the rest repeated from the last frame
    JB_CONCEALED = 2  # nothing received: the last frame repeated, fading
    JB_COMFORT_NOISE = 3  # nothing received for longer than concealment lasts
    JB_SILENCE = 4  # before the first packet, or before the stream's first sample
    JB_STRETCHED = 5  # inserted without advancing, to grow the delay


cdef class JitterBuffer:
    cdef int16_t _pcm[JB_RING]
    cdef uint8_t _valid[JB_RING]
    cdef int16_t _last[JB_MAX_FRAME]
    cdef int _frame
    cdef bint _synced
    cdef bint _realign
    cdef bint _playing
    cdef uint32_t _ssrc
    cdef int64_t _ref_ts
    cdef int64_t _first_ts
    cdef int64_t _align_ts
    cdef int64_t _play_ts
    cdef int64_t _highest_end
    cdef int64_t _bucket_id[JB_BUCKETS]
    cdef int64_t _bucket_min[JB_BUCKETS]
    cdef int64_t _bucket_max[JB_BUCKETS]
    cdef int64_t _base
    cdef int64_t _spread
    cdef int64_t _target
    cdef int64_t _min_delay
    cdef int64_t _max_delay
    cdef int64_t _initial_delay
    cdef int _far
    cdef int _concealing
    cdef int _packet_samples
    cdef int _noise_scale_q16
    cdef uint64_t _noise_state
    # counters
    cdef readonly int64_t packets
    cdef readonly int64_t duplicates
    cdef readonly int64_t late
    cdef readonly int64_t resyncs
    cdef readonly int64_t discarded
    cdef readonly int64_t frames_audio
    cdef readonly int64_t frames_partial
    cdef readonly int64_t frames_concealed
    cdef readonly int64_t frames_comfort_noise
    cdef readonly int64_t frames_silence
    cdef readonly int64_t frames_stretched
    cdef readonly int64_t frames_dropped

    cdef int put(self, const uint8_t* payload, int n, uint32_t timestamp, uint32_t ssrc,
                 bint marker, int payload_type, int64_t arrival_ns) noexcept nogil
    cdef int get(self, int16_t* out, int64_t now_ns) noexcept nogil
    cdef void reset(self) noexcept nogil
    cdef void set_frame(self, int frame_samples) noexcept nogil
    cdef void _resync(self, uint32_t ssrc, int64_t ext, int64_t transit) noexcept nogil
    cdef void _observe(self, int64_t transit, int64_t arrival_samples) noexcept nogil
    cdef void _noise(self, int16_t* out, int n) noexcept nogil
    cdef void _conceal(self, int16_t* out) noexcept nogil
    cdef bint _buffer_empty(self) noexcept nogil
