"""The disk fills up while a call records: the call ends cleanly, never the worker.

A real call against SIPp's echo UAS records (stereo, 32 kB/s) into a files
directory that is a 64 KiB tmpfs, so the disk is full after about two seconds.
The call must then end with a BYE and the cause ``record_failed``, and the WAV
left behind must have a header that matches the bytes on disk. (It used to
raise out of the media task: ``internal_error``, no BYE from the worker.)
"""

from __future__ import annotations

import os
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from gosipd.audio import WAV_HEADER_BYTES
from tests.worker.conftest import CallPlacer, ended_event, events_named

pytestmark = pytest.mark.interop

TMPFS_SIZE = "64k"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only: mount(8)); unmounted when the test ends."""
    if os.geteuid() != 0 and os.environ.get("CI", "").lower() != "true":
        pytest.skip("mounting a small tmpfs needs root (run as root, or under CI=true)")
    mount_point = tmp_path / "files"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0750", "tmpfs", str(mount_point)],
        check=True,
        capture_output=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)


@pytest.fixture
def place_call(tmp_path: Path, small_disk: Path) -> CallPlacer:
    return CallPlacer(tmp_path / "run", small_disk)


def riff_sizes(path: Path) -> tuple[int, int]:
    """(RIFF chunk size, data chunk size) from the canonical 44-byte header."""
    header = path.read_bytes()[:WAV_HEADER_BYTES]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt " and header[36:40] == b"data"
    (riff,) = struct.unpack_from("<I", header, 4)
    (data,) = struct.unpack_from("<I", header, 40)
    return riff, data


async def test_a_full_disk_ends_the_call_with_a_bye_and_record_failed(sipp_uas, place_call):
    echo = sipp_uas("echo")
    runtime = await place_call(echo.uri(), app_name="record:call.wav", max_duration=15)

    end = ended_event(runtime)
    assert end["cause"] == "record_failed", end
    assert "disk is full" in end["reason"]
    assert end["answered"] and end["duration_s"] < 10  # the disk, not max_duration, ended it
    assert not events_named(runtime, "call.internal_error")
    assert echo.received("BYE") == 1
    assert runtime.publication.state.get("dialog") is None  # nothing left for a supervisor

    recording = place_call.files / "call.wav"
    size = recording.stat().st_size
    riff, data = riff_sizes(recording)
    assert riff == size - 8
    assert data == size - WAV_HEADER_BYTES
    assert data % 4 == 0 and data > 16_000  # whole stereo frames, about two seconds of them
    with wave.open(str(recording)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert w.getnframes() * 4 == data
        assert len(w.readframes(w.getnframes())) == data
