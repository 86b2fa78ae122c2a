"""Header pass-through on the wire: what a dial sets reaches the far end's INVITE (and only
the INVITE); what a trunk-style caller sends reaches the app, bounded by the allow-list,
with an asserted identity only from a trusted source (RFC 3325 §5)."""

from __future__ import annotations

from typing import Any

from gosipd.call import Call
from gosipd.config import HeadersConfig, InboundConfig
from gosipd.passthrough import HeaderNames
from tests.worker.conftest import CallPlacer, config_with, ended_event, events_named, place_call
from tests.worker.test_inbound import answering

__all__ = ["place_call"]  # the fixture

IDENTITY = '"Acme Support" <sip:+15551230000@trunk.example;user=phone>'
DIAL_HEADERS = [
    ("P-Asserted-Identity", IDENTITY),
    ("Privacy", "id"),
    ("Diversion", "<sip:+15559998888@trunk.example>;reason=unconditional"),
    ("X-Campaign", "spring-42"),
]


async def test_a_dials_headers_reach_the_far_ends_invite_and_only_it(
    sipp_uas, place_call: CallPlacer
):
    uas = sipp_uas("echo")

    async def app(call: Call) -> None:
        await call.hangup()

    runtime = await place_call(uas.uri("echo"), app, headers=DIAL_HEADERS)

    assert ended_event(runtime)["answered"]
    received = [entry for entry in uas.trace() if not entry.sent]
    invites = [entry.text for entry in received if entry.name == "INVITE"]
    assert invites, uas.message_log()
    for invite in invites:
        for name, value in DIAL_HEADERS:
            assert f"{name}: {value}\n" in invite, invite
    others = [entry.text for entry in received if entry.name in ("ACK", "BYE")]
    assert len(others) >= 2
    assert not any("P-Asserted-Identity" in text or "X-Campaign" in text for text in others)


async def inbound_call(sipp_uac, tmp_path, inbound: InboundConfig, **config: Any) -> dict:
    seen: dict[str, Any] = {}

    async def app(call: Call) -> None:
        seen.update(
            name=call.caller_name,
            identity=call.asserted_identity,
            headers=call.headers,
            ticket=call.header("x-ticket"),
        )
        await call.hangup()

    async with answering(tmp_path, app, config_with(inbound=inbound, **config)) as front:
        host, port = front.address
        result = await sipp_uac("uac_identity", f"{host}:{port}", call_ms=3000, timeout=10).wait()
        await front.ended.wait()
    assert result.received("200") >= 1, result.errors
    (incoming,) = events_named(front.only_call(), "call.incoming")
    return {"event": incoming, "app": seen}


async def test_a_trusted_trunks_identity_and_headers_reach_the_app(sipp_uac, tmp_path):
    got = await inbound_call(sipp_uac, tmp_path, InboundConfig(trusted_sources=("127.0.0.0/8",)))

    event, app = got["event"], got["app"]
    assert event["caller_name"] == app["name"] == "Alice Example"
    assert event["trusted_source"] is True
    assert event["asserted_identity"] == app["identity"] == "sip:+15551230001@trunk.lab;user=phone"
    assert event["headers"] == [
        'P-Asserted-Identity: "Alice Example" <sip:+15551230001@trunk.lab;user=phone>, '
        "<tel:+15551230001>",
        "Privacy: id",
        "Diversion: <sip:+15559998888@trunk.lab>;reason=unconditional;counter=1",
        "History-Info: <sip:+15559998888@trunk.lab>;index=1",
        "X-Ticket: 42",
        "Subject: lab uac_identity",
    ]
    assert event["headers_dropped"] == 1  # X-Huge, 2000 octets: dropped, not cut short
    assert app["ticket"] == "42"
    assert [f"{n}: {v}" for n, v in app["headers"]] == event["headers"]
    assert not any("P-Charging-Vector" in h for h in event["headers"])


async def test_an_untrusted_callers_asserted_identity_is_not_believed(sipp_uac, tmp_path):
    got = await inbound_call(sipp_uac, tmp_path, InboundConfig(trusted_sources=("192.0.2.0/24",)))

    event, app = got["event"], got["app"]
    assert event["trusted_source"] is False
    assert event["asserted_identity"] is None and app["identity"] is None
    assert any(h.startswith("P-Asserted-Identity:") for h in event["headers"])  # as sent


async def test_the_receive_allow_list_decides_what_the_app_sees(sipp_uac, tmp_path):
    headers = HeadersConfig(receive=HeaderNames.parse(["X-*", "p-charging-vector"]))
    got = await inbound_call(sipp_uac, tmp_path, InboundConfig(), headers=headers)

    event = got["event"]
    assert event["headers"] == [
        "X-Ticket: 42",
        "P-Charging-Vector: icid-value=1234bcd9876;icid-generated-at=192.0.2.1",
    ]
    assert event["headers_dropped"] == 1
    assert event["asserted_identity"] is None  # no trusted source configured
