"""Call quality: the ITU-T G.107 E-model R-factor, simplified for G.711, and the MOS it maps to.

R = R0 - Id - Ie,eff with the G.107 default R0 = 93.2 (no echo, no
background noise terms), the delay impairment Id in the Cole-Rosenbluth
approximation of G.107's curve, and the effective equipment impairment
Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl) with G.113's values
for G.711 (Ie = 0; Bpl = 25.1 with packet-loss concealment, as our jitter
buffer does). MOS follows from R by G.107 Annex B.
"""

from __future__ import annotations

__all__ = ["estimate_mos", "mos_from_r", "r_factor"]

R0 = 93.2
IE_G711 = 0.0
BPL_G711_PLC = 25.1
#: Added to the network delay for G.711 at 20 ms: packetisation plus a lookahead-free codec.
CODEC_DELAY_MS = 20.0


def r_factor(
    loss_fraction: float,
    one_way_delay_ms: float,
    *,
    burst_ratio: float = 1.0,
    ie: float = IE_G711,
    bpl: float = BPL_G711_PLC,
) -> float:
    """The transmission rating R (0-100) for a loss fraction (0-1) and mouth-to-ear delay."""
    if not 0.0 <= loss_fraction <= 1.0:
        raise ValueError(f"loss fraction must be within 0..1, got {loss_fraction}")
    d = max(0.0, one_way_delay_ms)
    delay_impairment = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ppl = 100.0 * loss_fraction
    ie_eff = ie + (95.0 - ie) * ppl / (ppl / max(burst_ratio, 1.0) + bpl)
    return max(0.0, min(100.0, R0 - delay_impairment - ie_eff))


def mos_from_r(r: float) -> float:
    """G.107 Annex B: R -> estimated MOS (1.0 to 4.5)."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def estimate_mos(
    *,
    packets_expected: int,
    packets_lost: int,
    rtt_ms: float | None,
    jitter_buffer_ms: float = 40.0,
) -> float:
    """MOS for a call from its media statistics.

    ``packets_lost`` should include the packets that arrived too late for
    the jitter buffer (they are lost to the listener). The one-way delay is
    half the RTCP round trip (0 when none was measured) plus the jitter
    buffer and codec delay.
    """
    loss = packets_lost / packets_expected if packets_expected > 0 else 0.0
    loss = max(0.0, min(1.0, loss))
    delay = (rtt_ms or 0.0) / 2.0 + jitter_buffer_ms + CODEC_DELAY_MS
    return round(mos_from_r(r_factor(loss, delay)), 2)
