/* Small C helpers for gosipd/_media.pyx: atomics, and the socket calls whose
 * macros (CMSG_*) Cython cannot express. Everything else is in the .pyx. */
#ifndef GOSIPD_MEDIA_H
#define GOSIPD_MEDIA_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- atomics (GCC/Clang builtins; C11 memory model) ---------------------- */

static inline uint64_t gosipd_load_acquire(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint64_t gosipd_load_relaxed(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void gosipd_store_release(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void gosipd_store_relaxed(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline int64_t gosipd_load_i64(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void gosipd_store_i64(int64_t *p, int64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline int gosipd_exchange_int(int *p, int v) {
    return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
}
static inline int gosipd_load_int(const int *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void gosipd_store_int(int *p, int v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void gosipd_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void gosipd_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

/* --- receiving a batch with kernel arrival times ------------------------- */

#define GOSIPD_BATCH 8
#define GOSIPD_MAX_DATAGRAM 1536
#define GOSIPD_CONTROL 64

typedef struct {
    struct mmsghdr msgs[GOSIPD_BATCH];
    struct iovec iov[GOSIPD_BATCH];
    struct sockaddr_storage source[GOSIPD_BATCH];
    char control[GOSIPD_BATCH][GOSIPD_CONTROL];
    unsigned char data[GOSIPD_BATCH][GOSIPD_MAX_DATAGRAM];
    int64_t arrival_ns[GOSIPD_BATCH]; /* CLOCK_REALTIME, from SO_TIMESTAMPNS; 0 if absent */
} gosipd_rx_batch;

/* Point each message header at its buffers (once; recv_batch resets the rest). */
static inline void gosipd_rx_init(gosipd_rx_batch *b) {
    int i;
    for (i = 0; i < GOSIPD_BATCH; i++) {
        b->iov[i].iov_base = b->data[i];
        b->iov[i].iov_len = GOSIPD_MAX_DATAGRAM;
        memset(&b->msgs[i].msg_hdr, 0, sizeof(struct msghdr));
        b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->source[i];
        b->msgs[i].msg_hdr.msg_control = b->control[i];
    }
}

/* Receive up to GOSIPD_BATCH datagrams without blocking; returns the count
 * (0 when nothing is waiting, -errno on error). Datagrams longer than
 * GOSIPD_MAX_DATAGRAM are flagged with msg_len = GOSIPD_MAX_DATAGRAM + 1. */
static inline int gosipd_recv_batch(int fd, gosipd_rx_batch *b) {
    int i, n;
    for (i = 0; i < GOSIPD_BATCH; i++) {
        b->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        b->msgs[i].msg_hdr.msg_controllen = GOSIPD_CONTROL;
        b->msgs[i].msg_hdr.msg_flags = 0;
    }
    n = recvmmsg(fd, b->msgs, GOSIPD_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -errno;
    for (i = 0; i < n; i++) {
        struct msghdr *h = &b->msgs[i].msg_hdr;
        struct cmsghdr *c;
        b->arrival_ns[i] = 0;
        if (h->msg_flags & MSG_TRUNC)
            b->msgs[i].msg_len = GOSIPD_MAX_DATAGRAM + 1;
        for (c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof(ts));
                b->arrival_ns[i] = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
            }
        }
    }
    return n;
}

static inline int gosipd_same_address(const struct sockaddr_storage *a, socklen_t alen,
                                      const struct sockaddr_storage *b, socklen_t blen) {
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(struct in6_addr)) == 0;
    }
    (void)alen;
    (void)blen;
    return 0;
}

/* Block every signal in the calling thread (the media thread leaves them to Python). */
static inline void gosipd_block_signals(sigset_t *old) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
}
static inline void gosipd_restore_signals(const sigset_t *old) {
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

static inline int64_t gosipd_clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void gosipd_sleep_until(int64_t deadline_ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ns / 1000000000LL);
    ts.tv_nsec = (long)(deadline_ns % 1000000000LL);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

#endif
