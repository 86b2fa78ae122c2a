"""DSP budgets: G.711 and mixing against CPython's C audioop, per 20 ms frame and in bulk."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Budget, median_seconds, report

from gosipd import _dsp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def main() -> bool:
    rng = np.random.default_rng(2026)
    frame = rng.integers(-20000, 20000, 160, dtype=np.int16).tobytes()
    other = rng.integers(-20000, 20000, 160, dtype=np.int16).tobytes()
    coded = _dsp.ulaw_encode(frame)
    million = rng.integers(-32768, 32767, 1_000_000, dtype=np.int16).tobytes()
    names = {
        "frame": frame,
        "other": other,
        "coded": coded,
        "million": million,
        "audioop": audioop,
        "dsp": _dsp,
    }

    def pair(stmt: str, ref: str, **kw: int) -> tuple[float, float]:
        # Interleave ours and the reference so drift on a shared machine hits both.
        ours, refs = [], []
        for _ in range(5):
            ours.append(median_seconds(stmt, names, **kw))
            refs.append(median_seconds(ref, names, **kw))
        return float(np.median(ours)), float(np.median(refs))

    budgets = []
    o, r = pair("dsp.ulaw_encode(frame)", "audioop.lin2ulaw(frame, 2)")
    budgets.append(Budget("µ-law encode, 160 samples", o, r, 5.0))
    o, r = pair("dsp.ulaw_decode(coded)", "audioop.ulaw2lin(coded, 2)")
    budgets.append(Budget("µ-law decode, 160 samples", o, r, 1.0))
    o, r = pair("dsp.mix(frame, other)", "audioop.add(frame, other, 2)")
    budgets.append(Budget("mix two frames, 160 samples", o, r, 2.5))
    o, r = pair("dsp.alaw_encode(frame)", "audioop.lin2alaw(frame, 2)")
    # Not one of the budgets (those are µ-law). Ours costs the same per frame as
    # µ-law (one table lookup a sample), but audioop's A-law encoder is ~30% cheaper
    # than its µ-law one, so the same speed is a smaller ratio: 4x is the µ-law bar
    # translated to the same absolute speed.
    budgets.append(Budget("A-law encode, 160 samples", o, r, 4.0))
    o, r = pair("dsp.alaw_decode(coded)", "audioop.alaw2lin(coded, 2)")
    budgets.append(Budget("A-law decode, 160 samples", o, r, 1.0))
    o, r = pair("dsp.ulaw_encode(million)", "audioop.lin2ulaw(million, 2)", number=3, repeat=7)
    budgets.append(Budget("µ-law encode, 1M samples", o, r, 30.0, unit="ms"))
    return report("DSP (median of repeats, per call, incl. the Python call)", "audioop", budgets)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
