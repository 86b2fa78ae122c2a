"""Sans-I/O RTP and RTCP (RFC 3550, RFC 4733): nothing here reads a clock or touches a socket.

- ``packet``: RTP packets, parse/build, RFC 5761 demultiplexing.
- ``statistics``: RFC 3550 A.1/A.3/A.8 reception statistics of one source.
- ``jitterbuffer``: the adaptive jitter buffer (implemented once, in Cython).
- ``dtmf``: RFC 4733 telephone events, the sender's tick script and the receiver.
- ``rtcp``: compound RTCP packets and one session's report schedule and RTT.
- ``quality``: the G.107 E-model R-factor and MOS.

``gosipd.media`` wires them to the native media loop (``gosipd._media``).
"""
