"""A PJSIP (pjsua2) peer for the interop tests, run as a process of its own.

``python -m tests.pjsua_peer URI --seconds 3 --ca CA.pem --srtp mandatory`` places one
call from 127.0.0.1 over TLS (or what the URI says), holds it for ``seconds`` once
confirmed, and hangs up. ``python -m tests.pjsua_peer --listen PORT --cert PEM`` answers
one call over TLS on that port instead and waits for the caller to hang up. Either way
it prints one JSON line: ``confirmed``, ``status`` (the final response, or 0),
``rx_packets``/``tx_packets`` (RTP of the call's stream) and ``disconnect_status`` or
``disconnected``. PJSIP runs in this process's main thread (``threadCnt = 0``), driven
by ``libHandleEvents``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import pjsua2 as pj

SRTP = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}


class PeerCall(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.confirmed_at: float | None = None
        self.disconnected = False
        self.status = 0
        self.media_ready = False

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.lastStatusCode:
            self.status = int(info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                manager = pj.Endpoint.instance().audDevManager()
                manager.getCaptureDevMedia().startTransmit(audio)
                audio.startTransmit(manager.getPlaybackDevMedia())
                self.media_ready = True


class AnsweringAccount(pj.Account):  # type: ignore[misc]
    """Answers the first call with a 200 at once."""

    def __init__(self) -> None:
        super().__init__()
        self.call: PeerCall | None = None

    def onIncomingCall(self, prm: Any) -> None:
        call = PeerCall(self, prm.callId)
        answer = pj.CallOpParam()
        answer.statusCode = 200 if self.call is None else 486
        call.answer(answer)
        if self.call is None:
            self.call = call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("uri", nargs="?")
    parser.add_argument("--listen", type=int, help="answer one call over TLS on this port")
    parser.add_argument("--cert", help="the PEM (certificate and key) to serve TLS with")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--ca", help="the CAs to verify the server against (TLS)")
    parser.add_argument("--srtp", choices=sorted(SRTP), default="off")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)

    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = 3
    config.logConfig.consoleLevel = 3
    config.medConfig.noVad = True
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = transport.publicAddress = "127.0.0.1"
    kind = pj.PJSIP_TRANSPORT_UDP
    uri = (args.uri or "").lower()
    if args.listen:
        kind = pj.PJSIP_TRANSPORT_TLS
        transport.port = args.listen
        transport.tlsConfig.certFile = transport.tlsConfig.privKeyFile = args.cert
        transport.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
    elif "transport=tls" in uri or uri.startswith("sips:"):
        kind = pj.PJSIP_TRANSPORT_TLS
        if args.ca:
            transport.tlsConfig.CaListFile = args.ca
        transport.tlsConfig.verifyServer = True
        transport.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
    elif "transport=tcp" in uri:
        kind = pj.PJSIP_TRANSPORT_TCP
    endpoint.transportCreate(kind, transport)
    endpoint.libStart()
    endpoint.audDevManager().setNullDev()

    account_config = pj.AccountConfig()
    account_config.idUri = "sip:pjsua@127.0.0.1"
    account_config.mediaConfig.srtpUse = SRTP[args.srtp]
    account_config.mediaConfig.srtpSecureSignaling = 0
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account_config.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    account_config.natConfig.iceEnabled = False
    account = AnsweringAccount()
    account.create(account_config)
    if args.listen:
        print(json.dumps({"listening": args.listen}), flush=True)
        deadline = time.monotonic() + args.timeout
        while account.call is None and time.monotonic() < deadline:
            endpoint.libHandleEvents(20)
        result: dict[str, Any] = {"confirmed": False}
        answered = account.call
        if answered is not None:
            while not answered.disconnected and time.monotonic() < deadline:
                endpoint.libHandleEvents(20)
                if answered.confirmed_at is not None and not answered.disconnected:
                    stat = answered.getStreamStat(0)  # the last figures before the BYE
                    result["rx_packets"] = int(stat.rtcp.rxStat.pkt)
                    result["tx_packets"] = int(stat.rtcp.txStat.pkt)
            result["confirmed"] = answered.confirmed_at is not None
            result["status"] = answered.status
            result["disconnected"] = answered.disconnected
        print(json.dumps(result), flush=True)
        os._exit(0)

    call = PeerCall(account)
    result = {"confirmed": False}
    try:
        call.makeCall(args.uri, pj.CallOpParam(True))
        deadline = time.monotonic() + args.timeout
        while not call.disconnected and time.monotonic() < deadline:
            endpoint.libHandleEvents(20)
            if (
                call.confirmed_at is not None
                and time.monotonic() > call.confirmed_at + args.seconds
            ):
                break
        result["confirmed"] = call.confirmed_at is not None
        result["status"] = call.status
        if call.confirmed_at is not None and not call.disconnected:
            stat = call.getStreamStat(0)
            result["rx_packets"] = int(stat.rtcp.rxStat.pkt)
            result["tx_packets"] = int(stat.rtcp.txStat.pkt)
            call.hangup(pj.CallOpParam(True))
            hung_up = time.monotonic() + 5
            while not call.disconnected and time.monotonic() < hung_up:
                endpoint.libHandleEvents(20)
        result["disconnect_status"] = call.status
    except pj.Error as exc:
        result["error"] = exc.info()
    print(json.dumps(result), flush=True)
    # pjsua2's libDestroy asserts on Call objects still alive: the process end tidies up
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
