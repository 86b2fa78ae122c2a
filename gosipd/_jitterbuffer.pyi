from typing_extensions import Buffer

ACCEPTED: int
DUPLICATE: int
LATE: int
RESYNC: int
DISCARDED: int
AUDIO: int
PARTIAL: int
CONCEALED: int
COMFORT_NOISE: int
SILENCE: int
STRETCHED: int
FRAME_KINDS: dict[int, str]
MIN_DELAY_MS: int
MAX_DELAY_MS: int
CONCEAL_FRAMES: int

class JitterBuffer:
    packets: int
    duplicates: int
    late: int
    resyncs: int
    discarded: int
    frames_audio: int
    frames_partial: int
    frames_concealed: int
    frames_comfort_noise: int
    frames_silence: int
    frames_stretched: int
    frames_dropped: int
    def __init__(
        self,
        frame_samples: int = 160,
        *,
        initial_delay_ms: int = 40,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
        comfort_noise_dbov: float = -60.0,
        seed: int | None = None,
    ) -> None: ...
    def push(
        self,
        payload: Buffer,
        *,
        timestamp: int,
        ssrc: int,
        arrival_ns: int,
        marker: bool = False,
        payload_type: int = 0,
    ) -> int: ...
    def pop(self, now_ns: int) -> tuple[int, bytes]: ...
    @property
    def frame_samples(self) -> int: ...
    @property
    def target_ms(self) -> float: ...
    @property
    def depth_ms(self) -> float: ...
    @property
    def spread_ms(self) -> float: ...
    def statistics(self) -> dict[str, int]: ...
