"""E-model R-factor and MOS: the anchor points a telephony engineer knows."""

from __future__ import annotations

import pytest

from gosipd.rtp.quality import estimate_mos, mos_from_r, r_factor


def test_perfect_g711_is_r_about_93_and_mos_about_4_4() -> None:
    r = r_factor(0.0, 0.0)
    assert r == pytest.approx(93.2)
    assert mos_from_r(r) == pytest.approx(4.41, abs=0.01)


@pytest.mark.parametrize(
    ("loss", "low", "high"), [(0.01, 4.1, 4.35), (0.05, 3.7, 4.05), (0.2, 2.3, 2.9)]
)
def test_loss_lowers_mos_in_the_known_ranges(loss: float, low: float, high: float) -> None:
    assert low <= mos_from_r(r_factor(loss, 50.0)) <= high


def test_delay_beyond_177ms_costs_much_more() -> None:
    below = r_factor(0.0, 170.0) - r_factor(0.0, 160.0)
    above = r_factor(0.0, 310.0) - r_factor(0.0, 300.0)
    assert above < below < 0


def test_mos_is_bounded() -> None:
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5
    assert estimate_mos(packets_expected=0, packets_lost=0, rtt_ms=None) > 4.2
    assert estimate_mos(packets_expected=100, packets_lost=100, rtt_ms=1000.0) == 1.0
    with pytest.raises(ValueError, match="loss fraction"):
        r_factor(1.5, 0.0)
