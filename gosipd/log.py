"""Structured logging for every gosipd process: structlog, JSON lines, secrets redacted.

Events are the log: each line is one JSON object with ``event`` and ``ts``;
a call worker binds its ``call`` id once (contextvars) so every line it
writes carries it. Redaction is a processor, not a habit: keys that name a
secret and SIP authorization headers are masked before anything is written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger", "redact"]

SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|credential", re.IGNORECASE)
AUTH_HEADER = re.compile(
    r"^((?:proxy-)?authorization\s*:\s*\w+\s).*$", re.IGNORECASE | re.MULTILINE
)
MASK = "***"


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secrets masked (recursively through dicts and lists)."""
    if key and SECRET_KEYS.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and ("uthorization" in value):
        return AUTH_HEADER.sub(lambda m: m.group(1) + MASK, value)
    return value


def _redact_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], key)
    return event_dict


def _timestamp(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.setdefault("ts", round(time.time(), 6))
    return event_dict


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines to ``stream`` (stderr), at ``level`` and above."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            _redact_processor,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    """A logger with ``bound`` values, bound now: make it once logging is configured."""
    return structlog.get_logger().bind(**bound)


def module_logger(**bound: Any) -> Any:
    """A logger for module level, made at import time: resolved at each use, so it writes
    through the configuration set up later (JSON lines). Slower per line than
    ``get_logger``: not for a call's hot path."""
    return structlog.get_logger(**bound)
