"""A short DSP demo: what a caller would hear, through the G.711 path, into a WAV file.

Dial tone, the DTMF digits of a number, ringback, all encoded to µ-law and
decoded again as a call would carry them, over a comfort-noise floor.
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

from gosipd import _dsp

RATE = 8000
FRAME = 160  # 20 ms


def _frames(generator: _dsp.ToneGenerator | _dsp.ComfortNoise, ms: int) -> list[bytes]:
    return [generator.frame(FRAME) for _ in range(ms // 20)]


def render(number: str, seed: int = 1) -> bytes:
    """The demo's audio as 8 kHz int16 PCM, after a µ-law round trip."""
    gap = [bytes(FRAME * 2)] * 3  # 60 ms between digits
    frames = _frames(_dsp.ToneGenerator.call_progress("dial"), 1000)
    for digit in number:
        frames += _frames(_dsp.ToneGenerator.dtmf(digit), 100)
        frames += gap
    frames += _frames(_dsp.ToneGenerator.call_progress("ringback"), 3000)
    noise = _dsp.ComfortNoise(-60.0, seed=seed)
    heard = []
    for frame in frames:
        line = _dsp.ulaw_decode(_dsp.ulaw_encode(frame))
        heard.append(_dsp.mix(line, noise.frame(FRAME)))
    return b"".join(heard)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gosipd.demo", description=__doc__)
    parser.add_argument("--number", default="5551234", help="digits to dial (0-9 * # A-D)")
    parser.add_argument("--output", type=Path, default=Path("out/demo.wav"))
    args = parser.parse_args(argv)
    try:
        audio = render(args.number)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(args.output), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(audio)
    seconds = len(audio) / 2 / RATE
    print(
        f"dialled {args.number}: {seconds:.2f} s of audio through PCMU, "
        f"level {_dsp.rms_dbov(audio):.1f} dBov"
    )
    print(f"wrote {args.output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
