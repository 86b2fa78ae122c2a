"""The jitter buffer under loss, reordering, bursts, duplicates, drift and restarts,
driven with simulated arrival and playout times (no sockets, no clock)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from gosipd import _dsp
from gosipd._jitterbuffer import (
    AUDIO,
    COMFORT_NOISE,
    CONCEALED,
    DUPLICATE,
    FRAME_KINDS,
    LATE,
    RESYNC,
    SILENCE,
    JitterBuffer,
)

MS = 1_000_000
TICK = 20 * MS
# Each packet carries one µ-law code repeated; the decoded value says which packet it was.
CODES = list(range(1, 127))
DECODED = np.frombuffer(_dsp.ulaw_decode(bytes(range(256))), dtype=np.int16)
PACKET_OF_VALUE = {int(DECODED[c]): i for i, c in enumerate(CODES)}


@dataclass
class Frame:
    at: int
    kind: str
    packet: int | None  # index (mod len(CODES)) of the packet the frame came from
    depth_ms: float
    target_ms: float
    pcm: bytes = field(repr=False)


@dataclass
class Path:
    """A simulated sender and network feeding one jitter buffer, and the playout ticks."""

    seconds: float = 6.0
    ptime_ms: int = 20
    delay: Callable[[int, random.Random], float] = lambda k, rng: 20.0  # ms, per packet
    lost: Callable[[int, random.Random], bool] = lambda k, rng: False
    duplicate: bool = False
    drift: float = 0.0  # sender clock error: +0.001 sends 0.1% slower than real time
    timestamp0: int = 4000
    ssrc_change_at: int | None = None
    jump_at: int | None = None  # timestamp jumps forward by 10 s, with the marker bit
    silent: tuple[float, float] | None = None  # seconds during which the sender sends nothing
    payload_type: int = 0
    seed: int = 1

    def run(self, jb: JitterBuffer | None = None) -> tuple[JitterBuffer, list[Frame], list[int]]:
        rng = random.Random(self.seed)
        jb = jb or JitterBuffer(160, seed=1)
        samples = self.ptime_ms * 8
        events: list[tuple[int, int, tuple[object, ...]]] = []
        k = 0
        while (send := int(k * self.ptime_ms * MS * (1 + self.drift))) < self.seconds * 1e9:
            if self.silent and self.silent[0] * 1e9 <= send < self.silent[1] * 1e9:
                k += 1
                continue
            ts = self.timestamp0 + k * samples
            if self.jump_at is not None and k >= self.jump_at:
                ts += 80_000
            ssrc = 0x1111 if self.ssrc_change_at is None or k < self.ssrc_change_at else 0x2222
            payload = bytes([CODES[k % len(CODES)]]) * samples
            if self.payload_type == 8:
                payload = _dsp.alaw_encode(_dsp.ulaw_decode(payload))
            if not self.lost(k, rng):
                # a packet leaves when its last sample is captured, then crosses the network
                arrival = send + samples * 125_000 + int(self.delay(k, rng) * MS)
                packet = (payload, ts & 0xFFFFFFFF, ssrc, k == self.jump_at)
                events.append((arrival, 0, packet))
                if self.duplicate:
                    events.append((arrival + MS, 0, packet))
            k += 1
        tick = 3_700_000  # our ticks are not in phase with the sender's
        while tick < (self.seconds + 0.5) * 1e9:
            events.append((tick, 1, ()))
            tick += TICK
        events.sort(key=lambda e: (e[0], e[1]))
        frames: list[Frame] = []
        results: list[int] = []
        for at, what, packet in events:
            if what == 0:
                payload, ts, ssrc, marker = packet
                results.append(
                    jb.push(
                        payload,  # type: ignore[arg-type]
                        timestamp=ts,  # type: ignore[arg-type]
                        ssrc=ssrc,  # type: ignore[arg-type]
                        arrival_ns=at,
                        marker=marker,  # type: ignore[arg-type]
                        payload_type=self.payload_type,
                    )
                )
            else:
                kind, pcm = jb.pop(at)
                first = int(np.frombuffer(pcm, dtype=np.int16)[0])
                index = PACKET_OF_VALUE.get(first) if kind == AUDIO else None
                frames.append(Frame(at, FRAME_KINDS[kind], index, jb.depth_ms, jb.target_ms, pcm))
        return jb, frames, results


def kinds(frames: list[Frame]) -> Counter[str]:
    return Counter(f.kind for f in frames)


def audio_in_order(frames: list[Frame]) -> bool:
    played = [f.packet for f in frames if f.kind == "audio"]
    return all((b - a) % len(CODES) == 1 for a, b in itertools.pairwise(played))


def test_clean_stream_plays_every_packet_once_in_order() -> None:
    jb, frames, _ = Path(seconds=4).run()
    assert kinds(frames)["audio"] == 200
    assert audio_in_order(frames)
    assert jb.frames_concealed == 3  # only after the stream ends
    assert 20 <= jb.target_ms <= 30


def test_playout_starts_after_the_initial_delay_and_before_100ms() -> None:
    _jb, frames, _ = Path(seconds=1).run()
    first_audio = next(i for i, f in enumerate(frames) if f.kind == "audio")
    assert all(f.kind == "silence" for f in frames[:first_audio])
    assert first_audio * 20 <= 100


def test_depth_adapts_to_jitter_and_back() -> None:
    calm_then_rough = Path(
        seconds=14, delay=lambda k, rng: 20 + (rng.uniform(0, 80) if 150 <= k < 350 else 0)
    )
    jb, frames, _ = calm_then_rough.run()
    depth_at = {round(f.at / 1e9): f for f in frames}
    assert jb.late <= 6  # a few while the target grows
    assert audio_in_order([f for f in frames if f.at < 2.5e9]) and jb.frames_dropped >= 1
    rough = [f for f in frames if 4.5e9 < f.at < 7e9]
    calm = [f for f in frames if 13e9 < f.at < 14e9]
    # the buffer grew to ride out 80 ms of jitter, and shrank again once it was gone
    assert min(f.target_ms for f in rough) >= 80 and np.mean([f.depth_ms for f in rough]) > 50
    assert max(f.target_ms for f in calm) <= 30 and np.mean([f.depth_ms for f in calm]) <= 50
    assert all(f.kind == "audio" for f in calm)
    assert depth_at[3].kind == "audio"


@pytest.mark.parametrize("loss", [0.05, 0.2])
def test_each_lost_packet_is_one_concealed_frame_and_playout_never_stalls(loss: float) -> None:
    path = Path(seconds=8, lost=lambda k, rng: k > 5 and rng.random() < loss)
    jb, frames, _ = path.run()
    sent = 400
    received = jb.packets
    audio_at = [i for i, f in enumerate(frames) if f.kind == "audio"]
    during = frames[audio_at[0] : audio_at[-1] + 1]
    assert kinds(during)["audio"] == received
    assert kinds(during)["concealed"] + kinds(during)["comfort_noise"] == sent - received
    # after every concealed frame, the next packet plays at once: no stall
    for before, after in itertools.pairwise(during):
        if before.kind == "concealed" and after.kind == "audio":
            assert after.packet is not None


def test_concealment_repeats_and_fades_then_comfort_noise() -> None:
    path = Path(seconds=3, lost=lambda k, rng: 50 <= k < 60)
    _jb, frames, _ = path.run()
    gap = [f for f in frames if f.kind in ("concealed", "comfort_noise")][:10]
    assert [f.kind for f in gap] == ["concealed"] * 3 + ["comfort_noise"] * 7
    levels = [_dsp.rms_dbov(f.pcm) for f in gap]
    assert levels[0] > levels[1] > levels[2] > levels[3]
    assert -66 < levels[5] < -54  # comfort noise at about -60 dBov


def test_reordered_packets_are_played_in_timestamp_order() -> None:
    # every other pair of packets swaps places on the wire
    path = Path(seconds=4, delay=lambda k, rng: 45.0 if k % 4 == 0 else 20.0)
    jb, frames, _ = path.run()
    assert jb.late == 0
    assert audio_in_order(frames)
    assert kinds(frames)["audio"] == 200


def test_duplicates_are_dropped_and_counted() -> None:
    _jb, frames, results = Path(seconds=2, duplicate=True).run()
    assert results.count(DUPLICATE) == 100
    assert kinds(frames)["audio"] == 100 and audio_in_order(frames)


def test_a_burst_after_an_outage_is_late_then_playout_recovers() -> None:
    # a 300 ms network stall: 15 packets arrive together when it clears
    def stall(k: int, rng: random.Random) -> float:
        return 20.0 + (max(0, 300 - (k - 100) * 20) if 100 <= k < 115 else 0)

    _jb, frames, results = Path(seconds=6, delay=stall).run()
    assert results.count(LATE) >= 5
    after = [f for f in frames if 3e9 < f.at < 6e9]
    assert all(f.kind == "audio" for f in after)
    assert audio_in_order(after)


@pytest.mark.parametrize("drift", [-0.005, -0.001, 0.001, 0.005])
def test_clock_drift_is_absorbed_without_loss(drift: float) -> None:
    jb, frames, _ = Path(seconds=20, drift=drift).run()
    during = [f for f in frames if 0.2e9 < f.at < 19.9e9]
    assert all(f.kind in ("audio", "stretched") for f in during)
    assert max(f.depth_ms for f in during) <= 60
    if drift < 0:  # the far end is fast: frames are dropped to keep the delay down
        assert jb.frames_dropped >= int(-drift * 20 * 50) - 1 and jb.frames_stretched == 0
    else:  # the far end is slow: frames are stretched to keep from running dry
        assert jb.frames_stretched >= int(drift * 20 * 50) - 1 and jb.frames_dropped == 0


def test_timestamp_wrap_is_seamless() -> None:
    jb, frames, _ = Path(seconds=3, timestamp0=2**32 - 4000).run()
    assert kinds(frames)["audio"] == 150 and audio_in_order(frames) and jb.resyncs == 0


def test_ssrc_change_restarts_the_playout() -> None:
    jb, frames, results = Path(seconds=4, ssrc_change_at=100).run()
    assert results.count(RESYNC) == 2  # the first packet, and the new source
    assert jb.resyncs == 1
    assert kinds(frames)["audio"] >= 197


def test_marker_with_timestamp_jump_resyncs_at_once() -> None:
    jb, frames, _ = Path(seconds=4, jump_at=100).run()
    assert jb.resyncs == 1 and jb.discarded == 0
    assert kinds(frames)["audio"] >= 197


def test_silence_from_the_far_end_then_resumed_audio() -> None:
    jb, frames, _ = Path(seconds=6, silent=(2.0, 4.0)).run()
    quiet = [f for f in frames if 2.1e9 < f.at < 4.0e9]
    assert {f.kind for f in quiet[3:]} == {"comfort_noise"}
    back = [f for f in frames if 4.2e9 < f.at < 6.0e9]
    assert all(f.kind == "audio" for f in back) and jb.resyncs == 0


def test_pcma_and_30ms_packets_play_as_20ms_frames() -> None:
    jb, frames, _ = Path(seconds=3, ptime_ms=30, payload_type=8).run()
    assert kinds(frames)["audio"] == 150
    assert jb.frames_partial == 0 or jb.frames_partial <= 1


def test_other_payload_types_are_discarded() -> None:
    jb = JitterBuffer()
    assert jb.push(b"\x00" * 4, timestamp=1, ssrc=1, arrival_ns=0, payload_type=101) == 4
    assert jb.discarded == 1
    assert jb.pop(20 * MS)[0] == SILENCE


def test_frame_kinds_and_limits() -> None:
    assert {AUDIO, CONCEALED, COMFORT_NOISE} <= set(FRAME_KINDS)
    with pytest.raises(ValueError, match="frame_samples"):
        JitterBuffer(1000)
    with pytest.raises(ValueError, match="delays"):
        JitterBuffer(min_delay_ms=100, max_delay_ms=50)


def test_playout_that_fell_far_behind_catches_up_at_once() -> None:
    """The player stalls for 400 ms (a suspended process); packets kept coming."""
    jb = JitterBuffer(160, seed=1)
    ts = 1000
    t = 0
    kinds_after = []
    for k in range(150):
        t = k * TICK
        jb.push(
            bytes([CODES[k % len(CODES)]]) * 160,
            timestamp=ts + 160 * k,
            ssrc=1,
            arrival_ns=t + 20 * MS,
        )
        stalled = 50 <= k < 70
        if not stalled:
            kind, _ = jb.pop(t + 25 * MS)
            if k >= 70:
                kinds_after.append((FRAME_KINDS[kind], jb.depth_ms))
    assert all(kind == "audio" for kind, _ in kinds_after[1:])
    assert all(depth <= 60 for _, depth in kinds_after[1:])  # not 400 ms behind any more
