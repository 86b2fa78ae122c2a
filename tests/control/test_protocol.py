"""The control protocol refuses bad requests with an error naming the field."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gosipd.control import (
    MAX_LINE,
    ControlError,
    LineBuffer,
    encode,
    error_reply,
    ok_reply,
    parse_request,
    request_id_of,
)


def test_a_dial_request_is_parsed_with_typed_fields():
    request = parse_request(
        b'{"id": 7, "op": "dial", "to": "sip:echo@127.0.0.1:5070", "ring_timeout": 30,'
        b' "headers": ["X-Campaign: spring"], "wait": false}'
    )
    assert request.id == 7
    assert request.op == "dial"
    assert request.args == {
        "to": "sip:echo@127.0.0.1:5070",
        "ring_timeout": 30.0,
        "headers": [("X-Campaign", "spring")],
        "wait": False,
    }


@pytest.mark.parametrize(
    ("line", "code", "field", "words"),
    [
        (b"{not json", "bad_json", None, "not valid JSON"),
        (b"[1, 2]", "bad_request", None, "JSON object, not a list"),
        (b'{"id": 1}', "bad_request", "op", "'op' is missing"),
        (b'{"op": "fly"}', "unknown_op", "op", "unknown op 'fly'"),
        (b'{"op": "dial"}', "bad_field", "to", "'dial' needs 'to'"),
        (b'{"op": "dial", "to": 5}', "bad_field", "to", "'to' must be a string, not a number"),
        (b'{"op": "dial", "to": "http://x"}', "bad_field", "to", "sip:/sips:/tel: URI"),
        (b'{"op": "dial", "to": "sip:a b@c"}', "bad_field", "to", "must not contain spaces"),
        (
            b'{"op": "dial", "to": "sip:a@b", "srtp": "maybe"}',
            "bad_field",
            "srtp",
            "'srtp' must be one of off, offer, required",
        ),
        (
            b'{"op": "transfer", "call": "abcd"}',
            "bad_field",
            "to",
            "'transfer' needs 'to' or 'replaces'",
        ),
        (
            b'{"op": "transfer", "call": "abcd", "to": "http://x"}',
            "bad_field",
            "to",
            "sip:/sips:/tel: URI",
        ),
        (
            b'{"op": "dial", "to": "sip:a@b", "ring_timeout": "10"}',
            "bad_field",
            "ring_timeout",
            "must be a number, not a string",
        ),
        (
            b'{"op": "dial", "to": "sip:a@b", "ring_timeout": 0}',
            "bad_field",
            "ring_timeout",
            "between 1 and 600",
        ),
        (
            b'{"op": "dial", "to": "sip:a@b", "ring_timeout": true}',
            "bad_field",
            "ring_timeout",
            "not a boolean",
        ),
        (
            b'{"op": "dial", "to": "sip:a@b", "colour": "red"}',
            "bad_field",
            "colour",
            "'colour' is not a field of 'dial'",
        ),
        (
            b'{"op": "dial", "to": "sip:a@b", "headers": ["Via: x"]}',
            "bad_field",
            "headers",
            "may not set Via",
        ),
        (
            b'{"op": "dial", "to": "sip:a@b", "headers": ["X: a\\r\\nVia: b"]}',
            "bad_field",
            "headers",
            "single 'Name: value' header line",
        ),
        (b'{"op": "dtmf", "call": "c1", "digits": "12x"}', "bad_field", "digits", "DTMF digits"),
        (b'{"op": "hangup", "call": "../etc/passwd"}', "bad_field", "call", "not a call id"),
        (b'{"op": "drain", "deadline": -1}', "bad_field", "deadline", "between 0 and"),
        (
            b'{"op": "record", "call": "c1", "file": "calls/a.wav", "stereo": "yes"}',
            "bad_field",
            "stereo",
            "must be true or false",
        ),
    ],
)
def test_bad_requests_are_refused_naming_what_is_wrong(line, code, field, words):
    with pytest.raises(ControlError) as caught:
        parse_request(line)
    assert caught.value.code == code
    assert caught.value.field == field
    assert words in caught.value.message


def test_a_stereo_recording_request_is_parsed():
    request = parse_request(
        b'{"op": "record", "call": "c1", "file": "calls/a.wav", "stereo": true}'
    )
    assert request.args == {"call": "c1", "file": "calls/a.wav", "stereo": True}


def test_a_refusal_carries_the_id_of_the_request_it_refuses():
    line = b'{"id": "second", "op": "dtmf", "call": "c1", "digits": "x"}'
    with pytest.raises(ControlError):
        parse_request(line)
    assert request_id_of(line) == "second"
    assert request_id_of(b"{broken") is None


def test_replies_echo_the_id_and_carry_an_error_object():
    assert json.loads(ok_reply("a", call="c1")) == {"id": "a", "ok": True, "call": "c1"}
    reply = json.loads(error_reply(3, ControlError("draining", "host is draining")))
    assert reply == {
        "id": 3,
        "ok": False,
        "error": {"code": "draining", "message": "host is draining"},
    }
    assert encode({"event": "call.ended"}).endswith(b"\n")


def test_line_buffer_frames_lines_across_chunks():
    buffer = LineBuffer()
    assert buffer.feed(b'{"op": "st') == []
    assert buffer.feed(b'atus"}\n{"op"') == [b'{"op": "status"}']
    assert buffer.feed(b': "calls"}\r\n\n') == [b'{"op": "calls"}']


def test_an_oversize_line_is_refused_once_and_skipped_without_buffering_it():
    buffer = LineBuffer(limit=1000)
    out = []
    for _ in range(100):  # 10 MB of one line, fed in pieces, never held whole
        out += buffer.feed(b"x" * 100_000)
        assert len(buffer._buffer) <= 1000 + 100_000
    out += buffer.feed(b'xx\n{"op": "status"}\n')
    assert len(out) == 2
    assert isinstance(out[0], ControlError)
    assert out[0].code == "too_long"
    assert out[1] == b'{"op": "status"}'
    assert MAX_LINE >= 64 * 1024


@given(st.binary(max_size=300))
def test_any_bytes_give_a_request_or_a_control_error(data):
    try:
        parse_request(data)
    except ControlError as exc:
        assert exc.message


def test_deeply_nested_json_is_refused_not_crashed_on():
    with pytest.raises(ControlError, match="nested too deeply"):
        parse_request(b"[" * 60_000 + b"]" * 60_000)
