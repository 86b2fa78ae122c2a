# cython: language_level=3
"""The media loop of one call: paced RTP out, RTP in, off the GIL.

Design
======

**One native thread per call, not a trio task.** A trio task pacing RTP
costs 200-300 µs of CPU per 20 ms tick and Python's epoll rounds timeouts up
to whole milliseconds; 500 such calls do not fit on two cores. Here each
call's ``MediaLoop`` starts one POSIX thread (128 KiB stack, all signals
blocked) that never takes the GIL. It sleeps with
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` until the next absolute
deadline (start + k * ptime), so lateness never accumulates; a thread that
was suspended for more than ten ticks skips the missed ones (the RTP
timestamp still advances by the real time elapsed) instead of bursting.

**Each tick**, in this order:

1. Apply a new configuration if Python published one (a seqlock-protected
   block: remote address, direction, payload types, ptime, timeout...).
2. Send: an RFC 4733 packet if the event script has one for this tick, else
   audio: in-band DTMF tones if queued, else the app's playback,
   G.711-encoded with ``_dsp``'s tables, and comfort noise for whatever the
   app did not supply (copied from a table encoded once at import, which
   every forked call process shares). The timestamp advances by one frame
   every tick whatever is sent (and on hold, when nothing is sent), so audio
   after DTMF or hold is correctly timed.
3. Receive: drain the socket with ``recvmmsg`` (non-blocking, 8 at a time),
   with kernel arrival times (``SO_TIMESTAMPNS``) so that jitter is
   measured on real arrivals, not on tick boundaries. Each datagram is
   parsed (malformed ones are counted and dropped), demultiplexed (RFC 5761
   RTCP on a muxed port goes to Python), checked against the symmetric-RTP
   latch, counted in the RFC 3550 A.1/A.8 statistics, and its payload goes
   to the jitter buffer (audio) or to Python (telephone events).
4. Play out one frame from the jitter buffer (into the received-audio ring
   if the app asked for audio), and through the in-band DTMF detector when
   no telephone-event was negotiated.
5. Raise events (media timeout, playback low/drained, DTMF script done,
   in-band digit) and, if any, write the eventfd once.

**Python and the thread share only lock-free rings**, each with one writer,
all in one anonymous mapping whose pages cost memory only once written:
playback PCM, in-band tone PCM and the RFC 4733 tick script go in
(single-producer/single-consumer, acquire/release indices); received frames
come out through a ring whose slots carry a sequence number (a per-slot
seqlock), so the thread overwrites the oldest frame when the app does not
read and the reader detects and counts what it lost; events and packets for
Python come out through SPSC rings. Counters are single-writer 64-bit words.
Python never blocks the thread and the thread never waits for Python.

**Priority.** By default the thread is an ordinary SCHED_OTHER thread; with
``realtime_priority`` it runs under SCHED_FIFO (when the process may), so
that other work on the host cannot delay a tick: measured on the shared
2-core bench host with 500 calls, p99 send lateness is 0.06 ms under FIFO
against tens of ms at normal priority while other tenants load the CPUs.

**The eventfd** (``fileno()``) is what trio waits on
(``trio.lowlevel.wait_readable``); the Python side (``gosipd.media``) reads
the rings when it becomes readable. Receiving a frame wakes Python only if
it asked for audio (``want_audio``).

**Symmetric RTP, strict source.** We send to the address the SDP names
until we latch. The stream *learns* its source once, at its start: packets
from exactly the SDP-named address are accepted and latch at once; a packet
from another source (a NAT'd far end) is accepted only after
``LATCH_PROBATION`` packets in a row from it with consecutive sequence
numbers, one SSRC and a negotiated payload type; then we latch to it and
send there. After the latch the source is strict (like Asterisk's
``strictrtp`` or rtpengine's ``strict-source``): nothing from any other
address is accepted, however long the latched source has been silent and
however well-formed the stranger's stream; such packets are dropped and
counted (``strangers``), so a stranger can neither inject audio nor steer
our RTP to itself. The one exception is the learning window: for
``LEARNING_WINDOW`` seconds after a latch to a source *other* than the
SDP-named address, a packet from the SDP-named address still takes the
latch (what signalling named beats a guess, so a stranger that won the race
with three packets at the start cannot keep the stream). The latched address
changes otherwise only with new SDP: when a re-INVITE or UPDATE moves the
media (``configure`` with another remote), the latch is reset and learning
starts again; we send to the new address from the next tick, and still
accept the old source for ``MOVE_GRACE`` seconds so that its packets in
flight play out: no audible gap. (A NAT rebinding mid-call therefore needs a
re-INVITE from the far end: the price of not being hijackable.)

**Unconfirmed remotes.** ``configure(confirmed=False)`` says the SDP's
address is not known to want our media yet (an inbound INVITE's offer
before its ACK, which anyone can forge with a third party's address): the
thread then sends nothing to it, only to a latched source, i.e. an address
RTP has arrived from (symmetric RTP proves the far end is there). So an
unACKed INVITE cannot aim our media at a victim; early media still reaches
a caller that sends RTP. The timestamp advances as on hold.

**Single implementations.** The jitter buffer (``_jitterbuffer``) and the
in-band DTMF detector (``_dsp.DtmfDetector``) are Cython classes that this
thread calls without the GIL and that tests drive with simulated time. The
RTP header parser and the RFC 3550 A.1/A.8 statistics are C transcriptions
of ``gosipd.rtp.packet`` and ``gosipd.rtp.statistics``, exposed here
(``parse_rtp_header``, ``ReceptionStatistics``) so that the tests can feed
both the same inputs. RFC 4733 sending and receiving, RTCP and MOS are
Python (``gosipd.rtp``): they run a few times a second, not per packet.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.math cimport fabs
from libc.stdint cimport (
    int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t)
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from gosipd._dsp cimport DtmfDetector
from gosipd._jitterbuffer cimport JitterBuffer, JB_AUDIO, JB_PARTIAL, JB_MAX_FRAME

import os
import secrets
import socket as _socket

from gosipd import _dsp


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to,
                   socklen_t tolen)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t length)
    int MSG_DONTWAIT
    int SOL_SOCKET
    int SO_TIMESTAMPNS
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t:
        pass
    int pthread_attr_init(pthread_attr_t*)
    int pthread_attr_setstacksize(pthread_attr_t*, size_t)
    int pthread_attr_destroy(pthread_attr_t*)
    int pthread_create(pthread_t*, const pthread_attr_t*, void* (*)(void*) noexcept nogil,
                       void*)
    int pthread_join(pthread_t, void**)

cdef extern from "<sched.h>" nogil:
    struct sched_param:
        int sched_priority
    int SCHED_FIFO

cdef extern from "<pthread.h>" nogil:
    pthread_t pthread_self()
    int pthread_setschedparam(pthread_t thread, int policy, const sched_param* param)

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass

cdef extern from "<time.h>" nogil:
    ctypedef int clockid_t
    clockid_t CLOCK_MONOTONIC
    clockid_t CLOCK_REALTIME
    clockid_t CLOCK_THREAD_CPUTIME_ID

cdef extern from "<unistd.h>" nogil:
    ssize_t write(int fd, const void* buf, size_t n)
    ssize_t read(int fd, void* buf, size_t n)
    int close(int fd)

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int PROT_READ
    int PROT_WRITE
    int MAP_PRIVATE
    int MAP_ANONYMOUS
    void* MAP_FAILED

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "_media.h" nogil:
    uint64_t load_acquire "gosipd_load_acquire"(const uint64_t* p)
    uint64_t load_relaxed "gosipd_load_relaxed"(const uint64_t* p)
    void store_release "gosipd_store_release"(uint64_t* p, uint64_t v)
    void store_relaxed "gosipd_store_relaxed"(uint64_t* p, uint64_t v)
    int64_t load_i64 "gosipd_load_i64"(const int64_t* p)
    void store_i64 "gosipd_store_i64"(int64_t* p, int64_t v)
    int exchange_int "gosipd_exchange_int"(int* p, int v)
    int load_int "gosipd_load_int"(const int* p)
    void store_int "gosipd_store_int"(int* p, int v)
    void fence_acquire "gosipd_fence_acquire"()
    void fence_release "gosipd_fence_release"()
    enum:
        BATCH "GOSIPD_BATCH"
        MAX_DATAGRAM "GOSIPD_MAX_DATAGRAM"
    ctypedef struct mmsghdr_t "struct mmsghdr":
        unsigned int msg_len
    ctypedef struct rx_batch "gosipd_rx_batch":
        mmsghdr_t msgs[8]
        sockaddr_storage source[8]
        unsigned char data[8][1536]
        int64_t arrival_ns[8]
    void rx_init "gosipd_rx_init"(rx_batch* b)
    int recv_batch "gosipd_recv_batch"(int fd, rx_batch* b)
    int same_address "gosipd_same_address"(const sockaddr_storage* a, socklen_t alen,
                                           const sockaddr_storage* b, socklen_t blen)
    void block_signals "gosipd_block_signals"(sigset_t* old)
    void restore_signals "gosipd_restore_signals"(const sigset_t* old)
    int64_t clock_ns "gosipd_clock_ns"(clockid_t clock)
    void sleep_until "gosipd_sleep_until"(int64_t deadline_ns)

__all__ = [
    "COMFORT_NOISE_DBOV",
    "EVENT_NAMES",
    "PLAYBACK_CAPACITY",
    "SCRIPT_CAPACITY",
    "TONES_CAPACITY",
    "LATCH_PROBATION",
    "LEARNING_WINDOW",
    "MOVE_GRACE",
    "MediaLoop",
    "ReceptionStatistics",
    "parse_rtp_header",
]

# --------------------------------------------------------------------------
# Limits and names
# --------------------------------------------------------------------------

cdef enum:
    _PLAYBACK_SAMPLES = 16384  # 2.048 s of app audio queued in the ring (a power of two)
    _TONE_SAMPLES = 8192  # 1.024 s of in-band DTMF queued
    _TICK_ENTRIES = 512  # RFC 4733 script: ~50 digits at 100/50 ms
    _RX_FRAMES = 50  # received frames held for the app (1 s at 20 ms)
    _EVENTS = 256
    _PACKETS = 8  # RTCP and latch notices held for Python
    _HIST_FINE = 500  # lateness bins of 10 µs up to 5 ms
    _HIST_COARSE = 100  # then 1 ms bins up to 105 ms; one overflow bin
    _HIST = _HIST_FINE + _HIST_COARSE + 1
    _SKIP_AFTER_TICKS = 10
    _RTCP_POLL_TICKS = 5
    _PROBATION = 3

#: Ring sizes: playback and tone samples, RFC 4733 script ticks, received frames.
PLAYBACK_CAPACITY = _PLAYBACK_SAMPLES
TONES_CAPACITY = _TONE_SAMPLES
SCRIPT_CAPACITY = _TICK_ENTRIES
RECEIVED_FRAMES = _RX_FRAMES
#: Packets in a row (consecutive sequence numbers) before a new source is latched.
LATCH_PROBATION = _PROBATION
#: Seconds after a latch to a source other than the SDP-named address during which
#: a packet from the SDP-named address still takes the latch (then: strict source).
LEARNING_WINDOW = 2.0
#: Seconds the old source is still heard after the remote address moves.
MOVE_GRACE = 2.0
cdef int64_t MOVE_GRACE_NS = <int64_t>(MOVE_GRACE * 1e9)
cdef int64_t LEARNING_WINDOW_NS = <int64_t>(LEARNING_WINDOW * 1e9)

# Events (kind numbers are shared with gosipd.media).
cdef enum:
    EV_TELEPHONE_EVENT = 1
    EV_INBAND_DIGIT = 2
    EV_MEDIA_TIMEOUT = 3
    EV_MEDIA_RESUMED = 4
    EV_PLAYBACK_LOW = 5
    EV_PLAYBACK_DRAINED = 6
    EV_TONES_DRAINED = 7
    EV_SCRIPT_DRAINED = 8
    EV_AUDIO = 9
    EV_PACKET = 10

EVENT_TELEPHONE_EVENT = EV_TELEPHONE_EVENT
EVENT_INBAND_DIGIT = EV_INBAND_DIGIT
EVENT_MEDIA_TIMEOUT = EV_MEDIA_TIMEOUT
EVENT_MEDIA_RESUMED = EV_MEDIA_RESUMED
EVENT_PLAYBACK_LOW = EV_PLAYBACK_LOW
EVENT_PLAYBACK_DRAINED = EV_PLAYBACK_DRAINED
EVENT_TONES_DRAINED = EV_TONES_DRAINED
EVENT_SCRIPT_DRAINED = EV_SCRIPT_DRAINED
EVENT_AUDIO = EV_AUDIO
EVENT_PACKET = EV_PACKET
EVENT_NAMES = {
    EV_TELEPHONE_EVENT: "telephone_event",
    EV_INBAND_DIGIT: "inband_digit",
    EV_MEDIA_TIMEOUT: "media_timeout",
    EV_MEDIA_RESUMED: "media_resumed",
    EV_PLAYBACK_LOW: "playback_low",
    EV_PLAYBACK_DRAINED: "playback_drained",
    EV_TONES_DRAINED: "tones_drained",
    EV_SCRIPT_DRAINED: "script_drained",
    EV_AUDIO: "audio",
    EV_PACKET: "packet",
}
cdef enum:
    _PACKET_RTCP = 1
    _PACKET_LATCHED = 2
PACKET_RTCP = _PACKET_RTCP
PACKET_LATCHED = _PACKET_LATCHED

# --------------------------------------------------------------------------
# G.711 tables, copied from _dsp at import (bit-exact with audioop by construction)
# --------------------------------------------------------------------------

cdef uint8_t ULAW_FROM_LINEAR[16384]
cdef uint8_t ALAW_FROM_LINEAR[8192]


cdef void _load_tables() except *:
    cdef bytes ulaw = _dsp.ulaw_encode(
        b"".join((i << 2).to_bytes(2, "little", signed=False) for i in range(16384)))
    cdef bytes alaw = _dsp.alaw_encode(
        b"".join((i << 3).to_bytes(2, "little", signed=False) for i in range(8192)))
    memcpy(ULAW_FROM_LINEAR, <const char*>ulaw, 16384)
    memcpy(ALAW_FROM_LINEAR, <const char*>alaw, 8192)


_load_tables()

cdef enum:
    _CN_SAMPLES = 8192
#: The level of the comfort noise we send when the app is silent, in dBov.
COMFORT_NOISE_DBOV = -60.0
# Comfort noise at COMFORT_NOISE_DBOV, encoded once at import: shared by every
# call process forked after it, so sending noise costs a copy, not a PRNG and
# an encoder per tick.
cdef uint8_t CN_ULAW[_CN_SAMPLES]
cdef uint8_t CN_ALAW[_CN_SAMPLES]


cdef void _encode_noise(double level, uint8_t* ulaw, uint8_t* alaw) except *:
    cdef bytes pcm = _dsp.ComfortNoise(level, seed=0x5EED).frame(_CN_SAMPLES)
    cdef bytes u = _dsp.ulaw_encode(pcm)
    cdef bytes a = _dsp.alaw_encode(pcm)
    memcpy(ulaw, <const char*>u, _CN_SAMPLES)
    memcpy(alaw, <const char*>a, _CN_SAMPLES)


_encode_noise(COMFORT_NOISE_DBOV, CN_ULAW, CN_ALAW)

# --------------------------------------------------------------------------
# SRTP: each context comes with its C entry point (libsrtp's srtp_protect or
# srtp_unprotect, or gosipd._srtp's twins with the same signature and codes)
# --------------------------------------------------------------------------

ctypedef int (*srtp_function)(void* ctx, void* packet, int* length) noexcept nogil
cdef enum:
    _SRTP_REPLAY_FAIL = 9  # srtp_err_status_replay_fail
    _SRTP_REPLAY_OLD = 10  # srtp_err_status_replay_old


# --------------------------------------------------------------------------
# RTP header (the C twin of gosipd.rtp.packet.RtpPacket.parse)
# --------------------------------------------------------------------------

cdef struct RtpHeader:
    int payload_type
    bint marker
    uint16_t sequence
    uint32_t timestamp
    uint32_t ssrc
    int payload_offset
    int payload_length


cdef enum:
    RTP_OK = 0
    RTP_TOO_SHORT = 1
    RTP_BAD_VERSION = 2
    RTP_CSRC_OVERRUN = 3
    RTP_EXTENSION_OVERRUN = 4
    RTP_BAD_PADDING = 5
    RTP_RTCP_PAYLOAD_TYPE = 6
    RTP_TOO_LONG = 7
    RTP_MAX_PACKET = 1500


cdef int _parse_rtp(const uint8_t* p, int n, RtpHeader* h) noexcept nogil:
    cdef int offset, cc, words, pad, end
    if n > RTP_MAX_PACKET:
        return RTP_TOO_LONG
    if n < 12:
        return RTP_TOO_SHORT
    if (p[0] >> 6) != 2:
        return RTP_BAD_VERSION
    h.payload_type = p[1] & 0x7F
    if 72 <= h.payload_type <= 76:
        return RTP_RTCP_PAYLOAD_TYPE
    h.marker = (p[1] & 0x80) != 0
    h.sequence = (<uint16_t>p[2] << 8) | p[3]
    h.timestamp = ((<uint32_t>p[4] << 24) | (<uint32_t>p[5] << 16)
                   | (<uint32_t>p[6] << 8) | p[7])
    h.ssrc = ((<uint32_t>p[8] << 24) | (<uint32_t>p[9] << 16)
              | (<uint32_t>p[10] << 8) | p[11])
    cc = p[0] & 0x0F
    offset = 12
    if offset + 4 * cc > n:
        return RTP_CSRC_OVERRUN
    offset += 4 * cc
    if p[0] & 0x10:
        if offset + 4 > n:
            return RTP_EXTENSION_OVERRUN
        words = (p[offset + 2] << 8) | p[offset + 3]
        if offset + 4 + 4 * words > n:
            return RTP_EXTENSION_OVERRUN
        offset += 4 + 4 * words
    end = n
    if p[0] & 0x20:
        pad = p[n - 1]
        if pad == 0 or pad > n - offset:
            return RTP_BAD_PADDING
        end -= pad
    h.payload_offset = offset
    h.payload_length = end - offset
    return RTP_OK


def parse_rtp_header(data):
    """The C parser's view of ``data``: (payload type, marker, sequence, timestamp, ssrc,
    payload) or the error kind number of ``gosipd.rtp.packet``."""
    cdef const uint8_t[::1] view = data
    cdef RtpHeader h
    cdef int n = view.shape[0]
    cdef int result = RTP_TOO_SHORT
    if n:
        result = _parse_rtp(&view[0], n, &h)
    if result != RTP_OK:
        return result
    return (h.payload_type, bool(h.marker), h.sequence, h.timestamp, h.ssrc,
            bytes(view[h.payload_offset:h.payload_offset + h.payload_length]))

# --------------------------------------------------------------------------
# RFC 3550 A.1 / A.8 (the C twin of gosipd.rtp.statistics.ReceptionStatistics)
# --------------------------------------------------------------------------


cdef enum:
    SEQ_MOD = 65536
    MIN_SEQUENTIAL = 2
    MAX_DROPOUT = 3000
    MAX_MISORDER = 100


cdef struct RecvStats:
    bint started
    uint32_t ssrc
    uint32_t max_seq
    uint32_t cycles
    uint32_t base_seq
    uint32_t bad_seq
    int probation
    int64_t received
    int64_t duplicates
    uint32_t transit
    bint has_transit
    double jitter
    uint64_t seen[2]
    int64_t ns_per_unit


cdef inline void _seen_clear(RecvStats* s, uint32_t seq) noexcept nogil:
    seq &= 127
    s.seen[seq >> 6] &= ~(<uint64_t>1 << (seq & 63))


cdef inline void _seen_set(RecvStats* s, uint32_t seq) noexcept nogil:
    seq &= 127
    s.seen[seq >> 6] |= (<uint64_t>1 << (seq & 63))


cdef inline bint _seen_get(RecvStats* s, uint32_t seq) noexcept nogil:
    seq &= 127
    return (s.seen[seq >> 6] >> (seq & 63)) & 1


cdef void _stats_init_seq(RecvStats* s, uint32_t seq) noexcept nogil:
    s.base_seq = seq
    s.max_seq = seq
    s.bad_seq = SEQ_MOD + 1
    s.cycles = 0
    s.received = 0
    s.seen[0] = 0
    s.seen[1] = 0
    _seen_set(s, seq)


cdef void _stats_mark(RecvStats* s, uint32_t seq, uint32_t advanced_by) noexcept nogil:
    cdef uint32_t k
    if advanced_by >= 128:
        s.seen[0] = 0
        s.seen[1] = 0
    else:
        for k in range(advanced_by):
            _seen_clear(s, (seq - k) & 0xFFFF)
    _seen_set(s, seq)


cdef int _stats_update_seq(RecvStats* s, uint32_t seq) noexcept nogil:
    """1 valid, 0 probation or unconfirmed jump, -1 duplicate."""
    cdef uint32_t udelta = (seq - s.max_seq) & 0xFFFF
    if s.probation:
        if seq == ((s.max_seq + 1) & 0xFFFF):
            s.probation -= 1
            s.max_seq = seq
            if s.probation == 0:
                _stats_init_seq(s, seq)
                s.received += 1
                return 1
        else:
            s.probation = MIN_SEQUENTIAL - 1
            s.max_seq = seq
        return 0
    if udelta == 0 or (udelta > SEQ_MOD - MAX_MISORDER and _seen_get(s, seq)):
        s.duplicates += 1
        return -1
    if udelta < MAX_DROPOUT:
        if seq < s.max_seq:
            s.cycles += SEQ_MOD
        s.max_seq = seq
        _stats_mark(s, seq, udelta)
    elif udelta <= SEQ_MOD - MAX_MISORDER:
        if seq == s.bad_seq:
            _stats_init_seq(s, seq)
        else:
            s.bad_seq = (seq + 1) & 0xFFFF
            return 0
    else:
        _stats_mark(s, seq, 0)
    s.received += 1
    return 1


cdef int _stats_update(RecvStats* s, uint32_t ssrc, uint32_t seq, uint32_t timestamp,
                       int64_t arrival_ns, bint timing) noexcept nogil:
    cdef int result
    cdef uint32_t transit
    cdef int32_t d
    cdef int64_t ns_per_unit = s.ns_per_unit
    if not s.started or ssrc != s.ssrc:
        memset(s, 0, sizeof(RecvStats))
        s.ns_per_unit = ns_per_unit
        s.started = True
        s.ssrc = ssrc
        _stats_init_seq(s, seq)
        s.max_seq = (seq - 1) & 0xFFFF
        s.probation = MIN_SEQUENTIAL
    result = _stats_update_seq(s, seq)
    if result != 1 or not timing:
        return result
    transit = <uint32_t>(<uint64_t>(arrival_ns // ns_per_unit)) - timestamp
    if s.received > 1 and s.has_transit:
        d = <int32_t>(transit - s.transit)
        s.jitter += (fabs(<double>d) - s.jitter) / 16.0
    s.transit = transit
    s.has_transit = True
    return 1


cdef class ReceptionStatistics:
    """The media loop's RFC 3550 statistics, callable from Python (for the twin tests)."""

    cdef RecvStats _s

    def __init__(self, int clock_rate=8000):
        if clock_rate <= 0 or 1_000_000_000 % clock_rate:
            raise ValueError(f"clock rate must divide 1e9 Hz evenly, got {clock_rate}")
        memset(&self._s, 0, sizeof(RecvStats))
        self._s.ns_per_unit = 1_000_000_000 // clock_rate

    def update(self, uint32_t ssrc, uint32_t seq, uint32_t timestamp, int64_t arrival_ns,
               bint timing=True):
        return _stats_update(&self._s, ssrc, seq & 0xFFFF, timestamp, arrival_ns, timing) == 1

    def snapshot(self):
        """(ssrc, received, expected, extended_max, jitter, duplicates)."""
        return _stats_tuple(&self._s)


cdef tuple _stats_tuple(RecvStats* s):
    cdef int64_t extended = <int64_t>s.cycles + s.max_seq
    cdef int64_t expected = extended - s.base_seq + 1 if s.received else 0
    return (s.ssrc, s.received, expected, extended, s.jitter, s.duplicates)

# --------------------------------------------------------------------------
# Rings
# --------------------------------------------------------------------------

cdef struct PcmRing:
    int16_t* data
    uint64_t capacity
    uint64_t head  # samples written (Python)
    uint64_t tail  # samples read (thread)


cdef void _pcm_ring_init(PcmRing* r, int16_t* data, uint64_t capacity) noexcept:
    r.data = data
    r.capacity = capacity
    r.head = 0
    r.tail = 0


cdef uint64_t _pcm_ring_write(PcmRing* r, const int16_t* src, uint64_t n) noexcept nogil:
    cdef uint64_t head = r.head
    cdef uint64_t free_ = r.capacity - (head - load_acquire(&r.tail))
    cdef uint64_t first, at
    if n > free_:
        n = free_
    at = head & (r.capacity - 1)
    first = r.capacity - at
    if first > n:
        first = n
    memcpy(r.data + at, src, first * sizeof(int16_t))
    memcpy(r.data, src + first, (n - first) * sizeof(int16_t))
    store_release(&r.head, head + n)
    return n


cdef uint64_t _pcm_ring_read(PcmRing* r, int16_t* dst, uint64_t n) noexcept nogil:
    cdef uint64_t tail = r.tail
    cdef uint64_t avail = load_acquire(&r.head) - tail
    cdef uint64_t first, at
    if n > avail:
        n = avail
    at = tail & (r.capacity - 1)
    first = r.capacity - at
    if first > n:
        first = n
    memcpy(dst, r.data + at, first * sizeof(int16_t))
    memcpy(dst + first, r.data, (n - first) * sizeof(int16_t))
    store_release(&r.tail, tail + n)
    return n


cdef struct Tick:
    uint8_t kind  # 0 audio, 1 telephone event
    uint8_t marker
    uint8_t start
    uint8_t last  # the last entry of a send request
    uint8_t payload[4]


cdef struct TickRing:
    Tick entries[_TICK_ENTRIES]
    uint64_t head
    uint64_t tail


cdef struct Event:
    int32_t kind
    int32_t a
    int64_t b
    int64_t c
    int64_t at_ns


cdef struct EventRing:
    Event entries[_EVENTS]
    uint64_t head
    uint64_t tail
    int64_t overflow


cdef struct Frame:
    uint64_t seq  # per-slot seqlock: 2 * index + 1 while written, 2 * (index + 1) when done
    int32_t kind
    int32_t samples
    int16_t pcm[JB_MAX_FRAME]


cdef struct Packet:
    int32_t kind
    int32_t length
    int64_t arrival_ns
    sockaddr_storage source
    uint8_t data[1536]


cdef struct PacketRing:
    Packet entries[_PACKETS]
    uint64_t head
    uint64_t tail
    int64_t overflow

# --------------------------------------------------------------------------
# Configuration, published by Python under a seqlock
# --------------------------------------------------------------------------

cdef struct Config:
    bint srtp  # SRTP negotiated: nothing plain goes out or is taken in
    void* srtp_out  # the SRTP context for what we send (NULL: send nothing)
    void* srtp_in  # and for what we receive (NULL: take nothing)
    srtp_function srtp_protect  # srtp_out's entry point
    srtp_function srtp_unprotect  # srtp_in's
    sockaddr_storage remote
    bint has_remote
    uint64_t remote_generation
    bint send
    bint receive
    int payload_type
    int te_send_pt
    int te_receive_pt
    int accept_mask  # bit 0: PCMU (PT 0), bit 1: PCMA (PT 8)
    int comfort_noise_pt
    int samples_per_tick
    int64_t timeout_ns
    bint inband_detect
    bint symmetric
    bint confirmed  # the remote may be sent to before anything came from it
    uint64_t flush_playback
    uint64_t flush_tones
    uint64_t flush_script


cdef int _sockaddr_of(object address, sockaddr_storage* out) except -1:
    host, port = address
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, got {port!r}")
    cdef bytes raw = str(host).encode("ascii")
    cdef sockaddr_in* v4 = <sockaddr_in*>out
    cdef sockaddr_in6* v6 = <sockaddr_in6*>out
    memset(out, 0, sizeof(sockaddr_storage))
    if inet_pton(AF_INET, raw, &v4.sin_addr) == 1:
        v4.sin_family = AF_INET
        v4.sin_port = htons(port)
        return 0
    if inet_pton(AF_INET6, raw, &v6.sin6_addr) == 1:
        v6.sin6_family = AF_INET6
        v6.sin6_port = htons(port)
        return 0
    raise ValueError(f"{host!r} is not an IPv4 or IPv6 address literal")


cdef object _address_of(const sockaddr_storage* a):
    cdef char text[64]
    cdef const sockaddr_in* v4 = <const sockaddr_in*>a
    cdef const sockaddr_in6* v6 = <const sockaddr_in6*>a
    if a.ss_family == AF_INET:
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v4.sin_port))
    if a.ss_family == AF_INET6:
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v6.sin6_port))
    return None


cdef inline socklen_t _sockaddr_len(const sockaddr_storage* a) noexcept nogil:
    if a.ss_family == AF_INET6:
        return sizeof(sockaddr_in6)
    return sizeof(sockaddr_in)

# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------


cdef int _kernel_timestamps(int fd) except -1:
    """Ask the kernel to stamp each datagram's arrival (SO_TIMESTAMPNS)."""
    cdef int on = 1
    if setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0:
        raise OSError(f"setsockopt(SO_TIMESTAMPNS) failed on fd {fd}")
    return 0


cdef void* _thread_entry(void* arg) noexcept nogil:
    (<MediaLoop>arg)._run()
    return NULL


@cython.no_gc_clear  # the SRTP contexts must outlive the thread, even in a cycle
cdef class MediaLoop:
    """One call's RTP: a paced sender and a receiver on a native thread (see the module doc).

    ``sock`` is a bound UDP socket (kept open by this object; the loop reads
    and writes its file descriptor); ``rtcp_sock`` an optional second one
    for RTCP (without it, RTCP is multiplexed on ``sock``). Start with
    ``configure(...)`` then ``start()``. ``realtime_priority`` (1-99) runs
    the thread under SCHED_FIFO when the process may (root, CAP_SYS_NICE or
    RLIMIT_RTPRIO); otherwise ``counters()["realtime_error"]`` says why not
    and the loop runs at normal priority. ``gosipd.media.MediaSession`` is the
    API applications use; this class is its engine.
    """

    # Python-side references
    cdef object _sock
    cdef object _rtcp_sock
    cdef list _srtp_contexts  # kept alive while the thread may use them
    cdef readonly JitterBuffer jitter_buffer
    cdef readonly DtmfDetector dtmf_detector
    cdef int _fd
    cdef int _rtcp_fd
    cdef int _event_fd
    cdef pthread_t _thread
    cdef bint _started
    cdef int _stop
    cdef int _realtime_priority
    cdef int64_t _realtime_error

    # shared with Python
    cdef void* _block
    cdef size_t _block_size
    cdef Config _published
    cdef uint64_t _config_seq
    cdef uint64_t _config_written
    cdef PcmRing _playback
    cdef PcmRing _tones
    cdef TickRing* _script
    cdef EventRing* _events
    cdef PacketRing* _packets
    cdef Frame* _frames
    cdef uint64_t _frames_written
    cdef uint64_t _frames_read
    cdef readonly int64_t frames_dropped
    cdef int _want_audio
    cdef int _want_low
    cdef uint32_t* _histogram

    # owned by the thread
    cdef Config _cfg
    cdef uint64_t _cfg_seq_applied
    cdef uint64_t _cfg_seq_done  # the same, stored last, for Python (release/acquire)
    cdef uint64_t _remote_generation
    cdef uint64_t _flush_playback_seen
    cdef uint64_t _flush_tones_seen
    cdef uint64_t _flush_script_seen
    cdef rx_batch* _rx
    cdef RecvStats _stats
    cdef uint8_t _out[12 + 4 * JB_MAX_FRAME]
    cdef int16_t _pcm[JB_MAX_FRAME]
    cdef uint16_t _seq
    cdef uint32_t _ts
    cdef uint32_t _ssrc
    cdef uint32_t _event_ts
    cdef int64_t _deadline
    cdef int64_t _period_ns
    cdef int _samples
    cdef bint _latched
    cdef sockaddr_storage _latch
    cdef int64_t _learning_until_ns
    cdef sockaddr_storage _previous
    cdef int64_t _previous_until_ns
    cdef sockaddr_storage _candidate
    cdef uint32_t _candidate_ssrc
    cdef uint16_t _candidate_next
    cdef int _candidate_count
    cdef bint _playback_active
    cdef bint _tones_active
    cdef bint _script_active
    cdef bint _timed_out
    cdef bint _signal_pending
    cdef uint64_t _noise_state
    cdef const uint8_t* _cn_ulaw
    cdef const uint8_t* _cn_alaw
    cdef uint8_t* _cn_own
    cdef int _deliver
    cdef int16_t _scratch[JB_MAX_FRAME]

    # counters (written by the thread, read by Python)
    cdef int64_t _ticks
    cdef int64_t _ticks_skipped
    cdef int64_t _packets_sent
    cdef int64_t _octets_sent
    cdef int64_t _send_errors
    cdef int64_t _srtp_protect_failures
    cdef int64_t _srtp_auth_failures
    cdef int64_t _srtp_replays
    cdef int64_t _packets_received
    cdef int64_t _octets_received
    cdef int64_t _malformed
    cdef int64_t _strangers
    cdef int64_t _probation_dropped
    cdef int64_t _unknown_payload
    cdef int64_t _comfort_noise_received
    cdef int64_t _events_received
    cdef int64_t _latches
    cdef int64_t _last_rx_ns
    cdef int64_t _tick_ns
    cdef int64_t _tick_rtp_ts
    cdef int64_t _thread_cpu_ns
    cdef int64_t _lateness_max_ns
    cdef int64_t _lateness_sum_ns
    cdef int64_t _stats_snapshot_seq
    cdef int64_t _snap[6]

    def __cinit__(self):
        self._srtp_contexts = []
        self._fd = -1
        self._rtcp_fd = -1
        self._event_fd = -1
        # All the rings in one anonymous mapping, each on its own pages: a page costs
        # private memory only once it is written, so an idle ring costs nothing.
        cdef size_t sizes[8]
        cdef size_t offsets[8]
        cdef size_t total = 0
        cdef int k
        sizes[0] = sizeof(TickRing)
        sizes[1] = sizeof(EventRing)
        sizes[2] = sizeof(PacketRing)
        sizes[3] = _RX_FRAMES * sizeof(Frame)
        sizes[4] = sizeof(rx_batch)
        sizes[5] = _HIST * sizeof(uint32_t)
        sizes[6] = _PLAYBACK_SAMPLES * sizeof(int16_t)
        sizes[7] = _TONE_SAMPLES * sizeof(int16_t)
        for k in range(8):
            offsets[k] = total
            total += (sizes[k] + 4095) & ~(<size_t>4095)
        cdef void* block = mmap(NULL, total, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if block == MAP_FAILED:
            raise MemoryError(f"cannot map {total} bytes for the media rings")
        self._block = block
        self._block_size = total
        cdef char* base = <char*>block
        self._script = <TickRing*>(base + offsets[0])
        self._events = <EventRing*>(base + offsets[1])
        self._packets = <PacketRing*>(base + offsets[2])
        self._frames = <Frame*>(base + offsets[3])
        self._rx = <rx_batch*>(base + offsets[4])
        rx_init(self._rx)
        self._histogram = <uint32_t*>(base + offsets[5])
        _pcm_ring_init(&self._playback, <int16_t*>(base + offsets[6]), _PLAYBACK_SAMPLES)
        _pcm_ring_init(&self._tones, <int16_t*>(base + offsets[7]), _TONE_SAMPLES)

    def __init__(self, sock, *, rtcp_sock=None, int ptime_ms=20, ssrc=None, sequence=None,
                 timestamp=None, double comfort_noise_dbov=-60.0, int initial_delay_ms=40,
                 realtime_priority=None):
        if sock.type != _socket.SOCK_DGRAM:
            raise ValueError("the media socket must be a UDP (SOCK_DGRAM) socket")
        if ptime_ms not in (10, 20, 30, 40):
            raise ValueError(f"ptime must be 10, 20, 30 or 40 ms, got {ptime_ms}")
        if not -96.0 <= comfort_noise_dbov <= -20.0:
            raise ValueError(f"comfort noise must be -96..-20 dBov, got {comfort_noise_dbov}")
        if realtime_priority is not None and not 1 <= realtime_priority <= 99:
            raise ValueError(
                f"realtime priority must be 1..99 (SCHED_FIFO), got {realtime_priority}")
        self._realtime_priority = 0 if realtime_priority is None else realtime_priority
        self._sock = sock
        self._fd = sock.fileno()
        _kernel_timestamps(self._fd)
        if rtcp_sock is not None:
            if rtcp_sock.type != _socket.SOCK_DGRAM:
                raise ValueError("the RTCP socket must be a UDP (SOCK_DGRAM) socket")
            self._rtcp_sock = rtcp_sock
            self._rtcp_fd = rtcp_sock.fileno()
            _kernel_timestamps(self._rtcp_fd)
        self._event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._event_fd < 0:
            raise OSError("eventfd() failed")
        self._samples = ptime_ms * 8
        self._period_ns = ptime_ms * 1_000_000
        self.jitter_buffer = JitterBuffer(self._samples, initial_delay_ms=initial_delay_ms,
                                          comfort_noise_dbov=comfort_noise_dbov)
        self.dtmf_detector = DtmfDetector(8000)
        self._ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self._seq = secrets.randbits(16) if sequence is None else sequence
        self._ts = secrets.randbits(32) if timestamp is None else timestamp
        self._noise_state = int.from_bytes(os.urandom(8), "little") | 1
        if comfort_noise_dbov == COMFORT_NOISE_DBOV:
            self._cn_ulaw = CN_ULAW
            self._cn_alaw = CN_ALAW
        else:
            self._cn_own = <uint8_t*>malloc(2 * _CN_SAMPLES)
            if self._cn_own == NULL:
                raise MemoryError()
            _encode_noise(comfort_noise_dbov, self._cn_own, self._cn_own + _CN_SAMPLES)
            self._cn_ulaw = self._cn_own
            self._cn_alaw = self._cn_own + _CN_SAMPLES
        self._stats.ns_per_unit = 125000
        memset(&self._published, 0, sizeof(Config))
        self._published.samples_per_tick = self._samples
        self._published.send = False
        self._published.receive = True
        self._published.te_send_pt = -1
        self._published.te_receive_pt = -1
        self._published.comfort_noise_pt = -1
        self._published.accept_mask = 3
        self._published.symmetric = True
        self._published.confirmed = True
        memcpy(&self._cfg, &self._published, sizeof(Config))

    def __dealloc__(self):
        if self._started:
            store_int(&self._stop, 1)
            with nogil:
                pthread_join(self._thread, NULL)
            self._started = False
        if self._event_fd >= 0:
            close(self._event_fd)
        if self._block != NULL:
            munmap(self._block, self._block_size)
            self._block = NULL
        free(self._cn_own)

    # --- control (Python side) ------------------------------------------------

    @property
    def ssrc(self):
        return self._ssrc

    @property
    def running(self):
        return self._started and not load_int(&self._stop)

    def fileno(self):
        """The eventfd that becomes readable when the thread has news for Python."""
        return self._event_fd

    def configure(self, *, remote, bint send, bint receive, int payload_type=0,
                  telephone_event_pt=None, receive_telephone_event_pt=None,
                  accept_payload_types=(0, 8), comfort_noise_pt=None, int ptime_ms=20,
                  double media_timeout=0.0, bint symmetric=True, inband_detect=None,
                  bint confirmed=True, srtp=None):
        """Publish the whole configuration; the thread applies it at its next tick.

        ``remote`` is the (IP literal, port) the SDP names, or None (nothing to
        send to). Moving it to another address resets the symmetric-RTP latch
        (the old source is still accepted for ``MOVE_GRACE`` seconds).
        ``confirmed=False``: send only to a latched source, never to ``remote``
        on the SDP's word alone (see "Unconfirmed remotes" in the module doc).
        ``inband_detect`` defaults to "no telephone-event was negotiated".
        ``srtp`` is None (plain RTP) or the pair (outbound, inbound) of
        ``gosipd.srtp.RtpContext`` (either may be None: nothing is sent, or
        nothing is taken in, until it is given); the loop keeps them alive
        until the thread has moved on to newer ones.
        """
        cdef Config c
        memcpy(&c, &self._published, sizeof(Config))
        if payload_type not in (0, 8):
            raise ValueError(f"payload type must be 0 (PCMU) or 8 (PCMA), got {payload_type}")
        if ptime_ms not in (10, 20, 30, 40):
            raise ValueError(f"ptime must be 10, 20, 30 or 40 ms, got {ptime_ms}")
        for pt in (telephone_event_pt, receive_telephone_event_pt, comfort_noise_pt):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"payload type {pt} is not 0..127")
        if media_timeout < 0:
            raise ValueError(f"media timeout must be >= 0 s (0 disables), got {media_timeout}")
        cdef sockaddr_storage new_remote
        if remote is None:
            c.has_remote = False
        else:
            _sockaddr_of(remote, &new_remote)
            if not c.has_remote or not same_address(&new_remote, 0, &c.remote, 0):
                c.remote_generation += 1
            memcpy(&c.remote, &new_remote, sizeof(sockaddr_storage))
            c.has_remote = True
        c.send = send
        c.receive = receive
        c.payload_type = payload_type
        c.te_send_pt = -1 if telephone_event_pt is None else telephone_event_pt
        c.te_receive_pt = -1 if receive_telephone_event_pt is None else receive_telephone_event_pt
        c.comfort_noise_pt = -1 if comfort_noise_pt is None else comfort_noise_pt
        c.accept_mask = ((1 if 0 in accept_payload_types else 0)
                         | (2 if 8 in accept_payload_types else 0))
        c.samples_per_tick = ptime_ms * 8
        c.timeout_ns = <int64_t>(media_timeout * 1e9)
        c.symmetric = symmetric
        c.confirmed = confirmed
        if inband_detect is None:
            inband_detect = receive_telephone_event_pt is None
        c.inband_detect = bool(inband_detect)
        contexts = []
        if srtp is None:
            c.srtp = False
            c.srtp_out = NULL
            c.srtp_in = NULL
            c.srtp_protect = NULL
            c.srtp_unprotect = NULL
        else:
            outbound, inbound = srtp
            c.srtp = True
            c.srtp_out = <void*><uintptr_t>(outbound.handle if outbound is not None else 0)
            c.srtp_in = <void*><uintptr_t>(inbound.handle if inbound is not None else 0)
            c.srtp_protect = <srtp_function><uintptr_t>(
                outbound.function if outbound is not None else 0)
            c.srtp_unprotect = <srtp_function><uintptr_t>(
                inbound.function if inbound is not None else 0)
            contexts = [x for x in (outbound, inbound) if x is not None]
        if load_acquire(&self._cfg_seq_done) == self._config_seq:
            # the thread runs the latest configuration: only its contexts are in use
            in_use = (<uintptr_t>self._published.srtp_out, <uintptr_t>self._published.srtp_in)
            self._srtp_contexts = [x for x in self._srtp_contexts if x.handle in in_use]
        self._srtp_contexts.extend(contexts)
        self._publish(&c)

    cdef void _publish(self, Config* c):
        # seqlock, single writer (the GIL serialises Python callers)
        cdef uint64_t seq = self._config_seq
        store_relaxed(&self._config_seq, seq + 1)
        fence_release()
        memcpy(&self._published, c, sizeof(Config))
        store_release(&self._config_seq, seq + 2)

    def start(self):
        """Start the thread; the first packet leaves at once, then every ptime."""
        cdef pthread_attr_t attr
        cdef sigset_t old
        cdef int rc
        if self._started:
            raise RuntimeError("the media loop is already started")
        if load_int(&self._stop):
            raise RuntimeError("a stopped media loop cannot be restarted")
        self._deadline = clock_ns(CLOCK_MONOTONIC)
        self._last_rx_ns = self._deadline  # the media timeout counts from the start
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 128 * 1024)
        block_signals(&old)
        rc = pthread_create(&self._thread, &attr, _thread_entry, <void*>self)
        restore_signals(&old)
        pthread_attr_destroy(&attr)
        if rc != 0:
            raise OSError(rc, f"pthread_create failed: {os.strerror(rc)}")
        self._started = True

    def stop(self, bint wait=True):
        """Stop the thread (it notices within one ptime) and, with ``wait``, wait for it.

        Without ``wait`` the caller goes on at once; a later ``stop()`` (or the
        object's end) joins the thread. Idempotent."""
        store_int(&self._stop, 1)
        if wait and self._started:
            with nogil:
                pthread_join(self._thread, NULL)
            self._started = False

    # --- app audio in -----------------------------------------------------------

    def write_playback(self, pcm):
        """Queue int16 PCM (8 kHz) to send; returns how many samples fitted."""
        cdef const uint8_t[::1] view = pcm
        cdef uint64_t n = view.shape[0]
        if n & 1:
            raise ValueError(f"pcm has {n} bytes: 16-bit PCM needs an even count")
        if n == 0:
            return 0
        return _pcm_ring_write(&self._playback, <const int16_t*>&view[0], n // 2)

    def write_tones(self, pcm):
        """Queue in-band DTMF PCM; it is sent ahead of playback. Returns samples accepted."""
        cdef const uint8_t[::1] view = pcm
        cdef uint64_t n = view.shape[0]
        if n & 1:
            raise ValueError(f"pcm has {n} bytes: 16-bit PCM needs an even count")
        if n == 0:
            return 0
        return _pcm_ring_write(&self._tones, <const int16_t*>&view[0], n // 2)

    @property
    def playback_queued(self):
        """Samples queued for playback and not yet sent."""
        return load_acquire(&self._playback.head) - load_acquire(&self._playback.tail)

    @property
    def playback_space(self):
        return _PLAYBACK_SAMPLES - self.playback_queued

    @property
    def tones_queued(self):
        return load_acquire(&self._tones.head) - load_acquire(&self._tones.tail)

    def want_playback_low(self, bint flag):
        """Ask for one PLAYBACK_LOW event when the queue falls below half a second."""
        store_int(&self._want_low, 1 if flag else 0)

    def flush(self, *, bint playback=False, bint tones=False, bint script=False):
        """Drop what is queued (the thread discards it at its next tick)."""
        cdef Config c
        memcpy(&c, &self._published, sizeof(Config))
        if playback:
            c.flush_playback += 1
        if tones:
            c.flush_tones += 1
        if script:
            c.flush_script += 1
        self._publish(&c)

    def queue_script(self, entries):
        """Queue RFC 4733 ticks: (payload bytes or None for an audio tick, marker, start).

        Returns how many were accepted; the last accepted one raises
        SCRIPT_DRAINED when sent.
        """
        cdef TickRing* r = self._script
        cdef uint64_t head = r.head
        cdef uint64_t tail = load_acquire(&r.tail)
        cdef uint64_t accepted = 0
        cdef Tick* t
        entries = list(entries)
        for payload, marker, start in entries:
            if head - tail >= _TICK_ENTRIES:
                break
            t = &r.entries[head % _TICK_ENTRIES]
            memset(t, 0, sizeof(Tick))
            if payload is not None:
                if len(payload) != 4:
                    raise ValueError(f"a telephone-event payload is 4 bytes, got {len(payload)}")
                t.kind = 1
                memcpy(t.payload, <const char*>payload, 4)
            t.marker = 1 if marker else 0
            t.start = 1 if start else 0
            head += 1
            accepted += 1
        if accepted:
            r.entries[(head - 1) % _TICK_ENTRIES].last = 1
            store_release(&r.head, head)
        return accepted

    @property
    def script_queued(self):
        return load_acquire(&self._script.head) - load_acquire(&self._script.tail)

    # --- received audio and events out -------------------------------------------

    def deliver_audio(self, bint flag):
        """Keep received frames for ``read_frames`` (off until asked: nobody reads them)."""
        store_int(&self._deliver, 1 if flag else 0)

    def want_audio(self, bint flag):
        """Ask for an AUDIO event (and an eventfd wake-up) when the next frame arrives.

        Implies ``deliver_audio(True)``.
        """
        if flag:
            store_int(&self._deliver, 1)
        store_int(&self._want_audio, 1 if flag else 0)

    def read_frames(self, int max_frames=_RX_FRAMES):
        """The received frames not yet read, oldest first: a list of (kind, int16 bytes).

        If the app fell more than the ring behind, the oldest frames were
        overwritten; they are counted in ``frames_dropped``.
        """
        cdef uint64_t written = load_acquire(&self._frames_written)
        cdef uint64_t index
        cdef Frame* slot
        cdef uint64_t expect
        cdef int32_t kind, samples
        out = []
        if written - self._frames_read >= _RX_FRAMES:
            self.frames_dropped += written - (_RX_FRAMES - 1) - self._frames_read
            self._frames_read = written - (_RX_FRAMES - 1)
        while self._frames_read < written and len(out) < max_frames:
            index = self._frames_read
            slot = &self._frames[index % _RX_FRAMES]
            expect = 2 * (index + 1)
            if load_acquire(&slot.seq) != expect:
                self.frames_dropped += 1
                self._frames_read += 1
                continue
            kind = slot.kind
            samples = slot.samples
            data = PyBytes_FromStringAndSize(<const char*>slot.pcm, samples * 2)
            fence_acquire()
            if load_relaxed(&slot.seq) != expect:
                self.frames_dropped += 1
                self._frames_read += 1
                continue
            out.append((kind, data))
            self._frames_read += 1
        return out

    @property
    def frames_available(self):
        return load_acquire(&self._frames_written) - self._frames_read

    def read_events(self):
        """Clear the eventfd and return the pending events: (kind, a, b, c, at_ns)."""
        cdef uint64_t value
        cdef EventRing* r = self._events
        cdef uint64_t head, tail
        cdef Event* e
        read(self._event_fd, &value, 8)
        head = load_acquire(&r.head)
        tail = r.tail
        out = []
        while tail < head:
            e = &r.entries[tail % _EVENTS]
            out.append((e.kind, e.a, e.b, e.c, e.at_ns))
            tail += 1
        store_release(&r.tail, tail)
        return out

    def read_packets(self):
        """Packets for Python: (kind, data, (host, port), arrival CLOCK_REALTIME ns)."""
        cdef PacketRing* r = self._packets
        cdef uint64_t head = load_acquire(&r.head)
        cdef uint64_t tail = r.tail
        cdef Packet* p
        out = []
        while tail < head:
            p = &r.entries[tail % _PACKETS]
            out.append((p.kind, PyBytes_FromStringAndSize(<const char*>p.data, p.length),
                        _address_of(&p.source), p.arrival_ns))
            tail += 1
        store_release(&r.tail, tail)
        return out

    # --- statistics --------------------------------------------------------------

    def counters(self):
        """A snapshot of the thread's counters (each read atomically)."""
        return {
            "ticks": load_i64(&self._ticks),
            "ticks_skipped": load_i64(&self._ticks_skipped),
            "packets_sent": load_i64(&self._packets_sent),
            "octets_sent": load_i64(&self._octets_sent),
            "send_errors": load_i64(&self._send_errors),
            "srtp_protect_failures": load_i64(&self._srtp_protect_failures),
            "srtp_auth_failures": load_i64(&self._srtp_auth_failures),
            "srtp_replays": load_i64(&self._srtp_replays),
            "packets_received": load_i64(&self._packets_received),
            "octets_received": load_i64(&self._octets_received),
            "malformed": load_i64(&self._malformed),
            "strangers": load_i64(&self._strangers),
            "probation_dropped": load_i64(&self._probation_dropped),
            "unknown_payload": load_i64(&self._unknown_payload),
            "comfort_noise_received": load_i64(&self._comfort_noise_received),
            "telephone_events_received": load_i64(&self._events_received),
            "latches": load_i64(&self._latches),
            "events_overflow": load_i64(&self._events.overflow),
            "packets_overflow": load_i64(&self._packets.overflow),
            "frames_dropped": self.frames_dropped,
            "thread_cpu_ns": load_i64(&self._thread_cpu_ns),
            "lateness_max_ns": load_i64(&self._lateness_max_ns),
            "lateness_sum_ns": load_i64(&self._lateness_sum_ns),
            "last_rx_ns": load_i64(&self._last_rx_ns),
            "realtime": int(self._realtime_priority > 0 and self._started
                            and load_i64(&self._realtime_error) == 0),
            "realtime_error": load_i64(&self._realtime_error),
        }

    def sender_state(self):
        """(packets sent, octets sent, RTP timestamp, CLOCK_MONOTONIC ns of that timestamp)."""
        return (load_i64(&self._packets_sent), load_i64(&self._octets_sent),
                load_i64(&self._tick_rtp_ts), load_i64(&self._tick_ns))

    def reception_state(self):
        """(ssrc, received, expected, extended max, jitter, duplicates), refreshed every tick."""
        cdef int64_t seq1, seq2
        cdef int64_t snap[6]
        while True:
            seq1 = load_i64(&self._stats_snapshot_seq)
            fence_acquire()
            memcpy(snap, self._snap, sizeof(snap))
            fence_acquire()
            seq2 = load_i64(&self._stats_snapshot_seq)
            if seq1 == seq2 and not (seq1 & 1):
                break
        cdef double jitter
        memcpy(&jitter, &snap[4], sizeof(double))
        return (snap[0], snap[1], snap[2], snap[3], jitter, snap[5])

    def lateness_histogram(self):
        """Send lateness: (upper bin edges in µs, counts); the last bin is open-ended."""
        edges = [10 * (i + 1) for i in range(_HIST_FINE)]
        edges += [5000 + 1000 * (i + 1) for i in range(_HIST_COARSE)]
        edges.append(-1)
        return edges, [self._histogram[i] for i in range(_HIST)]

    # --- the thread -------------------------------------------------------------

    cdef void _apply_config(self) noexcept nogil:
        cdef uint64_t s1 = load_acquire(&self._config_seq)
        cdef uint64_t s2
        cdef Config c
        if s1 == self._cfg_seq_applied or (s1 & 1):
            return
        memcpy(&c, &self._published, sizeof(Config))
        fence_acquire()
        s2 = load_relaxed(&self._config_seq)
        if s1 != s2:
            return  # being written; try again next tick
        self._cfg_seq_applied = s1
        if c.remote_generation != self._remote_generation:
            self._remote_generation = c.remote_generation
            if self._latched:
                memcpy(&self._previous, &self._latch, sizeof(sockaddr_storage))
                self._previous_until_ns = (clock_ns(CLOCK_MONOTONIC)
                                           + MOVE_GRACE_NS)
            elif self._cfg.has_remote:
                memcpy(&self._previous, &self._cfg.remote, sizeof(sockaddr_storage))
                self._previous_until_ns = (clock_ns(CLOCK_MONOTONIC)
                                           + MOVE_GRACE_NS)
            self._latched = False
            self._learning_until_ns = 0
            self._candidate_count = 0
        if c.samples_per_tick != self._samples:
            self._samples = c.samples_per_tick
            self._period_ns = <int64_t>self._samples * 125000
            self.jitter_buffer.set_frame(self._samples)
        if c.flush_playback != self._flush_playback_seen:
            self._flush_playback_seen = c.flush_playback
            store_release(&self._playback.tail, load_acquire(&self._playback.head))
        if c.flush_tones != self._flush_tones_seen:
            self._flush_tones_seen = c.flush_tones
            store_release(&self._tones.tail, load_acquire(&self._tones.head))
        if c.flush_script != self._flush_script_seen:
            self._flush_script_seen = c.flush_script
            store_release(&self._script.tail, load_acquire(&self._script.head))
        if c.receive and not self._cfg.receive:
            self._last_rx_ns = clock_ns(CLOCK_MONOTONIC)  # the timeout restarts
            self._timed_out = False
            self.jitter_buffer.reset()  # its playout clock stood still meanwhile
        memcpy(&self._cfg, &c, sizeof(Config))
        store_release(&self._cfg_seq_done, s1)  # from now on the old contexts are unused

    cdef void _event(self, int32_t kind, int32_t a, int64_t b, int64_t c,
                     int64_t at_ns) noexcept nogil:
        cdef EventRing* r = self._events
        cdef uint64_t head = r.head
        cdef Event* e
        if head - load_acquire(&r.tail) >= _EVENTS:
            store_i64(&r.overflow, r.overflow + 1)
            return
        e = &r.entries[head % _EVENTS]
        e.kind = kind
        e.a = a
        e.b = b
        e.c = c
        e.at_ns = at_ns
        store_release(&r.head, head + 1)
        self._signal_pending = True

    cdef void _packet_out(self, int32_t kind, const uint8_t* data, int length,
                          const sockaddr_storage* source, int64_t arrival_ns) noexcept nogil:
        cdef PacketRing* r = self._packets
        cdef uint64_t head = r.head
        cdef Packet* p
        if head - load_acquire(&r.tail) >= _PACKETS or length > 1536:
            store_i64(&r.overflow, r.overflow + 1)
            return
        p = &r.entries[head % _PACKETS]
        p.kind = kind
        p.length = length
        p.arrival_ns = arrival_ns
        memcpy(&p.source, source, sizeof(sockaddr_storage))
        if length:
            memcpy(p.data, data, length)
        store_release(&r.head, head + 1)
        self._event(EV_PACKET, kind, length, 0, arrival_ns)

    cdef int _next_audio(self, int16_t* pcm, int n, int64_t now) noexcept nogil:
        """This tick's app audio: tones, else playback; returns how many samples (0..n)."""
        cdef uint64_t got = 0
        cdef uint64_t queued
        if load_acquire(&self._tones.head) != self._tones.tail:
            got = _pcm_ring_read(&self._tones, pcm, n)
            self._tones_active = True
            if load_acquire(&self._tones.head) == self._tones.tail:
                self._tones_active = False
                self._event(EV_TONES_DRAINED, 0, 0, 0, now)
        elif load_acquire(&self._playback.head) != self._playback.tail:
            got = _pcm_ring_read(&self._playback, pcm, n)
            self._playback_active = True
            queued = load_acquire(&self._playback.head) - self._playback.tail
            if queued == 0:
                self._playback_active = False
                self._event(EV_PLAYBACK_DRAINED, 0, 0, 0, now)
            elif queued < 4000 and load_int(&self._want_low) and exchange_int(&self._want_low, 0):
                self._event(EV_PLAYBACK_LOW, 0, <int64_t>queued, 0, now)
        return <int>got

    cdef void _send(self, int64_t now) noexcept nogil:
        cdef TickRing* script = self._script
        cdef Tick* tick = NULL
        cdef int n = self._samples
        cdef int i, payload_len, pt, got
        cdef bint marker = False
        cdef uint32_t ts = self._ts
        cdef uint8_t* out = self._out
        cdef const sockaddr_storage* dest
        cdef ssize_t sent
        cdef int length
        if load_acquire(&script.head) != script.tail:
            tick = &script.entries[script.tail % _TICK_ENTRIES]
            if tick.kind == 1 and self._cfg.te_send_pt < 0:
                tick.kind = 0  # telephone-event no longer negotiated: send audio
        if tick != NULL and tick.kind == 1:
            if tick.start:
                self._event_ts = self._ts
            ts = self._event_ts
            marker = tick.marker != 0
            pt = self._cfg.te_send_pt
            memcpy(out + 12, tick.payload, 4)
            payload_len = 4
        else:
            got = self._next_audio(self._pcm, n, now)
            pt = self._cfg.payload_type
            if pt == 8:
                for i in range(got):
                    out[12 + i] = ALAW_FROM_LINEAR[(<uint16_t>self._pcm[i]) >> 3]
            else:
                for i in range(got):
                    out[12 + i] = ULAW_FROM_LINEAR[(<uint16_t>self._pcm[i]) >> 2]
            if got < n:
                # comfort noise, already G.711-encoded: a random stretch of the table
                self._noise_state ^= self._noise_state << 13
                self._noise_state ^= self._noise_state >> 7
                self._noise_state ^= self._noise_state << 17
                memcpy(out + 12 + got,
                       (self._cn_alaw if pt == 8 else self._cn_ulaw)
                       + self._noise_state % <uint64_t>(_CN_SAMPLES - n), n - got)
            payload_len = n
        if tick != NULL:
            store_release(&script.tail, script.tail + 1)
            if tick.last:
                self._event(EV_SCRIPT_DRAINED, 0, 0, 0, now)
        out[0] = 0x80
        out[1] = <uint8_t>((0x80 if marker else 0) | pt)
        out[2] = <uint8_t>(self._seq >> 8)
        out[3] = <uint8_t>(self._seq & 0xFF)
        out[4] = <uint8_t>(ts >> 24)
        out[5] = <uint8_t>(ts >> 16)
        out[6] = <uint8_t>(ts >> 8)
        out[7] = <uint8_t>ts
        out[8] = <uint8_t>(self._ssrc >> 24)
        out[9] = <uint8_t>(self._ssrc >> 16)
        out[10] = <uint8_t>(self._ssrc >> 8)
        out[11] = <uint8_t>self._ssrc
        length = 12 + payload_len
        self._seq = <uint16_t>(self._seq + 1)
        if self._cfg.srtp:
            # never plain when SRTP was negotiated: no key yet, or a failure, sends nothing
            if (self._cfg.srtp_out == NULL
                    or self._cfg.srtp_protect(self._cfg.srtp_out, out, &length) != 0):
                store_i64(&self._srtp_protect_failures, self._srtp_protect_failures + 1)
                return
        dest = &self._latch if self._latched else &self._cfg.remote
        sent = sendto(self._fd, out, length, MSG_DONTWAIT, <const sockaddr*>dest,
                      _sockaddr_len(dest))
        if sent < 0:
            store_i64(&self._send_errors, self._send_errors + 1)
        else:
            store_i64(&self._packets_sent, self._packets_sent + 1)
            store_i64(&self._octets_sent, self._octets_sent + payload_len)

    cdef bint _accept_source(self, const sockaddr_storage* src, RtpHeader* h,
                             int64_t now) noexcept nogil:
        """Symmetric RTP, strict source (see the module docstring): whether to take a
        packet from ``src``."""
        cdef bint from_sdp_address
        if not self._cfg.symmetric:
            return True
        from_sdp_address = (self._cfg.has_remote
                            and same_address(src, 0, &self._cfg.remote, 0))
        if self._latched:
            if same_address(src, 0, &self._latch, 0):
                return True
            if now < self._previous_until_ns and same_address(src, 0, &self._previous, 0):
                return True
            if from_sdp_address and now < self._learning_until_ns:
                self._latch_to(src)  # the learning window: signalling beats a guess
                self._learning_until_ns = 0
                return True
            store_i64(&self._strangers, self._strangers + 1)
            return False
        if from_sdp_address:
            self._latch_to(src)
            self._learning_until_ns = 0  # nothing better to learn
            return True
        if now < self._previous_until_ns and same_address(src, 0, &self._previous, 0):
            return True
        # probation for a new source
        if (self._candidate_count > 0 and same_address(src, 0, &self._candidate, 0)
                and h.ssrc == self._candidate_ssrc and h.sequence == self._candidate_next):
            self._candidate_count += 1
        else:
            memcpy(&self._candidate, src, sizeof(sockaddr_storage))
            self._candidate_ssrc = h.ssrc
            self._candidate_count = 1
        self._candidate_next = <uint16_t>(h.sequence + 1)
        if self._candidate_count >= _PROBATION:
            self._latch_to(src)
            self._learning_until_ns = now + LEARNING_WINDOW_NS
            return True
        store_i64(&self._probation_dropped, self._probation_dropped + 1)
        return False

    cdef void _latch_to(self, const sockaddr_storage* src) noexcept nogil:
        memcpy(&self._latch, src, sizeof(sockaddr_storage))
        self._latched = True
        self._candidate_count = 0
        store_i64(&self._latches, self._latches + 1)
        self._packet_out(_PACKET_LATCHED, NULL, 0, src, clock_ns(CLOCK_REALTIME))

    cdef bint _negotiated(self, int pt) noexcept nogil:
        return ((pt == 0 and (self._cfg.accept_mask & 1))
                or (pt == 8 and (self._cfg.accept_mask & 2))
                or (pt == self._cfg.te_receive_pt and pt >= 0)
                or (pt == self._cfg.comfort_noise_pt and pt >= 0))

    cdef void _receive(self, int fd, int64_t now) noexcept nogil:
        cdef int _round, i, n, length, pt, result
        cdef rx_batch* rx = self._rx
        cdef const uint8_t* data
        cdef RtpHeader h
        cdef int64_t arrival
        cdef int64_t realtime_offset = 0
        cdef uint32_t payload
        for _round in range(4):
            n = recv_batch(fd, rx)
            if n <= 0:
                return
            if realtime_offset == 0:
                # kernel arrival times are CLOCK_REALTIME; the jitter buffer runs on MONOTONIC
                realtime_offset = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC)
            for i in range(n):
                data = rx.data[i]
                length = rx.msgs[i].msg_len
                arrival = rx.arrival_ns[i] - realtime_offset if rx.arrival_ns[i] else now
                if length >= 2 and 192 <= data[1] <= 223:
                    # RTCP: multiplexed on the RTP port, or from the RTCP socket
                    if length <= MAX_DATAGRAM:
                        self._packet_out(_PACKET_RTCP, data, length, &rx.source[i],
                                         rx.arrival_ns[i] if rx.arrival_ns[i]
                                         else now + realtime_offset)
                    continue
                if fd != self._fd:
                    store_i64(&self._malformed, self._malformed + 1)
                    continue
                if self._cfg.srtp:
                    # authenticated before anything else: a packet without the far end's
                    # key cannot latch, count, or reach the jitter buffer
                    if self._cfg.srtp_in == NULL or length < 12:
                        store_i64(&self._srtp_auth_failures, self._srtp_auth_failures + 1)
                        continue
                    result = self._cfg.srtp_unprotect(self._cfg.srtp_in, rx.data[i], &length)
                    if result != 0:
                        if result == _SRTP_REPLAY_FAIL or result == _SRTP_REPLAY_OLD:
                            store_i64(&self._srtp_replays, self._srtp_replays + 1)
                        else:
                            store_i64(&self._srtp_auth_failures, self._srtp_auth_failures + 1)
                        continue
                if _parse_rtp(data, length, &h) != RTP_OK:
                    store_i64(&self._malformed, self._malformed + 1)
                    continue
                pt = h.payload_type
                if not self._negotiated(pt):
                    store_i64(&self._unknown_payload, self._unknown_payload + 1)
                    continue
                if not self._accept_source(&rx.source[i], &h, now):
                    continue
                # RFC 4733 events keep the event's start as timestamp: they count for
                # loss, but their transit is no measure of the network's jitter.
                result = _stats_update(&self._stats, h.ssrc, h.sequence, h.timestamp, arrival,
                                       pt != self._cfg.te_receive_pt)
                if result == -1:
                    continue  # a duplicate
                store_i64(&self._packets_received, self._packets_received + 1)
                store_i64(&self._octets_received, self._octets_received + h.payload_length)
                store_i64(&self._last_rx_ns, now)
                if self._timed_out:
                    self._timed_out = False
                    self._event(EV_MEDIA_RESUMED, 0, 0, 0, now)
                if not self._cfg.receive:
                    continue
                if pt == self._cfg.te_receive_pt:
                    store_i64(&self._events_received, self._events_received + 1)
                    if h.payload_length >= 4:
                        payload = ((<uint32_t>data[h.payload_offset] << 24)
                                   | (<uint32_t>data[h.payload_offset + 1] << 16)
                                   | (<uint32_t>data[h.payload_offset + 2] << 8)
                                   | data[h.payload_offset + 3])
                        self._event(EV_TELEPHONE_EVENT, pt | (0x100 if h.marker else 0),
                                    h.timestamp, (<int64_t>h.ssrc << 32) | payload, arrival)
                elif pt == self._cfg.comfort_noise_pt:
                    store_i64(&self._comfort_noise_received, self._comfort_noise_received + 1)
                else:
                    self.jitter_buffer.put(data + h.payload_offset, h.payload_length,
                                           h.timestamp, h.ssrc, h.marker, pt, arrival)
            if n < BATCH:
                return

    cdef void _play_out(self, int64_t now) noexcept nogil:
        cdef uint64_t index = self._frames_written
        cdef Frame* slot = &self._frames[index % _RX_FRAMES]
        cdef int16_t* pcm = self._scratch
        cdef int kind, event, ms
        cdef bint deliver = load_int(&self._deliver) != 0
        if deliver:
            store_relaxed(&slot.seq, 2 * index + 1)
            fence_release()
            pcm = slot.pcm
        kind = self.jitter_buffer.get(pcm, now)
        if deliver:
            slot.kind = kind
            slot.samples = self._samples
            store_release(&slot.seq, 2 * (index + 1))
            store_release(&self._frames_written, index + 1)
        if self._cfg.inband_detect and (kind == JB_AUDIO or kind == JB_PARTIAL):
            self.dtmf_detector.feed_samples(pcm, self._samples)
            while self.dtmf_detector.pop_digit(&event, &ms):
                self._event(EV_INBAND_DIGIT, event, ms, 0, now)
        if deliver and load_int(&self._want_audio) and exchange_int(&self._want_audio, 0):
            self._event(EV_AUDIO, 0, <int64_t>index, 0, now)

    cdef void _publish_stats(self) noexcept nogil:
        cdef RecvStats* s = &self._stats
        cdef int64_t extended = <int64_t>s.cycles + s.max_seq
        cdef int64_t seq = self._stats_snapshot_seq
        store_i64(&self._stats_snapshot_seq, seq + 1)
        fence_release()
        self._snap[0] = s.ssrc
        self._snap[1] = s.received
        self._snap[2] = extended - s.base_seq + 1 if s.received else 0
        self._snap[3] = extended
        memcpy(&self._snap[4], &s.jitter, sizeof(double))
        self._snap[5] = s.duplicates
        store_i64(&self._stats_snapshot_seq, seq + 2)

    cdef void _run(self) noexcept nogil:
        cdef int64_t now, late, missed
        cdef uint64_t one = 1
        cdef int bin_
        cdef sched_param param
        if self._realtime_priority > 0:
            param.sched_priority = self._realtime_priority
            store_i64(&self._realtime_error,
                      pthread_setschedparam(pthread_self(), SCHED_FIFO, &param))
        while True:
            sleep_until(self._deadline)
            if load_int(&self._stop):
                break
            now = clock_ns(CLOCK_MONOTONIC)
            self._apply_config()
            late = now - self._deadline
            if late > _SKIP_AFTER_TICKS * self._period_ns:
                # suspended (stopped process, overloaded host): skip, do not burst
                missed = late // self._period_ns
                self._deadline += missed * self._period_ns
                self._ts += <uint32_t>(missed * self._samples)
                store_i64(&self._ticks_skipped, self._ticks_skipped + missed)
                late = now - self._deadline
                self.jitter_buffer.reset()
            if self._cfg.send and self._cfg.has_remote and (self._cfg.confirmed
                                                            or self._latched):
                now = clock_ns(CLOCK_MONOTONIC)
                late = now - self._deadline
                self._send(now)
            bin_ = <int>(late // 10000) if late < 5000000 else (
                _HIST_FINE + <int>((late - 5000000) // 1000000))
            if bin_ < 0:
                bin_ = 0
            if bin_ >= _HIST:
                bin_ = _HIST - 1
            self._histogram[bin_] += 1
            if late > self._lateness_max_ns:
                store_i64(&self._lateness_max_ns, late)
            store_i64(&self._lateness_sum_ns, self._lateness_sum_ns + late)
            store_i64(&self._tick_rtp_ts, self._ts)
            store_i64(&self._tick_ns, self._deadline)
            self._ts += <uint32_t>self._samples
            self._receive(self._fd, now)
            if self._rtcp_fd >= 0 and self._ticks % _RTCP_POLL_TICKS == 0:
                self._receive(self._rtcp_fd, now)
            if self._cfg.receive:
                self._play_out(now)
                if (self._cfg.timeout_ns > 0 and not self._timed_out
                        and now - self._last_rx_ns > self._cfg.timeout_ns):
                    self._timed_out = True
                    self._event(EV_MEDIA_TIMEOUT, 0, now - self._last_rx_ns, 0, now)
            self._publish_stats()
            store_i64(&self._ticks, self._ticks + 1)
            if self._ticks % 10 == 0:
                store_i64(&self._thread_cpu_ns, clock_ns(CLOCK_THREAD_CPUTIME_ID))
            if self._signal_pending:
                self._signal_pending = False
                write(self._event_fd, &one, 8)
            self._deadline += self._period_ns
        store_i64(&self._thread_cpu_ns, clock_ns(CLOCK_THREAD_CPUTIME_ID))
