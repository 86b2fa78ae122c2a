"""The log is JSON lines from every logger, with secrets redacted."""

from __future__ import annotations

import io
import json

from gosipd.log import configure_logging, module_logger

#: made at import time, as supervisor/inbound.py makes its own
EARLY = module_logger(component="early")


def test_a_logger_made_before_configuration_writes_json_lines():
    out = io.StringIO()
    configure_logging("info", out)
    EARLY.info("inbound.refused", reason="rate")
    EARLY.bind(call="c1").warning("later")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "inbound.refused" and first["component"] == "early"
    assert second["call"] == "c1" and second["level"] == "warning"
