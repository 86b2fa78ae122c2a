"""The stream protocols and the pacing of a server's audio, in memory (gosipd.streams)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd import _dsp
from gosipd.streams import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    BinaryProfile,
    Clear,
    Hangup,
    Mark,
    Play,
    Player,
    SendDtmf,
    StreamProtocolError,
    Transfer,
    TwilioProfile,
    parse_stream_arg,
    public_url,
)

#: Every code but 0x7f (-0, which encodes back as 0xff): a round trip is exact.
ULAW = bytes(b for b in range(256) if b != 0x7F) * 2


def test_the_options_after_the_url_are_read_by_name():
    options = parse_stream_arg(
        "wss://agent.example/media?token=x profile=binary on_error=continue queue_s=2.5 "
        "param.agent=sales param.lang=en"
    )
    assert options.url == "wss://agent.example/media?token=x"
    assert (options.profile, options.on_error, options.queue_s) == ("binary", "continue", 2.5)
    assert options.parameters == {"agent": "sales", "lang": "en"}
    assert options.host == "agent.example"
    assert parse_stream_arg("ws://h/p", on_error="continue").on_error == "continue"


@pytest.mark.parametrize(
    ("arg", "error"),
    [
        ("", "needs a URL"),
        ("http://h/p", "is not a ws:// or wss:// URL"),
        ("ws://h/p profile=rtp", "profile must be one of twilio, binary"),
        ("ws://h/p on_error=retry", "on_error must be one of hangup, continue"),
        ("ws://h/p queue_s=0", "queue_s must be 0.1 to 600"),
        ("ws://h/p colour=blue", "unknown option 'colour'"),
        ("ws://h/p loud", "is not NAME=VALUE"),
    ],
)
def test_bad_options_are_refused_saying_what_is_wrong(arg, error):
    with pytest.raises(ValueError, match=error):
        parse_stream_arg(arg)


def test_a_url_in_a_log_line_has_no_credentials_or_query():
    assert public_url("wss://user:pw@h.example:8443/m?token=s3cret") == "wss://h.example:8443/m"


def test_twilio_messages_are_what_a_twilio_media_streams_server_parses():
    profile = TwilioProfile("call-1", "MZ1", {"agent": "sales"})
    connected, start = (json.loads(m) for m in profile.opening())
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    assert start["streamSid"] == "MZ1" == start["start"]["streamSid"]
    assert start["start"]["callSid"] == "call-1"
    assert start["start"]["tracks"] == ["inbound"]
    assert start["start"]["customParameters"] == {"agent": "sales"}
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    pcm = _dsp.ulaw_decode(ULAW[:160])
    first, second = json.loads(profile.media(pcm)), json.loads(profile.media(pcm))
    assert [first["sequenceNumber"], second["sequenceNumber"]] == ["2", "3"]
    assert [first["media"]["chunk"], second["media"]["chunk"]] == ["1", "2"]
    assert [first["media"]["timestamp"], second["media"]["timestamp"]] == ["0", "20"]
    assert first["media"]["track"] == "inbound"
    assert base64.b64decode(first["media"]["payload"]) == ULAW[:160]
    assert first["streamSid"] == "MZ1" and set(first) == {
        "event",
        "sequenceNumber",
        "media",
        "streamSid",
    }
    odd = TwilioProfile("c", 'MZ"\\x', {})  # a library user's own id: still JSON
    assert json.loads(odd.media(pcm))["streamSid"] == 'MZ"\\x'
    dtmf = json.loads(profile.dtmf("5"))
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert json.loads(profile.mark("m1"))["mark"] == {"name": "m1"}
    stop = json.loads(profile.closing())
    assert stop["event"] == "stop" and stop["stop"]["callSid"] == "call-1"


def test_twilio_server_messages_become_commands():
    profile = TwilioProfile("c", "MZ1", {})
    payload = base64.b64encode(ULAW).decode()
    media = json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": payload}})
    assert profile.receive(media) == [Play(_dsp.ulaw_decode(ULAW))]
    mark = json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "greeting"}})
    assert profile.receive(mark) == [Mark("greeting")]
    assert profile.receive('{"event": "clear", "streamSid": "MZ1"}') == [Clear()]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"event": "media", "media": {}}', "no media.payload"),
        ('{"event": "media", "media": {"payload": "***"}}', "not base64"),
        ('{"event": "mark", "mark": {"name": ""}}', "a name is a string"),
        ('{"event": "dance"}', "unknown event 'dance'"),
        (b"\x00\x01", "text \\(JSON\\) messages only"),
    ],
)
def test_a_bad_twilio_message_is_refused_saying_why(message, error):
    with pytest.raises(StreamProtocolError, match=error):
        TwilioProfile("c", "MZ1", {}).receive(message)


def test_binary_audio_is_l16_little_endian_and_control_is_json():
    profile = BinaryProfile("call-1", "s1", {"k": "v"})
    (start,) = (json.loads(m) for m in profile.opening())
    assert start == {
        "event": "start",
        "call": "call-1",
        "stream": "s1",
        "format": "L16",
        "rate": 8000,
        "channels": 1,
        "parameters": {"k": "v"},
    }
    pcm = (1000).to_bytes(2, "little", signed=True) * 160
    assert profile.media(pcm) == pcm
    # a server's message may split a sample: the half waits for the next one
    assert profile.receive(pcm[:3]) == [Play(pcm[:2])]
    assert profile.receive(pcm[3:]) == [Play(pcm[2:])]
    assert profile.receive('{"event": "hangup"}') == [Hangup()]
    assert profile.receive('{"event": "dtmf", "digits": "12#"}') == [SendDtmf("12#")]
    with pytest.raises(StreamProtocolError, match="is not DTMF digits"):
        profile.receive('{"event": "dtmf", "digits": "12x"}')
    assert profile.receive('{"event": "transfer", "to": "sip:agent@pbx"}') == [
        Transfer("sip:agent@pbx")
    ]
    with pytest.raises(StreamProtocolError, match="transfer needs 'to'"):
        profile.receive('{"event": "transfer"}')


@given(st.lists(st.binary(max_size=600), max_size=30))
def test_the_player_hands_over_every_byte_in_order_a_few_frames_ahead(chunks):
    player = Player(queue_s=600)
    for chunk in chunks:
        player.add(Play(chunk[: len(chunk) - len(chunk) % 2]))
    out, queued = b"", 0
    for _ in range(1000):
        pcm, _ = player.feed(queued)
        assert queued + len(pcm) // 2 <= max(Player.LEAD_SAMPLES, queued)
        out += pcm
        queued = max(0, queued + len(pcm) // 2 - FRAME_SAMPLES)  # one frame sent per tick
    assert out == b"".join(c[: len(c) - len(c) % 2] for c in chunks)


def test_a_mark_is_due_when_the_audio_before_it_has_been_sent():
    player = Player()
    player.add(Play(bytes(FRAME_BYTES * 5)))
    player.add(Mark("after-five"))
    player.add(Play(bytes(FRAME_BYTES)))
    queued, due_at = 0, None
    for tick in range(10):
        pcm, due = player.feed(queued)
        if due:
            assert due == ["after-five"] and due_at is None
            due_at = tick
        queued = max(0, queued + len(pcm) // 2 - FRAME_SAMPLES)
    # ticks 0-4 send the five frames; the mark is seen at the feed after the fifth
    assert due_at == 5


def test_clear_drops_the_queue_and_returns_every_pending_mark():
    player = Player()
    player.add(Play(bytes(FRAME_BYTES * 10)))
    player.add(Mark("a"))
    player.feed(0)
    player.add(Play(bytes(FRAME_BYTES * 10)))
    player.add(Mark("b"))
    assert player.clear() == ["a", "b"]
    assert player.feed(0) == (b"", [])


def test_beyond_the_queue_limit_the_oldest_audio_is_dropped():
    player = Player(queue_s=0.1)  # 800 samples
    player.add(Play(b"\x01\x00" * 800))
    assert not player.overflowed
    player.add(Play(b"\x02\x00" * 400))
    assert player.overflowed and player.dropped == 400
    assert player.queued_samples == 800
    pcm, _ = player.feed(0)
    assert pcm[:2] == b"\x01\x00" and len(pcm) == Player.LEAD_SAMPLES * 2


def test_the_stream_section_configures_headers_per_host_and_checks_its_keys():
    from gosipd.config import ConfigError, config_from_dict

    config = config_from_dict(
        {
            "stream": {
                "on_error": "continue",
                "connect_timeout": 2,
                "headers": {"Agent.Example": {"Authorization": "Bearer t"}},
            }
        }
    )
    assert config.stream.on_error == "continue" and config.stream.connect_timeout_s == 2.0
    assert config.stream.headers == {"agent.example": {"Authorization": "Bearer t"}}
    assert "Bearer" not in repr(config.stream)
    for bad, error in [
        ({"on_error": "retry"}, "on_error must be hangup or continue"),
        ({"connect_timeout": 0}, "connect_timeout must be 0 to 60"),
        ({"headers": {"h": {"Bad Name": "x"}}}, "is not a header"),
        ({"headers": {"h": {"X-A": "x\r\nInjected: y"}}}, "is not a header"),
        ({"colour": "blue"}, "unknown key \\[stream\\] colour"),
    ]:
        with pytest.raises(ConfigError, match=error):
            config_from_dict({"stream": bad})


def test_a_16_khz_binary_profile_resamples_both_ways_without_clicks():
    import numpy as np

    from gosipd.streams import BinaryProfile, Play

    profile = BinaryProfile("CA1", "MZ1", {}, rate=16000)
    assert json.loads(profile.opening()[0])["rate"] == 16000
    t = np.arange(8000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    wide = b"".join(profile.media(tone[i : i + 160].tobytes()) for i in range(0, 8000, 160))
    assert len(wide) == 4 * 8000  # twice the samples, two octets each
    # the server's 16 kHz audio in odd-sized messages comes back as 8 kHz
    pieces = [wide[i : i + 333] for i in range(0, len(wide), 333)]
    narrow = b"".join(
        c.pcm for piece in pieces for c in profile.receive(piece) if isinstance(c, Play)
    )
    back = np.frombuffer(narrow, dtype=np.int16).astype(np.float64)
    assert abs(back.size - 8000) <= 1
    delay = 32  # two filters of 2 ms each: 4 ms = 32 samples at 8 kHz
    error = back[delay + 100 : 7900] - tone[100 : 7900 - delay]
    assert np.sqrt(np.mean(error**2)) < 0.01 * np.sqrt(np.mean(tone.astype(float) ** 2))


def test_rate_16000_is_only_for_the_binary_profile():
    assert parse_stream_arg("ws://h/p profile=binary rate=16000").rate == 16000
    with pytest.raises(ValueError, match="needs profile=binary"):
        parse_stream_arg("ws://h/p rate=16000")
    with pytest.raises(ValueError, match="rate must be 8000 or 16000"):
        parse_stream_arg("ws://h/p profile=binary rate=44100")


def test_a_server_that_reads_nothing_costs_a_bounded_outbox_oldest_media_dropped_first():
    from gosipd.apps.stream import OUTBOX_MEDIA, _Outbox

    outbox = _Outbox()
    outbox.put("start")
    for i in range(OUTBOX_MEDIA * 3):
        outbox.put(f"media {i}", media=True)
        if i == 5:
            outbox.put("mark")  # control is never dropped
    kept = [m for m, _ in outbox._messages]
    assert outbox.dropped == OUTBOX_MEDIA * 2
    assert kept[0] == "start" and "mark" in kept
    media = [m for m in kept if m.startswith("media")]
    assert len(media) == OUTBOX_MEDIA
    assert media[-1] == f"media {OUTBOX_MEDIA * 3 - 1}"  # the newest survive, in order
    assert media == sorted(media, key=lambda m: int(m.split()[1]))
