"""Real peers on loopback: everything SIPp and baresip send parses and validates, and
the requests and responses we build complete a call with them.

GOSIPD_CAPTURE_DIR=tests/data/sip refreshes the captured fixtures from these runs.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gosipd import sip
from gosipd.sip import URI

from .peers import (
    LOOPBACK,
    SCENARIOS,
    Endpoint,
    answer,
    capture,
    child,
    free_port,
    hang_up,
    invite,
    require,
    wait_for_udp,
    write_baresip_config,
)

pytestmark = pytest.mark.interop


@pytest.fixture
def media() -> socket.socket:
    """A UDP port for the RTP the peers may send us (nothing reads it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    yield sock
    sock.close()


def _media_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def test_sipp_uac_call_is_understood_and_answered(tmp_path: Path, media: socket.socket) -> None:
    sipp = require("sipp")
    with Endpoint.open() as ours:
        port = free_port(4)  # SIP, then media and media+2
        mport = port + 1
        args = [
            sipp,
            "-sf",
            str(SCENARIOS / "uac_basic.xml"),
            "-i",
            LOOPBACK,
            "-p",
            str(port),
            "-mi",
            LOOPBACK,
            "-mp",
            str(mport),
            "-m",
            "1",
            "-s",
            "gosipd",
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
            f"{LOOPBACK}:{ours.port}",
        ]
        with child(args, tmp_path, tmp_path / "sipp.log") as process:
            request, address = ours.receive_request("INVITE", timeout=10)
            assert request.uri == URI.parse(f"sip:gosipd@{LOOPBACK}:{ours.port}")
            assert request.from_.display_name == "SIPp caller" and request.from_.tag
            assert request.supported == ["100rel", "timer"]
            assert request.sdp is not None and b"m=audio" in request.sdp
            answer(ours, request, address, _media_port(media))
            bye, address = ours.receive_request("BYE")
            assert bye.call_id == request.call_id and bye.cseq.number == 2
            ours.send(sip.Response.for_request(bye, 200), address)
            assert process.wait(15) == 0, (tmp_path / "sipp.log").read_text(errors="replace")
        capture(ours, "sipp_uac")
    assert len(ours.received) >= 3


def test_sipp_uas_answers_the_invite_we_build(tmp_path: Path, media: socket.socket) -> None:
    sipp = require("sipp")
    with Endpoint.open() as ours:
        port = free_port(4)  # SIP, then media and media+2
        mport = port + 1
        args = [
            sipp,
            "-sf",
            str(SCENARIOS / "uas_basic.xml"),
            "-i",
            LOOPBACK,
            "-p",
            str(port),
            "-mi",
            LOOPBACK,
            "-mp",
            str(mport),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
        ]
        with child(args, tmp_path, tmp_path / "sipp.log") as process:
            wait_for_udp(port)
            target = URI.parse(f"sip:service@{LOOPBACK}:{port}")
            call, responses = invite(ours, target, (LOOPBACK, port), _media_port(media))
            assert [r.status for r in responses] == [100, 180, 200]
            assert responses[-1].sdp is not None and b"PCMU/8000" in responses[-1].sdp
            assert responses[1].to.tag == responses[2].to.tag
            assert hang_up(ours, call, (LOOPBACK, port)).status == 200
            assert process.wait(15) == 0, (tmp_path / "sipp.log").read_text(errors="replace")
        capture(ours, "sipp_uas")


def test_baresip_answers_the_invite_we_build(tmp_path: Path, media: socket.socket) -> None:
    baresip = require("baresip")
    with Endpoint.open() as ours:
        port = free_port(12)  # SIP (UDP and TCP), then RTP
        write_baresip_config(tmp_path / "bob", port, "bob", answer=True)
        with child([baresip, "-f", str(tmp_path / "bob")], tmp_path, tmp_path / "baresip.log"):
            wait_for_udp(port)
            target = URI.parse(f"sip:bob@{LOOPBACK}:{port}")
            call, responses = invite(ours, target, (LOOPBACK, port), _media_port(media))
            final = responses[-1]
            assert final.status == 200 and final.sdp is not None and b"PCMU" in final.sdp
            assert final.to.tag and final.contact[0].uri.port == port
            assert hang_up(ours, call, (LOOPBACK, port)).status == 200
        capture(ours, "baresip_uas")


def test_baresip_call_is_understood_and_answered(tmp_path: Path, media: socket.socket) -> None:
    baresip = require("baresip")
    with Endpoint.open() as ours:
        port = free_port(12)
        write_baresip_config(tmp_path / "alice", port, "alice", answer=False)
        dial = f"/dial sip:gosipd@{LOOPBACK}:{ours.port}"
        args = [baresip, "-f", str(tmp_path / "alice"), "-e", dial, "-t", "20"]
        with child(args, tmp_path, tmp_path / "baresip.log"):
            request, address = ours.receive_request("INVITE", timeout=10)
            assert request.sdp is not None and b"PCMU" in request.sdp
            assert request.contact and request.contact[0].uri.port == port
            tag = answer(ours, request, address, _media_port(media))
            # we hang up: a BYE from the UAS side of the dialog (RFC 3261 §12.2.1.1)
            from .peers import Call

            call = Call(
                request.call_id,
                request.to.with_tag(tag),
                request.from_,
                request.contact[0].uri,
                list(request.record_route),
                0,
            )
            assert hang_up(ours, call, address).status == 200
        capture(ours, "baresip_uac")
