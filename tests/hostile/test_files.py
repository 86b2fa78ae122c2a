"""Hostile play/record paths: a control client or a dial's app spec names any file it likes.

Every path is relative to ``[files] directory`` and must stay inside it: absolute
paths, ``..`` and symbolic links anywhere are refused with ``forbidden_path`` (the
same answer whether or not something exists outside), a recording never replaces a
file nor creates a directory and is mode 0640, and a WAV too long or too strange to
play is refused with a clear error while the call goes on.
"""

from __future__ import annotations

import os
import stat
import struct
import time
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gosipd import files
from gosipd.audio import MAX_FILE_SECONDS, AudioError, load_wav
from gosipd.call import Call, CallRuntime
from gosipd.config import Config, ConfigError, config_from_dict
from gosipd.control import ControlError, parse_request
from tests.supervisor.daemon import Daemon
from tests.worker.conftest import CallPlacer, ended_event, events_named
from tests.worker.test_control import ControlClient, until_answered, write_wav

SECRET = b"outside the files directory"


@pytest.fixture
def place_call(tmp_path: Path) -> CallPlacer:
    (tmp_path / "files").mkdir()
    return CallPlacer(tmp_path / "run", tmp_path / "files")


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A files directory, and next to it what a hostile path reaches for."""
    directory = tmp_path / "files"
    directory.mkdir(exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(SECRET)
    (directory / "sub").mkdir()
    (directory / "link-to-secret.wav").symlink_to(outside / "secret.wav")
    (directory / "link-to-nothing.wav").symlink_to(outside / "nothing.wav")
    (directory / "linkdir").symlink_to(outside)
    return {"directory": directory, "outside": outside}


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../outside/secret.wav", "sub/../../outside/secret.wav", "a\x00b", ""],
)
def test_absolute_dotdot_and_nul_paths_are_refused_before_the_file_system_is_touched(name):
    with pytest.raises(files.ForbiddenPath):
        files.check_name(name)


@pytest.mark.parametrize("name", ["link-to-secret.wav", "linkdir/secret.wav"])
def test_a_symlink_anywhere_in_the_path_is_not_followed(layout, name):
    with pytest.raises(files.ForbiddenPath, match="symbolic link"):
        files.read_prompt(layout["directory"], name, 1 << 20)
    with pytest.raises(files.FileError):
        files.create_recording(layout["directory"], name)
    assert (layout["outside"] / "secret.wav").read_bytes() == SECRET


def test_the_answer_is_the_same_whether_or_not_the_outside_file_exists(layout):
    """No existence oracle: a link to a file outside and a link to nothing read alike."""
    answers = []
    for name in ("link-to-secret.wav", "link-to-nothing.wav"):
        with pytest.raises(files.ForbiddenPath) as refused:
            files.read_prompt(layout["directory"], name, 1 << 20)
        answers.append(str(refused.value).replace(name, "NAME"))
    for name in ("../outside/secret.wav", "../outside/nothing.wav"):
        with pytest.raises(files.ForbiddenPath) as refused:
            files.read_prompt(layout["directory"], name, 1 << 20)
        answers.append(str(refused.value).replace(name, "NAME"))
    assert answers[0] == answers[1] and answers[2] == answers[3]


def test_a_recording_never_truncates_an_existing_file(layout):
    existing = layout["directory"] / "taken.wav"
    existing.write_bytes(b"keep me")
    with pytest.raises(files.FileError, match="already exists"):
        files.create_recording(layout["directory"], "taken.wav")
    assert existing.read_bytes() == b"keep me"


def test_a_recording_creates_no_directories(layout):
    with pytest.raises(files.FileError, match="directories are not created"):
        files.create_recording(layout["directory"], "new/dir/call.wav")
    assert not (layout["directory"] / "new").exists()


def test_a_recording_is_mode_0640_and_may_go_in_a_subdirectory(layout):
    old = os.umask(0o022)
    try:
        fd = files.create_recording(layout["directory"], "sub/call.wav")
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE((layout["directory"] / "sub" / "call.wav").stat().st_mode) == 0o640


def test_a_fifo_is_refused_without_blocking(layout):
    os.mkfifo(layout["directory"] / "pipe.wav")
    with pytest.raises(files.FileError, match="not a regular file"):
        files.read_prompt(layout["directory"], "pipe.wav", 1 << 20)


def test_a_file_over_the_size_limit_is_refused_unread(layout):
    (layout["directory"] / "big.wav").write_bytes(bytes(2000))
    with pytest.raises(files.FileError, match="more than the 1000"):
        files.read_prompt(layout["directory"], "big.wav", 1000)


# --------------------------------------------------------------------------- configuration


def test_the_files_directory_is_a_config_key_defaulting_to_the_state_directory(
    monkeypatch, tmp_path
):
    config = config_from_dict({"files": {"directory": str(tmp_path)}})
    assert config.resolved_files_directory() == tmp_path
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/gosipd")
    assert Config().resolved_files_directory() == Path("/var/lib/gosipd")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.chdir(tmp_path)
    assert Config().resolved_files_directory() == tmp_path / "out"
    with pytest.raises(ConfigError, match=r"\[files\] directory must be a string"):
        config_from_dict({"files": {"directory": 3}})
    with pytest.raises(ConfigError, match=r"unknown key \[files\] path"):
        config_from_dict({"files": {"path": "x"}})


# --------------------------------------------------------------------------- WAV limits


def long_wav(path: Path, seconds: float, rate: int = 1000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(bytes([128]) * int(rate * seconds))


def test_a_wav_longer_than_the_limit_is_refused_saying_so(tmp_path):
    path = tmp_path / "long.wav"
    long_wav(path, MAX_FILE_SECONDS + 1)
    with pytest.raises(AudioError, match=f"longer than the {MAX_FILE_SECONDS} s"):
        load_wav(path)


@pytest.mark.parametrize(
    ("channels", "rate", "bits", "reason"),
    [
        (65535, 8000, 16, "65535 channels"),
        (1, 4_000_000_000, 16, "sample rate 4000000000 Hz"),
        (1, 8000, 4096, "4096-bit PCM"),
    ],
)
def test_an_absurd_format_is_refused_saying_why(tmp_path, channels, rate, bits, reason):
    fmt = struct.pack("<HHIIHH", 1, channels, rate, 0, (channels * bits // 8) & 0xFFFF, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 4) + bytes(4)
    )
    path = tmp_path / "absurd.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioError, match=reason):
        load_wav(path)


# --------------------------------------------------------------------------- dial app specs


@pytest.mark.parametrize("app", ["play:/etc/passwd", "record:../x.wav", "ivr:a/../../b.wav"])
def test_a_dial_naming_a_file_outside_is_refused_forbidden_path(app):
    line = f'{{"op": "dial", "to": "sip:a@127.0.0.1", "app": "{app}"}}'
    with pytest.raises(ControlError) as refused:
        parse_request(line)
    assert refused.value.code == "forbidden_path"
    assert refused.value.field == "app"
    assert refused.value.message.startswith(f"app: {app.partition(':')[0]}: ")


@pytest.mark.interop
async def test_a_record_app_aimed_through_a_symlink_ends_the_call_and_touches_nothing(
    sipp_uas, place_call, tmp_path
):
    echo = sipp_uas("echo")
    target = tmp_path / "victim.wav"
    target.write_bytes(SECRET)
    (place_call.files / "call.wav").symlink_to(target)
    runtime = await place_call(echo.uri(), app_name="record:call.wav", max_duration=5)

    end = ended_event(runtime)
    assert end["cause"] == "app_error"
    assert end["app_error"].startswith("record: 'call.wav': already exists")
    assert target.read_bytes() == SECRET
    assert echo.received("BYE") == 1


@pytest.mark.interop
async def test_a_play_app_naming_an_absolute_path_ends_the_call_forbidden(sipp_uas, place_call):
    echo = sipp_uas("echo")
    runtime = await place_call(echo.uri(), app_name="play:/etc/hostname", max_duration=5)

    end = ended_event(runtime)
    assert end["cause"] == "app_error"
    assert end["app_error"].startswith("play: '/etc/hostname': absolute paths are refused")


# --------------------------------------------------------------------------- control ops


async def wait_forever(call: Call) -> None:
    await call.wait_ended()


@asynccontextmanager
async def live_call(
    sipp_uas: Any, place_call: CallPlacer
) -> AsyncIterator[tuple[CallRuntime, ControlClient]]:
    echo = sipp_uas("echo")
    runtime = place_call.runtime(echo.uri(), wait_forever)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.run)
        await until_answered(runtime)
        client = await ControlClient.connect(runtime.publication.socket_path)
        yield runtime, client
        assert (await client.request("hangup", call=runtime.spec.call))["ok"]
        with trio.fail_after(5):
            await runtime.ended.wait()


@pytest.mark.interop
async def test_control_play_and_record_outside_the_directory_are_forbidden_path(
    sipp_uas, place_call, tmp_path
):
    outside = tmp_path / "outside.wav"
    write_wav(outside, 1000, 0.2, 8000, 1)
    (place_call.files / "link.wav").symlink_to(outside)
    (place_call.files / "dirlink").symlink_to(tmp_path)
    async with live_call(sipp_uas, place_call) as (runtime, client):
        call = runtime.spec.call
        for op, name in [
            ("play", str(outside)),
            ("play", "../outside.wav"),
            ("play", "link.wav"),
            ("play", "dirlink/outside.wav"),
            ("record", str(tmp_path / "new.wav")),
            ("record", "../new.wav"),
            ("record", "dirlink/new.wav"),
        ]:
            reply = await client.request(op, call=call, file=name)
            assert not reply["ok"], (op, name)
            assert reply["error"]["code"] == "forbidden_path", (op, name, reply)
            assert reply["error"]["field"] == "file"
            assert reply["error"]["message"].startswith(f"{op}: "), reply
        # an existing file is never truncated, even through the record op
        reply = await client.request("record", call=call, file="link.wav")
        assert reply["error"]["code"] == "bad_file"
        assert "already exists" in reply["error"]["message"]
        assert (await client.request("status"))["state"] == "confirmed"
    assert not (tmp_path / "new.wav").exists()
    assert outside.stat().st_size > 44
    assert ended_event(runtime)["cause"] == "local_hangup"


@pytest.mark.interop
async def test_a_play_longer_than_the_limit_is_an_error_reply_and_the_call_goes_on(
    sipp_uas, place_call
):
    """It used to be queued past the media's limit, and the MediaError killed the worker."""
    long_wav(place_call.files / "long.wav", MAX_FILE_SECONDS + 1)
    write_wav(place_call.files / "short.wav", 1000, 0.2, 8000, 1)
    async with live_call(sipp_uas, place_call) as (runtime, client):
        call = runtime.spec.call
        reply = await client.request("play", call=call, file="long.wav")
        assert not reply["ok"] and reply["error"]["code"] == "bad_file"
        assert f"longer than the {MAX_FILE_SECONDS} s" in reply["error"]["message"]
        assert (await client.request("play", call=call, file="short.wav"))["ok"]
        # each half of the limit plays; together they are more than a call may queue
        long_wav(place_call.files / "half.wav", MAX_FILE_SECONDS * 0.6)
        assert (await client.request("play", call=call, file="half.wav"))["ok"]
        reply = await client.request("play", call=call, file="half.wav")
        assert not reply["ok"] and reply["error"]["code"] == "bad_state"
        assert reply["error"]["message"].startswith("play: more than")
        assert (await client.request("status"))["state"] == "confirmed"
    end = ended_event(runtime)
    assert end["cause"] == "local_hangup"
    assert not events_named(runtime, "call.internal_error")


# --------------------------------------------------------------------------- through the daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    files_directory = tmp_path / "files"
    files_directory.mkdir(exist_ok=True)
    started = Daemon(tmp_path / "daemon", extra=f'[files]\ndirectory = "{files_directory}"\n')
    started.start()
    yield started
    started.stop()


@pytest.mark.parametrize(
    ("op", "name"), [("play", "/etc/hostname"), ("record", "../x.wav"), ("play", "a/../../b")]
)
def test_the_supervisor_refuses_a_path_outside_before_asking_any_worker(daemon, op, name):
    reply = daemon.request({"op": op, "call": "0123456789abcdef", "file": name})
    assert reply["error"]["code"] == "forbidden_path"
    assert reply["error"]["field"] == "file"
    assert reply["error"]["message"].startswith(f"{op}: {name!r}: ")


@pytest.mark.interop
def test_through_the_daemon_a_symlink_is_refused_and_a_recording_lands_inside_0640(
    daemon, sipp_uas, tmp_path
):
    files_directory = tmp_path / "files"
    (files_directory / "link.wav").symlink_to("/etc/hostname")
    refused, _ = daemon.dial("sip:echo@127.0.0.1:9", app="play:/etc/hostname")
    assert refused["error"]["code"] == "forbidden_path"
    assert refused["error"]["field"] == "app"
    assert refused["error"]["message"].startswith("app: play: '/etc/hostname': ")

    uas = sipp_uas("echo")
    reply, conn = daemon.dial(uas.uri("echo"), max_duration=20)
    conn.until_event("call.answered")
    call = reply["call"]
    played = daemon.request({"op": "play", "call": call, "file": "link.wav"})
    assert played["error"]["code"] == "forbidden_path"
    assert (
        played["error"]["message"] == "play: 'link.wav': is a symbolic link; links are not followed"
    )
    assert daemon.request({"op": "record", "call": call, "file": "call.wav"})["ok"]
    time.sleep(0.5)
    assert daemon.request({"op": "hangup", "call": call})["ok"]
    assert conn.until_event("call.ended")["cause"] == "local_hangup"
    recording = files_directory / "call.wav"
    assert stat.S_IMODE(recording.stat().st_mode) & 0o007 == 0  # nothing for others
    with wave.open(str(recording)) as w:
        assert w.getnchannels() == 1 and w.getnframes() > 0
