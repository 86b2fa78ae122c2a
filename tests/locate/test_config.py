"""Location and failover settings from the TOML config, with errors that name the key."""

from __future__ import annotations

import tomllib

import pytest

from gosipd.locate import FailoverPolicy, ResolverConfig, Transport

CONFIG = """
[dns]
nameservers = ["127.0.0.53", "::1"]
port = 5353
timeout = 1
families = ["ipv6", "ipv4"]
transports = ["UDP"]

[failover]
target_timeout = 1.5
max_attempts = 4
total_timeout = 10
retryable = [408, 500, 503]
"""


def test_a_toml_config_gives_the_resolver_and_the_failover_settings():
    table = tomllib.loads(CONFIG)
    assert ResolverConfig.from_mapping(table["dns"]) == ResolverConfig(
        nameservers=("127.0.0.53", "::1"),
        port=5353,
        timeout=1.0,
        families=("ipv6", "ipv4"),
        transports=(Transport.UDP,),
    )
    assert FailoverPolicy.from_mapping(table["failover"]) == FailoverPolicy(
        target_timeout=1.5, max_attempts=4, total_timeout=10.0, retryable=frozenset({408, 500, 503})
    )


def test_empty_tables_give_the_defaults():
    assert ResolverConfig.from_mapping({}) == ResolverConfig()
    assert FailoverPolicy.from_mapping({}) == FailoverPolicy()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"nameserver": ["1.1.1.1"]}, "ResolverConfig: unknown key 'nameserver'"),
        ({"port": "53"}, "ResolverConfig.port: a number expected, got '53'"),
        ({"port": 53.5}, "ResolverConfig.port: a whole number expected"),
        ({"families": ["ipv5"]}, "ResolverConfig.families: 'ipv5' is not 'ipv4' or 'ipv6'"),
        ({"transports": ["ws"]}, "ResolverConfig.transports: unknown transport 'ws'"),
        ({"timeout": 0}, "the DNS timeout must be positive"),
        ({"nameservers": "127.0.0.1"}, "ResolverConfig.nameservers: a list expected"),
    ],
)
def test_a_bad_dns_table_is_refused_naming_the_key(table, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        ResolverConfig.from_mapping(table)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"timeout": 2}, "FailoverPolicy: unknown key 'timeout'"),
        ({"max_attempts": True}, "FailoverPolicy.max_attempts: a number expected"),
        ({"retryable": [503, "500"]}, "FailoverPolicy.retryable: SIP status codes expected"),
        ({"target_timeout": -1}, "timeouts must be positive"),
    ],
)
def test_a_bad_failover_table_is_refused_naming_the_key(table, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        FailoverPolicy.from_mapping(table)
