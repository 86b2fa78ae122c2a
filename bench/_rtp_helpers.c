/* Bench helpers in C, compiled by bench/media.py at run time (cc -O2):
 *
 *   rtp_helpers reflect PORT [PRIORITY]
 *       echo every datagram received on 127.0.0.1:PORT back to its source,
 *       in batches (recvmmsg/sendmmsg), with a 16 MiB receive buffer and, if
 *       PRIORITY > 0, under SCHED_FIFO; until SIGTERM.
 *
 *   rtp_helpers pace PORT T0 T1
 *       the floor a paced RTP call costs on this host: every 20 ms on an
 *       absolute CLOCK_MONOTONIC schedule, send one 172-byte packet to PORT
 *       and drain the socket; print "ticks cpu_ns" for the window [T0, T1]
 *       (CLOCK_MONOTONIC seconds). No codec, no jitter buffer, no Python.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int udp_socket(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    int size = 16 << 20;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bind");
        exit(1);
    }
    return fd;
}

static void reflect(int port, int priority) {
    static unsigned char data[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in from[BATCH];
    int fd = udp_socket(port), i, n;
    if (priority > 0) {
        struct sched_param p = {.sched_priority = priority};
        if (sched_setscheduler(0, SCHED_FIFO, &p) != 0)
            perror("sched_setscheduler");
    }
    for (;;) {
        for (i = 0; i < BATCH; i++) {
            iov[i].iov_base = data[i];
            iov[i].iov_len = sizeof data[i];
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        for (i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        sendmmsg(fd, msgs, n, 0);
    }
}

static int pace(int port, double t0, double t1) {
    int fd = udp_socket(0);
    struct sockaddr_in to;
    unsigned char packet[172] = {0x80}, in[2048];
    int64_t deadline = now_ns(CLOCK_MONOTONIC);
    int64_t start = (int64_t)(t0 * 1e9), end = (int64_t)(t1 * 1e9);
    int64_t cpu0 = -1, ticks = 0;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(port);
    for (;;) {
        struct timespec ts;
        deadline += 20000000;
        ts.tv_sec = deadline / 1000000000LL;
        ts.tv_nsec = deadline % 1000000000LL;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (cpu0 < 0 && deadline >= start) {
            cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
            ticks = 0;
        }
        if (deadline >= end)
            break;
        sendto(fd, packet, sizeof packet, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
        while (recv(fd, in, sizeof in, MSG_DONTWAIT) > 0) {
        }
        ticks++;
    }
    printf("%lld %lld\n", (long long)ticks, (long long)(now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "reflect") == 0) {
        reflect(atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 0);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "pace") == 0)
        return pace(atoi(argv[2]), atof(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: %s reflect PORT [PRIORITY] | pace PORT T0 T1\n", argv[0]);
    return 2;
}
