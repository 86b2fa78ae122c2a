import socket
from typing import Protocol

from typing_extensions import Buffer

from gosipd._dsp import DtmfDetector
from gosipd._jitterbuffer import JitterBuffer

EVENT_TELEPHONE_EVENT: int
EVENT_INBAND_DIGIT: int
EVENT_MEDIA_TIMEOUT: int
EVENT_MEDIA_RESUMED: int
EVENT_PLAYBACK_LOW: int
EVENT_PLAYBACK_DRAINED: int
EVENT_TONES_DRAINED: int
EVENT_SCRIPT_DRAINED: int
EVENT_AUDIO: int
EVENT_PACKET: int
EVENT_NAMES: dict[int, str]
PACKET_RTCP: int
PACKET_LATCHED: int
PLAYBACK_CAPACITY: int
TONES_CAPACITY: int
SCRIPT_CAPACITY: int
RECEIVED_FRAMES: int
COMFORT_NOISE_DBOV: float
LATCH_PROBATION: int
LEARNING_WINDOW: float
MOVE_GRACE: float

class SrtpHandle(Protocol):
    @property
    def handle(self) -> int: ...
    @property
    def function(self) -> int: ...

def parse_rtp_header(data: Buffer) -> tuple[int, bool, int, int, int, bytes] | int: ...

class ReceptionStatistics:
    def __init__(self, clock_rate: int = 8000) -> None: ...
    def update(self, ssrc: int, seq: int, timestamp: int, arrival_ns: int) -> bool: ...
    def snapshot(self) -> tuple[int, int, int, int, float, int]: ...

class MediaLoop:
    jitter_buffer: JitterBuffer
    dtmf_detector: DtmfDetector
    frames_dropped: int
    def __init__(
        self,
        sock: socket.socket,
        *,
        rtcp_sock: socket.socket | None = None,
        ptime_ms: int = 20,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        comfort_noise_dbov: float = -60.0,
        initial_delay_ms: int = 40,
        realtime_priority: int | None = None,
    ) -> None: ...
    @property
    def ssrc(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def fileno(self) -> int: ...
    def configure(
        self,
        *,
        remote: tuple[str, int] | None,
        send: bool,
        receive: bool,
        payload_type: int = 0,
        telephone_event_pt: int | None = None,
        receive_telephone_event_pt: int | None = None,
        accept_payload_types: tuple[int, ...] = (0, 8),
        comfort_noise_pt: int | None = None,
        ptime_ms: int = 20,
        media_timeout: float = 0.0,
        symmetric: bool = True,
        inband_detect: bool | None = None,
        confirmed: bool = True,
        srtp: tuple[SrtpHandle | None, SrtpHandle | None] | None = None,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self, wait: bool = True) -> None: ...
    def write_playback(self, pcm: Buffer) -> int: ...
    def write_tones(self, pcm: Buffer) -> int: ...
    @property
    def playback_queued(self) -> int: ...
    @property
    def playback_space(self) -> int: ...
    @property
    def tones_queued(self) -> int: ...
    def want_playback_low(self, flag: bool) -> None: ...
    def flush(
        self, *, playback: bool = False, tones: bool = False, script: bool = False
    ) -> None: ...
    def queue_script(self, entries: object) -> int: ...
    @property
    def script_queued(self) -> int: ...
    def deliver_audio(self, flag: bool) -> None: ...
    def want_audio(self, flag: bool) -> None: ...
    def read_frames(self, max_frames: int = 50) -> list[tuple[int, bytes]]: ...
    @property
    def frames_available(self) -> int: ...
    def read_events(self) -> list[tuple[int, int, int, int, int]]: ...
    def read_packets(self) -> list[tuple[int, bytes, tuple[str, int], int]]: ...
    def counters(self) -> dict[str, int]: ...
    def sender_state(self) -> tuple[int, int, int, int]: ...
    def reception_state(self) -> tuple[int, int, int, int, float, int]: ...
    def lateness_histogram(self) -> tuple[list[int], list[int]]: ...
