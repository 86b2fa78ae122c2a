"""``ivr``: a small demo menu. A prompt tone, up to four digits (or # to finish), each
digit read back as its DTMF tone, a goodbye tone, then hang up. ``ivr:FILE`` plays a
WAV prompt instead of the tone."""

from __future__ import annotations

from gosipd import _dsp
from gosipd.call import Call

PROMPT = "440+480:300,0:100,440+480:300"
GOODBYE = "480+620:250,0:250,480+620:250"


async def run(call: Call) -> None:
    if call.app_arg:
        await call.play(call.app_arg)
    else:
        await call.play_tones(PROMPT)
    digits = await call.collect_dtmf(max_digits=4, timeout=10, terminator="#")
    for digit in digits:
        low, high = _dsp.DTMF_FREQUENCIES[digit]
        await call.play_tones(f"{low}+{high}:150,0:100")
    await call.play_tones(GOODBYE)
