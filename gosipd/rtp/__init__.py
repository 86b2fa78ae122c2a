"""Sans-I/O RTP and RTCP: packets, RFC 4733 events, jitter buffer, statistics (RFC 3550)."""
