"""What the scanners that reach every public SIP port within minutes learn about gosipd.

sipvicious (Debian's ``sipvicious``, installed by .ci/run) is the toolkit behind the
"friendly-scanner" floods: ``svmap`` finds SIP services and fingerprints them by their
User-Agent, ``svwar`` enumerates extensions by comparing the answers to a user that
cannot exist with those to each guess. gosipd names no software, answers every unknown
user the same way whatever the method, and with ``[inbound] allowed_sources`` does not
answer strangers at all.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.attacker import Attacker, options
from tests.peers import require_binary
from tests.supervisor.daemon import Daemon

Start = Callable[..., Daemon]

ROUTED = {"alice": "echo", "1000": "echo", "2001": "echo"}
#: guesses a scanner's dictionary holds: every routed user, and users nobody routes
GUESSES = ["100", "1000", "alice", "bob", "2000", "2001", "admin", "support"]


def scan(tool: str, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [require_binary(tool), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def dictionary(tmp_path: Path) -> Path:
    path = tmp_path / "guesses.txt"
    path.write_text("\n".join(GUESSES) + "\n")
    return path


def found_extensions(output: str) -> set[str]:
    """The extensions in svwar's result table (``| 1000 | noauth |`` rows)."""
    rows = (line.split("|") for line in output.splitlines() if line.startswith("|"))
    return {cells[1].strip() for cells in rows if len(cells) > 2} - {"Extension"}


def test_svmap_finds_a_sip_service_but_no_software_to_fingerprint(gosipd: Start) -> None:
    daemon = gosipd(routes=ROUTED)
    output = scan("svmap", "-p", str(daemon.sip_port), "127.0.0.1")
    rows = [line for line in output.splitlines() if f"127.0.0.1:{daemon.sip_port}" in line]
    assert len(rows) == 1, output
    assert rows[0].split("|")[2].strip() == "unknown"  # no Server / User-Agent header
    assert "gosipd" not in output.lower()


@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS"])
def test_svwar_enumerates_no_routed_user(gosipd: Start, dictionary: Path, method: str) -> None:
    daemon = gosipd(routes=ROUTED)
    output = scan(
        "svwar", "-p", str(daemon.sip_port), "-m", method, "-d", str(dictionary), "127.0.0.1"
    )
    assert found_extensions(output) == set(), output
    status = daemon.request({"op": "status"})
    assert status["counters"]["inbound"] == 0  # no scan request forked a worker
    assert status["calls"] == 0


def test_strangers_outside_allowed_sources_find_nothing_even_by_invite(
    gosipd: Start, dictionary: Path
) -> None:
    # An INVITE to a routed user is a call, and answered: only source filtering hides it.
    # Here the trunk is 127.0.0.2 and the scanner, on 127.0.0.1, is a stranger.
    daemon = gosipd(routes=ROUTED, inbound='allowed_sources = ["127.0.0.2/32"]')
    port = str(daemon.sip_port)
    assert "found nothing" in scan("svmap", "-p", port, "127.0.0.1")
    output = scan("svwar", "-p", port, "-m", "INVITE", "-d", str(dictionary), "127.0.0.1")
    assert found_extensions(output) == set(), output

    trunk = Attacker(daemon.sip_port, host="127.0.0.2")
    try:
        trunk.send(options(trunk.port, user="alice"))
        assert [r.status for r in trunk.responses(until=200)] == [200]
    finally:
        trunk.sock.close()
    status = daemon.request({"op": "status"})
    assert status["counters"]["inbound"] == 0  # not one worker forked for the scan
    # svmap's probe and svwar's first guess were dropped unanswered; svwar gave up there
    assert status["counters"]["inbound_strangers"] >= 2


def test_without_allowed_sources_an_invite_scan_reaches_only_routed_users(
    gosipd: Start, dictionary: Path
) -> None:
    """The documented limit (docs/security.md): a routed user answers calls, so an INVITE
    scan from anywhere tells it from an unrouted one; nothing else does."""
    daemon = gosipd(routes=ROUTED)
    output = scan(
        "svwar", "-p", str(daemon.sip_port), "-m", "INVITE", "-d", str(dictionary), "127.0.0.1"
    )
    assert found_extensions(output) <= set(ROUTED), output
