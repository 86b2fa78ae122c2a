# cython: language_level=3
"""The receive jitter buffer: G.711 packets in, one playout frame per tick out.

This is the single implementation: the media loop calls its C methods
(``put``/``get``) without the GIL, and tests drive the same object through
``push``/``pop`` with simulated arrival times in nanoseconds. Nothing here
reads a clock or touches a socket.

**Storage.** Decoded samples sit in a ring indexed by RTP timestamp
(``JB_RING`` samples, 512 ms), with a per-sample "received" flag. Packets
of any size (10-60 ms) and playout frames of any size work together;
reordering is simply writing into the right slots; a duplicate is a packet
whose slots are all already filled.

**Timing.** Every packet's *transit* (arrival in samples minus its
timestamp) goes into one-second buckets; over the last ``JB_BUCKETS``
seconds the minimum transit is the path's base delay and the spread
(maximum minus minimum) is the jitter to absorb. The target delay is that
spread plus the adjustment band and a margin, clamped to 20..200 ms. At each
tick the ideal playout timestamp is ``now - base - target``; the actual
playout point advances one frame per tick, and when it runs more than half
a frame ahead of the ideal one (too little buffered) a frame is *stretched*
(inserted without advancing), when it falls 25 ms behind (too much
buffered) a frame is *dropped*. This one mechanism adapts the depth to
jitter and absorbs clock drift between the far end and us in either
direction.

**Loss.** A frame with nothing received is concealed: the last frame is
repeated with a fade to zero over ``CONCEAL_FRAMES`` frames, then comfort
noise follows; the playout point always advances, so a loss never stalls
the buffer, and a packet arriving after its time is counted late and dropped.

**Resync.** A new SSRC, or packets that land outside the ring (a timestamp
jump) twice in a row or once with the marker bit, restart the playout on
the new timeline. A marker bit on a packet that starts a talkspurt while
nothing is buffered realigns the playout point to the current ideal (the
silence before it hides the jump).
"""

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import os

from gosipd import _dsp

__all__ = [
    "ACCEPTED",
    "AUDIO",
    "COMFORT_NOISE",
    "CONCEALED",
    "CONCEAL_FRAMES",
    "DISCARDED",
    "DUPLICATE",
    "FRAME_KINDS",
    "JitterBuffer",
    "LATE",
    "MAX_DELAY_MS",
    "MIN_DELAY_MS",
    "PARTIAL",
    "RESYNC",
    "SILENCE",
    "STRETCHED",
]

ACCEPTED = JB_ACCEPTED
DUPLICATE = JB_DUPLICATE
LATE = JB_LATE
RESYNC = JB_RESYNC
DISCARDED = JB_DISCARDED

AUDIO = JB_AUDIO
PARTIAL = JB_PARTIAL
CONCEALED = JB_CONCEALED
COMFORT_NOISE = JB_COMFORT_NOISE
SILENCE = JB_SILENCE
STRETCHED = JB_STRETCHED
FRAME_KINDS = {
    JB_AUDIO: "audio",
    JB_PARTIAL: "partial",
    JB_CONCEALED: "concealed",
    JB_COMFORT_NOISE: "comfort_noise",
    JB_SILENCE: "silence",
    JB_STRETCHED: "stretched",
}

#: The depth limits (ms) the target delay is clamped to.
MIN_DELAY_MS = 20
MAX_DELAY_MS = 200
#: Frames of fading repetition before comfort noise takes over.
CONCEAL_FRAMES = 3

cdef enum:
    _SAMPLES_PER_MS = 8
    _NS_PER_SAMPLE = 125000  # 8 kHz
    _BUCKET_SAMPLES = 8000  # one second
    _INSERT_ABOVE = 80  # playout ahead of ideal by 10 ms: stretch
    _DROP_BELOW = -200  # playout behind ideal by 25 ms: drop
    _MARGIN = 40  # 5 ms on top of the measured spread
    _BAND = 80  # the playout point may run this far ahead of the ideal one
    _MAX_PACKET = JB_RING // 4
    _CONCEAL = 3

cdef int16_t LINEAR_FROM_ULAW[256]
cdef int16_t LINEAR_FROM_ALAW[256]


cdef void _load_tables() except *:
    # The decode tables are _dsp's (bit-exact with audioop), copied once at import.
    cdef bytes u = _dsp.ulaw_decode(bytes(range(256)))
    cdef bytes a = _dsp.alaw_decode(bytes(range(256)))
    memcpy(LINEAR_FROM_ULAW, <const char*>u, 512)
    memcpy(LINEAR_FROM_ALAW, <const char*>a, 512)


_load_tables()

cdef int64_t _NO_BUCKET = -(1 << 62)


cdef inline int64_t _count_valid(const uint8_t* valid, int64_t start, int64_t end) noexcept nogil:
    """How many slots of [start, end) hold a received sample (in at most two runs)."""
    cdef int64_t total = 0, at, stop, k
    while start < end:
        at = start & (JB_RING - 1)
        stop = min(end - start, JB_RING - at)
        for k in range(stop):
            total += valid[at + k]
        start += stop
    return total


cdef inline void _decode_into_ring(int16_t* pcm, uint8_t* valid, const int16_t* table,
                                   const uint8_t* payload, int64_t start, int n) noexcept nogil:
    cdef int64_t at, k, run
    while n > 0:
        at = start & (JB_RING - 1)
        run = min(<int64_t>n, JB_RING - at)
        for k in range(run):
            pcm[at + k] = table[payload[k]]
        memset(valid + at, 1, run)
        payload += run
        start += run
        n -= <int>run


cdef inline void _take_from_ring(const int16_t* pcm, uint8_t* valid, int16_t* out,
                                 int64_t start, int n) noexcept nogil:
    cdef int64_t at, run
    while n > 0:
        at = start & (JB_RING - 1)
        run = min(<int64_t>n, JB_RING - at)
        memcpy(out, pcm + at, run * sizeof(int16_t))
        memset(valid + at, 0, run)
        out += run
        start += run
        n -= <int>run


cdef inline int16_t _saturate(int64_t v) noexcept nogil:
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <int16_t>v


cdef class JitterBuffer:
    """Adaptive jitter buffer for one received G.711 stream (see the module docstring).

    ``frame_samples`` is the playout frame (160 = 20 ms at 8 kHz).
    Payload type 0 is decoded as PCMU and 8 as PCMA; other payloads are
    discarded (telephone events and CN never enter the buffer).
    """

    def __init__(self, int frame_samples=160, *, int initial_delay_ms=40,
                 int min_delay_ms=MIN_DELAY_MS, int max_delay_ms=MAX_DELAY_MS,
                 double comfort_noise_dbov=-60.0, seed=None):
        if not 8 <= frame_samples <= JB_MAX_FRAME:
            raise ValueError(f"frame_samples must be 8..{JB_MAX_FRAME}, got {frame_samples}")
        if not 0 < min_delay_ms <= max_delay_ms <= 400:
            raise ValueError(
                f"delays must satisfy 0 < min ({min_delay_ms}) <= max ({max_delay_ms}) <= 400 ms"
            )
        if not -96.0 <= comfort_noise_dbov <= -20.0:
            raise ValueError(f"comfort noise must be -96..-20 dBov, got {comfort_noise_dbov}")
        self._frame = frame_samples
        self._min_delay = min_delay_ms * _SAMPLES_PER_MS
        self._max_delay = max_delay_ms * _SAMPLES_PER_MS
        self._initial_delay = min(max(initial_delay_ms * _SAMPLES_PER_MS, self._min_delay),
                                  self._max_delay)
        # The sum of two uniform int16s has an RMS of 32768 * sqrt(2/3).
        self._noise_scale_q16 = <int>(
            65536.0 * 10 ** (comfort_noise_dbov / 20.0) / 0.816496580927726)
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        self._noise_state = <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF) | 1
        self.reset()

    cdef void reset(self) noexcept nogil:
        """Forget the stream: the next packet starts a new playout."""
        memset(self._valid, 0, JB_RING * sizeof(uint8_t))
        memset(self._last, 0, JB_MAX_FRAME * sizeof(int16_t))
        self._synced = False
        self._playing = False
        self._realign = False
        self._far = 0
        self._concealing = _CONCEAL + 1
        self._packet_samples = self._frame
        self._target = self._initial_delay
        self._spread = 0
        self._base = 0

    cdef void _resync(self, uint32_t ssrc, int64_t ext, int64_t transit) noexcept nogil:
        cdef int k
        if self._synced:
            self.resyncs += 1
        memset(self._valid, 0, JB_RING * sizeof(uint8_t))
        self._synced = True
        self._playing = False
        self._realign = False
        self._ssrc = ssrc
        self._ref_ts = ext
        self._first_ts = ext
        self._align_ts = ext
        self._highest_end = ext
        self._far = 0
        for k in range(JB_BUCKETS):
            self._bucket_id[k] = _NO_BUCKET
        self._base = transit
        self._spread = 0
        self._target = self._initial_delay

    cdef void _observe(self, int64_t transit, int64_t arrival_samples) noexcept nogil:
        cdef int64_t bucket = arrival_samples // _BUCKET_SAMPLES
        cdef int slot = <int>(bucket % JB_BUCKETS)
        cdef int k
        cdef int64_t low, spread
        if self._bucket_id[slot] != bucket:
            self._bucket_id[slot] = bucket
            self._bucket_min[slot] = transit
            self._bucket_max[slot] = transit
        else:
            if transit < self._bucket_min[slot]:
                self._bucket_min[slot] = transit
            if transit > self._bucket_max[slot]:
                self._bucket_max[slot] = transit
        # The base is the lowest transit of this second and the last (so that a drifting
        # clock moves it along); the jitter is the widest spread within one second over
        # the whole window (so that drift is not mistaken for jitter).
        low = transit
        spread = 0
        for k in range(JB_BUCKETS):
            if self._bucket_id[k] > bucket - JB_BUCKETS:
                if self._bucket_id[k] >= bucket - 1 and self._bucket_min[k] < low:
                    low = self._bucket_min[k]
                if self._bucket_max[k] - self._bucket_min[k] > spread:
                    spread = self._bucket_max[k] - self._bucket_min[k]
        self._base = low
        self._spread = spread
        spread = self._spread + _BAND + _MARGIN  # a packet late by the spread still makes it
        if spread < self._min_delay:
            spread = self._min_delay
        if spread > self._max_delay:
            spread = self._max_delay
        self._target = spread

    cdef bint _buffer_empty(self) noexcept nogil:
        return not self._playing or self._highest_end <= self._play_ts

    cdef int put(self, const uint8_t* payload, int n, uint32_t timestamp, uint32_t ssrc,
                 bint marker, int payload_type, int64_t arrival_ns) noexcept nogil:
        cdef const int16_t* table
        cdef int64_t arrival = arrival_ns // _NS_PER_SAMPLE
        cdef int64_t ext, transit, offset
        cdef int start = 0, result = JB_ACCEPTED
        cdef bint was_empty
        cdef int64_t first
        if payload_type == 0:
            table = LINEAR_FROM_ULAW
        elif payload_type == 8:
            table = LINEAR_FROM_ALAW
        else:
            self.discarded += 1
            return JB_DISCARDED
        if n <= 0 or n > _MAX_PACKET:
            self.discarded += 1
            return JB_DISCARDED
        if not self._synced or ssrc != self._ssrc:
            ext = timestamp
            transit = arrival - ext
            self._resync(ssrc, ext, transit)
            result = JB_RESYNC
        else:
            ext = self._ref_ts + <int32_t>(timestamp - <uint32_t>self._ref_ts)
            transit = arrival - ext
            if self._playing:
                offset = ext - self._play_ts
                if offset + n > JB_RING or offset < -JB_RING:
                    self._far += 1
                    if marker or self._far >= JB_FAR_TO_RESYNC:
                        ext = timestamp
                        transit = arrival - ext
                        self._resync(ssrc, ext, transit)
                        result = JB_RESYNC
                    else:
                        self.discarded += 1
                        return JB_DISCARDED
                else:
                    self._far = 0
            elif ext - self._first_ts >= JB_RING // 2 or ext - self._first_ts < -(JB_RING // 2):
                ext = timestamp
                transit = arrival - ext
                self._resync(ssrc, ext, transit)
                result = JB_RESYNC
        if result != JB_RESYNC:
            # A duplicate: every slot it would fill (and that is not played yet) is filled.
            first = ext
            if self._playing and first < self._play_ts:
                first = self._play_ts
            if first < ext + n and _count_valid(self._valid, first, ext + n) == ext + n - first:
                self.duplicates += 1
                return JB_DUPLICATE
            self._observe(transit, arrival)
            if self._playing and ext + n <= self._play_ts:
                self.late += 1
                return JB_LATE
        else:
            self._observe(transit, arrival)
        was_empty = self._buffer_empty()
        if self._playing and ext < self._play_ts:
            start = <int>(self._play_ts - ext)  # the late head of a packet is dropped
        _decode_into_ring(self._pcm, self._valid, table, payload + start, ext + start, n - start)
        if ext > self._ref_ts:
            self._ref_ts = ext
        if ext < self._first_ts:
            self._first_ts = ext
        if ext + n > self._highest_end:
            self._highest_end = ext + n
        self._packet_samples = n
        self.packets += 1
        if marker and was_empty and self._playing and result != JB_RESYNC:
            self._realign = True
            self._align_ts = ext
        return result

    cdef void _noise(self, int16_t* out, int n) noexcept nogil:
        cdef int i
        cdef uint64_t x
        cdef int64_t v
        for i in range(n):
            x = self._noise_state
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            self._noise_state = x
            v = <int64_t>(<int16_t>(x & 0xFFFF)) + <int64_t>(<int16_t>((x >> 16) & 0xFFFF))
            out[i] = _saturate((v * self._noise_scale_q16) >> 16)

    cdef void _conceal(self, int16_t* out) noexcept nogil:
        """Repeat the last frame fading to zero over _CONCEAL frames, over comfort noise."""
        cdef int i
        cdef int64_t gain_q16
        cdef int f = self._frame
        self._noise(out, f)
        self._concealing += 1
        if self._concealing > _CONCEAL:
            return
        for i in range(f):
            gain_q16 = 65536 - ((<int64_t>(self._concealing - 1) * f + i) * 65536) // (_CONCEAL * f)
            out[i] = _saturate(out[i] + ((<int64_t>self._last[i] * gain_q16) >> 16))

    cdef int get(self, int16_t* out, int64_t now_ns) noexcept nogil:
        cdef int f = self._frame
        cdef int64_t now = now_ns // _NS_PER_SAMPLE
        cdef int64_t ideal, error, ts, skip_to, phase
        cdef int i, count = 0, kind
        cdef int64_t idx
        if not self._synced:
            self._noise(out, f)
            self.frames_silence += 1
            return JB_SILENCE
        if self._playing and not self._realign and (
                self._play_ts - (now - self._base - self._target) < -(JB_RING // 2)):
            self._realign = True  # hopelessly behind (the clock jumped): start afresh
            self._align_ts = self._highest_end
        if not self._playing or self._realign:
            ideal = now - self._base - (self._target if self._playing
                                        else max(self._target, self._initial_delay))
            if self._playing:
                # Realigning at a talkspurt: forget what the jump passes over.
                ts = self._play_ts
                skip_to = min(ideal, self._play_ts + JB_RING)
                while ts < skip_to:
                    self._valid[ts & (JB_RING - 1)] = 0
                    ts += 1
            # Start on a packet boundary (a little later, never earlier, than the ideal),
            # so that frames line up with packets and none straddles the first one.
            phase = (ideal - self._align_ts) % f
            if phase < 0:
                phase += f
            self._play_ts = ideal - phase
            self._playing = True
            self._realign = False
        else:
            ideal = now - self._base - self._target
            error = self._play_ts - ideal
            if error > _INSERT_ABOVE:
                if self._concealing >= _CONCEAL:
                    self._noise(out, f)
                else:
                    memcpy(out, self._last, f * sizeof(int16_t))
                self.frames_stretched += 1
                return JB_STRETCHED
            if error < _DROP_BELOW:
                for i in range(f):
                    self._valid[(self._play_ts + i) & (JB_RING - 1)] = 0
                self._play_ts += f
                self.frames_dropped += 1
        count = _count_valid(self._valid, self._play_ts, self._play_ts + f)
        if count == f:
            _take_from_ring(self._pcm, self._valid, out, self._play_ts, f)
            memcpy(self._last, out, f * sizeof(int16_t))
            self._concealing = 0
            kind = JB_AUDIO
            self.frames_audio += 1
        elif count == 0:
            if self._play_ts + f <= self._first_ts:
                self._noise(out, f)
                kind = JB_SILENCE
                self.frames_silence += 1
            else:
                self._conceal(out)
                if self._concealing <= _CONCEAL:
                    kind = JB_CONCEALED
                    self.frames_concealed += 1
                else:
                    kind = JB_COMFORT_NOISE
                    self.frames_comfort_noise += 1
        else:
            for i in range(f):
                idx = (self._play_ts + i) & (JB_RING - 1)
                if self._valid[idx]:
                    out[i] = self._pcm[idx]
                    self._valid[idx] = 0
                else:
                    out[i] = self._last[i]
            memcpy(self._last, out, f * sizeof(int16_t))
            self._concealing = 0
            kind = JB_PARTIAL
            self.frames_partial += 1
        self._play_ts += f
        return kind

    cdef void set_frame(self, int frame_samples) noexcept nogil:
        if 8 <= frame_samples <= JB_MAX_FRAME:
            self._frame = frame_samples

    # --- the Python face, for tests and tools ---------------------------------

    def push(self, payload, *, uint32_t timestamp, uint32_t ssrc, int64_t arrival_ns,
             bint marker=False, int payload_type=0):
        """One received packet's payload and header fields; returns ACCEPTED, DUPLICATE,
        LATE, RESYNC or DISCARDED."""
        cdef const uint8_t[::1] data = payload
        cdef int n = data.shape[0]
        if n == 0:
            self.discarded += 1
            return JB_DISCARDED
        return self.put(&data[0], n, timestamp, ssrc, marker, payload_type, arrival_ns)

    def pop(self, int64_t now_ns):
        """The next playout frame at time ``now_ns``: (kind, int16 PCM bytes)."""
        cdef bytearray out = bytearray(self._frame * 2)
        cdef int16_t* dst = <int16_t*><char*>out
        kind = self.get(dst, now_ns)
        return kind, bytes(out)

    @property
    def frame_samples(self):
        return self._frame

    @property
    def target_ms(self):
        """The delay the buffer currently aims for."""
        return self._target / <double>_SAMPLES_PER_MS

    @property
    def depth_ms(self):
        """Audio buffered ahead of the playout point."""
        if not self._playing:
            return 0.0
        return max(0, self._highest_end - self._play_ts) / <double>_SAMPLES_PER_MS

    @property
    def spread_ms(self):
        """Measured transit spread (jitter) over the last few seconds."""
        return self._spread / <double>_SAMPLES_PER_MS

    def statistics(self):
        return {
            "packets": self.packets,
            "duplicates": self.duplicates,
            "late": self.late,
            "resyncs": self.resyncs,
            "discarded": self.discarded,
            "frames_audio": self.frames_audio,
            "frames_partial": self.frames_partial,
            "frames_concealed": self.frames_concealed,
            "frames_comfort_noise": self.frames_comfort_noise,
            "frames_silence": self.frames_silence,
            "frames_stretched": self.frames_stretched,
            "frames_dropped": self.frames_dropped,
        }
