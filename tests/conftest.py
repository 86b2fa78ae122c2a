"""Shared pytest fixtures.

Real peers (tests/peers.py)
===========================
Each fixture below is a *factory*: call it in a test to start a real third-party peer on
loopback (or in a network namespace it creates), on ports picked at run time. Everything a
test started is stopped when it ends (by the PID we started, never by name); logs go to
the test's ``tmp_path`` and their tails are printed when the test fails. A missing binary
skips the test locally and fails it under ``CI=true``. Mark such tests
``@pytest.mark.interop`` (and ``@pytest.mark.root`` for the black hole).

``sipp_uas(variant="echo", *, host="127.0.0.1", redirect_to=None, retry_after=30,
user="labuser", password="labpass", keys=None)`` -> :class:`tests.peers.SippUAS`
    A SIPp UAS: ``echo`` (200 with PCMU SDP + RTP echo), ``100rel`` (reliable 180, needs
    PRACK), ``302`` (Contact ``redirect_to``), ``503`` (Retry-After ``retry_after``, also
    to OPTIONS), ``auth401`` (digest verified by SIPp), ``auth407`` (structure-checked),
    ``reinvite`` (moves the media to ``keys["reinvite_port"]`` with a re-INVITE, moves it
    back, hangs up), ``info`` (DTMF by SIP INFO, then BYE), ``codec`` (answers with
    ``keys["answer_pt"]`` / ``keys["answer_rtpmap"]``); ``keys`` adds ``-key`` pairs.
    ``.host``, ``.port``, ``.address``, ``.media_port``, ``.uri(user="echo")``;
    ``.received("INVITE")`` / ``.sent("200")`` count the datagrams it got and sent so far
    (retransmissions included, from its ``-trace_msg`` log, so immediate), and
    ``.message_log()`` is that log; ``.stats()`` is SIPp's own :class:`SippStats`
    (``successful``, ``failed``, ``created``, ``current``; up to 1 s old while it runs, and
    a call counts as successful only after the scenario's 4 s timewait); ``.stop()``
    returns the final stats, with ``echoed_rtp_packets``.

``sipp_uac(scenario, target, *, calls=1, rate=10, call_ms=1000, service="echo",
user="labuser", password="labpass", contact=None, expires=300, pcap=None, timeout=None)``
-> :class:`SippUAC`, started; ``result = await uac.wait()`` -> :class:`SippResult`
(``exit_status``: 0 all calls OK, 1 some failed, 255 timeout/fatal; ``ok``,
``successful``, ``failed``, ``stats``, ``errors``, ``messages``, ``received(name)``,
``sent(name)``). ``target`` is
``host:port``. Scenarios: ``uac_pcmu`` (PCMU from ``tests/lab/sipp/media/
pcmu_speech.pcap`` or ``pcap``), ``uac_100rel``, ``uac_302``, ``uac_503``, ``uac_auth``,
``uac_register``, ``uac_cancel`` (CANCEL after ``call_ms``; expects 487).

``baresip_uas(mode="uas", *, users=None, tone_hz=440, wav=None, record=False, dns=None,
registrar=None, password="labpass")`` -> :class:`BaresipUA`
    ``uas`` auto-answers (user ``bob``) sending a ``tone_hz`` sine; ``echo`` loops the
    audio back (user ``echo``); ``ring`` never answers (user ``ring``) until
    ``await ua.ctrl("accept")``. ``.uri``, ``.uri_for(user)``, ``.address``,
    ``await .ctrl(command, params)``, ``await .wait_event("CALL_ESTABLISHED")``,
    ``.events``, ``.recording_path`` (newest WAV of what it received, ``record=True``),
    ``.log()``.

``baresip_call(uri, *, seconds=5, tone_hz=700, wav=None, record=True, dns=None,
registrar=None, user="alice")`` -> :class:`BaresipCall`, started; ``await call.wait()``
-> :class:`BaresipCallResult` (``established``, ``exit_status``, ``log``,
``status_lines``, ``recording_path``).

``kamailio(role="registrar", *, realm="lab.test", backends=(), ping_interval=2)``
-> :class:`Kamailio`
    ``registrar``: registrar + proxy, digest realm ``lab.test``, users labuser/labpass,
    alice/alicepass, bob/bobpass (401 to REGISTER, 407 to other initial requests).
    ``dispatcher``: round-robin over ``backends`` [(host, port)], OPTIONS probing.
    ``tls_proxy`` (``certificate=``, ``ca=``, ``inner=``, ``outer=``): an edge proxy, TLS
    on ``.tls_port`` to UDP ``inner``, UDP on ``.port`` to TLS ``outer``; record-routed.
    ``.uri(user=None)``, ``.address``, ``.rpc("ul.dump")``, ``.log()``.

``dnsmasq(records=LAB_ZONE, *, domain="lab.test", ttl=60)`` -> :class:`DnsServer`
    Answers only from ``records`` (:class:`Host`, :class:`SRV`, :class:`NAPTR`,
    :class:`CNAME` from tests.peers): unknown names in ``domain`` -> NXDOMAIN, other
    domains -> REFUSED. ``.nameserver`` is ``(host, port)``; ``.queries()`` what it was
    asked.

``blackhole()`` -> :class:`Blackhole` (root)
    A fresh network namespace: ``.silent_addr`` drops everything (no ICMP),
    ``.refusing_addr`` answers ICMP port unreachable, ``.unreachable_addr`` fails ARP
    (EHOSTUNREACH, only with IP_RECVERR), ``.local_addr`` is our side of the veth.

``pjsua(*args)`` -> :class:`Pjsua`: PJSIP's pjsua2 in a process of its own
    (``tests/pjsua_peer.py``): a URI to call (``--ca``, ``--srtp mandatory``), or
    ``--listen PORT --cert PEM`` to answer one call over TLS; ``await .result()``.

``peer_lab`` is the :class:`tests.peers.PeerLab` behind them all.

``certificates`` -> {"ca", "server", "wrong_name"}: PEM paths from a trustme test CA
(``server`` names 127.0.0.1 and localhost, with its key in the same file).

Helpers in tests.peers: ``sip_options(host, port)`` (one OPTIONS, the reply as text),
``read_wav_mono(path)`` and ``tone_ratio(samples, rate, hz)`` (is this tone in that
recording?), ``LAB_ZONE`` (the manual lab's lab.test zone), ``MEDIA_DIR`` (the PCMU pcaps:
``pcmu_speech.pcap``, ``pcmu_tone1k_5s.pcap``), ``free_port()``, ``parse_sip_trace()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.peers import PeerLab


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Remember each phase's report on the item, so fixtures can see whether the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def peer_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PeerLab]:
    workdir = tmp_path / "peers"
    workdir.mkdir()
    lab = PeerLab(workdir)
    try:
        yield lab
    finally:
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        if failed:
            for name, text in lab.logs():
                print(f"\n----- {name} -----\n{text}")
        lab.close()


@pytest.fixture
def sipp_uas(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.sipp_uas


@pytest.fixture
def sipp_uac(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.sipp_uac


@pytest.fixture
def baresip_uas(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.baresip_uas


@pytest.fixture
def baresip_call(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.baresip_call


@pytest.fixture
def pjsua(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.pjsua


@pytest.fixture
def kamailio(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.kamailio


@pytest.fixture
def dnsmasq(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.dnsmasq


@pytest.fixture
def blackhole(peer_lab: PeerLab) -> Callable[..., Any]:
    return peer_lab.blackhole


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    """A test CA (trustme) and PEMs (certificate chain + key) it issued: ``server`` for
    127.0.0.1 and localhost, ``wrong_name`` for other.test; ``ca`` is the CA's."""
    ca = trustme.CA()
    out = {"ca": tmp_path / "ca.pem"}
    ca.cert_pem.write_to_path(str(out["ca"]))
    for name, hosts in (("server", ("127.0.0.1", "localhost")), ("wrong_name", ("other.test",))):
        cert = ca.issue_cert(*hosts)
        path = tmp_path / f"{name}.pem"
        path.write_bytes(
            b"".join(b.bytes() for b in cert.cert_chain_pems) + cert.private_key_pem.bytes()
        )
        out[name] = path
    return out
