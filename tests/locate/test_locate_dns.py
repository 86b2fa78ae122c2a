"""RFC 3263 location against a real DNS server (dnsmasq) serving zones written here."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest
import trio

from gosipd.locate import (
    DnsCache,
    DnsServerFailure,
    DnsTimeout,
    Locator,
    NameNotFound,
    NoTargets,
    ResolverConfig,
    Target,
    Transport,
)
from tests.peers import NAPTR, SRV, Host

pytestmark = pytest.mark.interop

TRUNK_ZONE = [
    # NAPTR: UDP first; TCP and SCTP offered too (kept, not used: we send on UDP)
    NAPTR("trunk.lab.test", 10, 10, "S", "SIP+D2U", "_sip._udp.pool.lab.test"),
    NAPTR("trunk.lab.test", 20, 10, "S", "SIP+D2T", "_sip._tcp.pool.lab.test"),
    NAPTR("trunk.lab.test", 30, 10, "S", "SIP+D2S", "_sip._sctp.pool.lab.test"),
    # two primaries sharing priority 10 by weight, one backup at priority 20
    SRV("_sip._udp.pool.lab.test", "a.lab.test", 5061, priority=10, weight=60),
    SRV("_sip._udp.pool.lab.test", "b.lab.test", 5062, priority=10, weight=40),
    SRV("_sip._udp.pool.lab.test", "c.lab.test", 5063, priority=20, weight=0),
    # the name RFC 3263 would construct without NAPTR: must not be used when NAPTR exists
    SRV("_sip._udp.trunk.lab.test", "wrong.lab.test", 5999),
    Host("a.lab.test", "127.0.0.11"),
    Host("a.lab.test", "2001:db8::a"),
    Host("b.lab.test", "127.0.0.12"),
    Host("c.lab.test", "127.0.0.13"),
    Host("wrong.lab.test", "127.0.0.99"),
    Host("plain.lab.test", "127.0.0.1"),
    Host("v6only.lab.test", "::1"),
    Host("dual.lab.test", "127.0.0.1"),
    Host("dual.lab.test", "::1"),
    # only TCP offered: nothing a UDP client can use
    NAPTR("tcponly.lab.test", 10, 10, "S", "SIP+D2T", "_sip._tcp.tcponly.lab.test"),
    SRV("_sip._tcp.tcponly.lab.test", "a.lab.test", 5070),
    # NAPTR order decides between two pools
    NAPTR("ordered.lab.test", 20, 10, "S", "SIP+D2U", "_sip._udp.second.lab.test"),
    NAPTR("ordered.lab.test", 10, 10, "S", "SIP+D2U", "_sip._udp.first.lab.test"),
    SRV("_sip._udp.first.lab.test", "a.lab.test", 5071),
    SRV("_sip._udp.second.lab.test", "b.lab.test", 5072),
    # RFC 3263 without NAPTR: SRV on the constructed names
    SRV("_sip._udp.srvonly.lab.test", "b.lab.test", 5073),
    SRV("_sips._tcp.srvonly.lab.test", "c.lab.test", 5074),
]

A4 = Target("127.0.0.11", 5061, Transport.UDP, "a.lab.test")
A6 = Target("2001:db8::a", 5061, Transport.UDP, "a.lab.test")
B4 = Target("127.0.0.12", 5062, Transport.UDP, "b.lab.test")
C4 = Target("127.0.0.13", 5063, Transport.UDP, "c.lab.test")


@pytest.fixture
def trunk_dns(dnsmasq):
    return dnsmasq(TRUNK_ZONE)


def locator_for(server, **options) -> Locator:
    host, port = server.nameserver
    cache = options.pop("cache", None)
    rng = options.pop("rng", random.Random(3263))
    options.setdefault("timeout", 1.0)
    config = ResolverConfig(nameservers=(host,), port=port, **options)
    return Locator(config, rng=rng, cache=cache)


async def test_naptr_then_srv_by_priority_with_every_address_of_every_target(trunk_dns):
    location = await locator_for(trunk_dns).locate("trunk.lab.test")
    assert set(location.targets) == {A4, A6, B4, C4}
    assert location.targets[-1] == C4  # the backup priority always comes last
    # both addresses of a.lab.test stay together, IPv4 first
    index = location.targets.index(A4)
    assert location.targets[index + 1] == A6
    assert location.steps[:2] == (
        "NAPTR trunk.lab.test: 3 records",
        "SRV _sip._udp.pool.lab.test: 3 records",
    )


async def test_naptr_records_for_other_transports_are_kept_for_later(trunk_dns):
    location = await locator_for(trunk_dns).locate("trunk.lab.test")
    assert [(r.service, r.transport) for r in location.naptr] == [
        ("SIP+D2U", Transport.UDP),
        ("SIP+D2T", Transport.TCP),
        ("SIP+D2S", Transport.SCTP),
    ]
    assert {r.replacement for r in location.naptr} == {
        "_sip._udp.pool.lab.test",
        "_sip._tcp.pool.lab.test",
        "_sip._sctp.pool.lab.test",
    }
    assert all(t.transport is Transport.UDP for t in location.targets)


async def test_srv_weights_share_first_place_60_to_40_from_one_cached_lookup(trunk_dns):
    locator = locator_for(trunk_dns, rng=random.Random(2782))
    firsts = Counter()
    for _ in range(1000):
        location = await locator.locate("trunk.lab.test")
        firsts[location.targets[0].name] += 1
    # RFC 2782 running sum over 0..100: P(a first) = 61/101 = 0.604; sd over 1000 ~ 15.5
    assert abs(firsts["a.lab.test"] - 1000 * 61 / 101) < 78
    assert firsts["a.lab.test"] + firsts["b.lab.test"] == 1000
    # the answers came from the cache: the DNS server was asked once per question
    queries = Counter(trunk_dns.queries())
    assert queries[("SRV", "_sip._udp.pool.lab.test")] == 1
    assert queries[("NAPTR", "trunk.lab.test")] == 1


async def test_naptr_order_decides_between_pools(trunk_dns):
    location = await locator_for(trunk_dns).locate("ordered.lab.test")
    assert [(t.name, t.port) for t in location.targets] == [
        ("a.lab.test", 5071),
        ("a.lab.test", 5071),
        ("b.lab.test", 5072),
    ]


async def test_without_naptr_srv_is_asked_on_the_constructed_name(trunk_dns):
    location = await locator_for(trunk_dns).locate("srvonly.lab.test")
    assert location.targets == (Target("127.0.0.12", 5073, Transport.UDP, "b.lab.test"),)
    secure = await locator_for(trunk_dns).locate("srvonly.lab.test", secure=True)
    assert secure.targets == (Target("127.0.0.13", 5074, Transport.TLS, "c.lab.test"),)


async def test_a_host_with_only_an_a_record_falls_back_to_port_5060(trunk_dns):
    location = await locator_for(trunk_dns).locate("plain.lab.test")
    assert location.targets == (Target("127.0.0.1", 5060, Transport.UDP, "plain.lab.test"),)
    assert location.steps == (
        "NAPTR plain.lab.test: no records",
        "SRV _sip._udp.plain.lab.test: NXDOMAIN",
        "A plain.lab.test: 1 record",
        "AAAA plain.lab.test: no records",
    )
    secure = await locator_for(trunk_dns).locate("plain.lab.test", secure=True)
    assert secure.targets == (Target("127.0.0.1", 5061, Transport.TLS, "plain.lab.test"),)


async def test_a_host_with_only_an_aaaa_record_is_reached_over_ipv6(trunk_dns):
    location = await locator_for(trunk_dns).locate("v6only.lab.test")
    assert location.targets == (Target("::1", 5060, Transport.UDP, "v6only.lab.test"),)
    assert str(location.targets[0]) == "udp:[::1]:5060"


async def test_the_family_order_is_configurable(trunk_dns):
    v6_first = await locator_for(trunk_dns, families=("ipv6", "ipv4")).locate("dual.lab.test")
    assert [t.address for t in v6_first.targets] == ["::1", "127.0.0.1"]
    v4_only = await locator_for(trunk_dns, families=("ipv4",)).locate("dual.lab.test")
    assert [t.address for t in v4_only.targets] == ["127.0.0.1"]


async def test_an_explicit_port_means_a_and_aaaa_only(trunk_dns):
    dual = await locator_for(trunk_dns).locate("dual.lab.test", port=5080)
    assert [str(t) for t in dual.targets] == ["udp:127.0.0.1:5080", "udp:[::1]:5080"]
    with pytest.raises(NoTargets, match=r"tried A trunk\.lab\.test: no records, AAAA"):
        await locator_for(trunk_dns).locate("trunk.lab.test", port=5080)  # NAPTR not asked
    assert not any(kind in ("NAPTR", "SRV") for kind, name in trunk_dns.queries())


async def test_a_transport_parameter_skips_naptr(trunk_dns):
    location = await locator_for(trunk_dns).locate("tcponly.lab.test", transport="tcp")
    assert location.targets[0] == Target("127.0.0.11", 5070, Transport.TCP, "a.lab.test")
    assert ("NAPTR", "tcponly.lab.test") not in trunk_dns.queries()


async def test_maddr_replaces_the_host(trunk_dns):
    location = await locator_for(trunk_dns).locate("nothere.lab.test", maddr="plain.lab.test")
    assert location.targets[0].address == "127.0.0.1"


async def test_a_numeric_host_is_used_as_is_without_asking_the_dns(trunk_dns):
    locator = locator_for(trunk_dns)
    assert (await locator.locate("192.0.2.7")).targets == (Target("192.0.2.7", 5060),)
    assert (await locator.locate("[::1]", port=5070)).targets == (Target("::1", 5070),)
    assert (await locator.locate("192.0.2.7", secure=True)).targets == (
        Target("192.0.2.7", 5061, Transport.TLS),
    )
    assert trunk_dns.queries() == []


async def test_nxdomain_is_a_clear_error_naming_the_name_and_what_was_tried(trunk_dns):
    with pytest.raises(NameNotFound) as caught:
        await locator_for(trunk_dns).locate("nothere.lab.test")
    assert str(caught.value) == (
        "cannot locate nothere.lab.test: nothere.lab.test does not exist (NXDOMAIN); "
        "tried NAPTR nothere.lab.test, SRV _sip._udp.nothere.lab.test, "
        "A nothere.lab.test, AAAA nothere.lab.test"
    )
    assert caught.value.name == "nothere.lab.test"


async def test_a_name_that_offers_only_tcp_has_no_target_for_a_udp_client(trunk_dns):
    with pytest.raises(NoTargets) as caught:
        await locator_for(trunk_dns).locate("tcponly.lab.test")
    message = str(caught.value)
    assert message.startswith("cannot locate tcponly.lab.test: no NAPTR, SRV, A or AAAA")
    assert "NAPTR tcponly.lab.test: 1 record" in message
    assert "SRV _sip._udp.tcponly.lab.test: NXDOMAIN" in message


async def test_a_dns_server_that_does_not_answer_fails_within_the_timeout():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))  # bound, never read, never answers
        host, port = mute.getsockname()
        locator = Locator(ResolverConfig(nameservers=(host,), port=port, timeout=0.5))
        start = trio.current_time()
        with pytest.raises(DnsTimeout) as caught:
            await locator.locate("trunk.lab.test")
        elapsed = trio.current_time() - start
    assert 0.45 < elapsed < 1.0
    assert str(caught.value) == (
        f"cannot locate trunk.lab.test: DNS server {host}:{port} did not answer "
        "NAPTR trunk.lab.test within 0.5 s"
    )


async def test_a_refusing_dns_server_is_a_server_failure(trunk_dns):
    with pytest.raises(DnsServerFailure, match=r"example\.com.*REFUSED"):
        await locator_for(trunk_dns).locate("example.com")


async def test_answers_are_cached_for_their_ttl_and_asked_again_after(dnsmasq):
    server = dnsmasq(TRUNK_ZONE, ttl=30)
    now = [0.0]
    cache = DnsCache(clock=lambda: now[0])
    # IPv4 only: every answer is then positive (dnsmasq sends no SOA with NODATA, and a
    # negative answer without an SOA is not cached, see the next test)
    locator = locator_for(server, cache=cache, timeout=0.3, families=("ipv4",))
    first = await locator.locate("trunk.lab.test")
    assert len(cache) == 5  # NAPTR, SRV, and A of a, b and c
    server.stop()  # from now on, only the cache can answer

    now[0] = 29.9
    again = await locator.locate("trunk.lab.test")
    assert set(again.targets) == set(first.targets)

    now[0] = 30.0  # the TTL is over: the (dead) server is asked, and does not answer
    with pytest.raises(DnsTimeout):
        await locator.locate("trunk.lab.test")


async def test_a_server_that_dies_between_lookups_is_reported_as_such(dnsmasq):
    server = dnsmasq(TRUNK_ZONE)
    cache = DnsCache()
    await locator_for(server, cache=cache, families=("ipv4",)).locate("trunk.lab.test")
    server.stop()
    # NAPTR, SRV and A come from the cache; the AAAA lookups (run at once) time out
    locator = locator_for(server, cache=cache, timeout=0.3, families=("ipv4", "ipv6"))
    with pytest.raises(DnsTimeout) as caught:
        await locator.locate("trunk.lab.test")
    assert caught.value.name == "trunk.lab.test"
    assert "did not answer AAAA" in caught.value.reason
    assert caught.value.tried[:2] == (
        "NAPTR trunk.lab.test: 3 records",
        "SRV _sip._udp.pool.lab.test: 3 records",
    )


async def test_negative_answers_without_an_soa_are_not_cached(trunk_dns):
    locator = locator_for(trunk_dns)
    for _ in range(2):
        with pytest.raises(NameNotFound):
            await locator.locate("nothere.lab.test")
    assert Counter(trunk_dns.queries())[("NAPTR", "nothere.lab.test")] == 2
