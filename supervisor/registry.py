"""What the supervisor knows about live calls, and how it rebuilds that from the runtime directory.

Each call worker publishes two files under ``<runtime>/calls/``:
``<id>.sock`` (its control socket) and ``<id>.json`` (its identity and,
once it has one, its dialog state), and removes both when it ends cleanly.
The supervisor keeps nothing it cannot rebuild from them, so a restarted or
upgraded supervisor re-adopts every live call by scanning the directory; a
``.json`` whose process is gone marks a call that died unwatched.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gosipd.spare import LISTENER_PREFIX, LISTENER_SUFFIX

__all__ = ["CallRecord", "Registry", "read_published", "remove_published"]


@dataclass
class CallRecord:
    id: str
    pid: int | None = None
    started: float = field(default_factory=time.time)
    direction: str = "outbound"
    target: str = ""
    adopted: bool = False
    ended: bool = False
    last_event: dict[str, Any] | None = None
    exit_status: int | None = None
    sip_call_id: str | None = None
    #: The address an inbound call's INVITE came from (held against its per-source limit).
    source_host: str | None = None
    #: What an inbound call's messages come over ("udp", "tcp", "tls"): the supervisor
    #: relays it nothing that came over another.
    sip_transport: str = "udp"

    def summary(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "call": self.id,
            "pid": self.pid,
            "direction": self.direction,
            "target": self.target,
            "age_s": round(time.time() - self.started, 3),
            "adopted": self.adopted,
        }
        if self.last_event is not None:
            info["last_event"] = self.last_event.get("event")
        return info


def calls_dir(runtime_dir: Path) -> Path:
    return runtime_dir / "calls"


def read_published(runtime_dir: Path, call_id: str) -> dict[str, Any] | None:
    path = calls_dir(runtime_dir) / f"{call_id}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_published(runtime_dir: Path, call_id: str) -> None:
    for suffix in (".json", ".sock", ".sip"):
        with contextlib.suppress(FileNotFoundError):
            (calls_dir(runtime_dir) / f"{call_id}{suffix}").unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return False


class Registry:
    """Live calls by id, plus the scan that rebuilds it."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.calls: dict[str, CallRecord] = {}

    def __len__(self) -> int:
        return sum(1 for c in self.calls.values() if not c.ended)

    def live(self) -> list[CallRecord]:
        return [c for c in self.calls.values() if not c.ended]

    def scan(self) -> tuple[list[CallRecord], list[tuple[str, dict[str, Any]]]]:
        """(live calls to adopt, (id, published state) of calls whose process is gone)."""
        directory = calls_dir(self.runtime_dir)
        alive: list[CallRecord] = []
        dead: list[tuple[str, dict[str, Any]]] = []
        if not directory.is_dir():
            return alive, dead
        # control sockets that warm spares bound ahead of a call that never came
        for path in directory.glob(f"{LISTENER_PREFIX}*{LISTENER_SUFFIX}"):
            owner = path.name[len(LISTENER_PREFIX) : -len(LISTENER_SUFFIX)]
            if not owner.isdigit() or not pid_alive(int(owner)):
                path.unlink(missing_ok=True)
        for path in sorted(directory.glob("*.json")):
            call_id = path.stem
            if call_id in self.calls:
                continue
            state = read_published(self.runtime_dir, call_id)
            if state is None:
                continue
            pid = state.get("pid")
            if isinstance(pid, int) and pid_alive(pid):
                if state.get("leg_of"):
                    continue  # a call's second leg (Call.dial): its call answers for it
                record = CallRecord(
                    call_id,
                    pid=pid,
                    started=float(state.get("started", time.time())),
                    direction=str(state.get("direction", "outbound")),
                    target=str(state.get("target", "")),
                    adopted=True,
                    sip_call_id=state.get("sip_call_id"),
                    sip_transport=str(state.get("sip_transport") or "udp"),
                )
                self.calls[call_id] = record
                alive.append(record)
            else:
                dead.append((call_id, state))
        return alive, dead
