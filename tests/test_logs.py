"""Structured logs (outreach/logs.py): one JSON object per line and event, its fields from the
call and from the unit of work around it, no password of a URL, the level from settings."""
from __future__ import annotations

import io
import json
import logging

import pytest

from outreach.errors import ValidationFailed
from outreach.logs import JsonFormatter, bound
from outreach.settings import load_settings


@pytest.fixture
def lines():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("outreach.test-logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    log.removeHandler(handler)


def test_an_event_is_one_json_line_with_its_fields_and_the_bound_ones(lines):
    log, read = lines
    # given a batch bound around the work
    with bound(batch="task-1"):
        # when an event is logged with its fields, over two lines of text
        log.info("run %s: %s sent\nsecond line", 12, 500,
                 extra={"event": "batch", "run": 12, "channel": "email", "account": "news",
                        "outcomes": {"sent": 500}})
    log.warning("outside")
    # then each is one JSON line: the fields, the bound batch only inside the block
    first, second = read()
    assert first["event"] == "batch" and first["run"] == 12 and first["outcomes"] == {"sent": 500}
    assert (first["batch"], first["channel"], first["account"], first["level"]) == ("task-1", "email", "news", "INFO")
    assert first["msg"] == "run 12: 500 sent\nsecond line" and first["logger"] == "outreach.test-logs"
    assert first["ts"].endswith("Z")
    assert "batch" not in second and second["level"] == "WARNING"


def test_a_password_in_a_url_or_a_traceback_is_not_written(lines):
    log, read = lines
    try:
        raise ConnectionError("cannot reach redis://:hunter2@10.0.0.1:6379/0")
    except ConnectionError:
        log.exception("broker postgresql://app:hunter2@db/outreach is down")
    (event,) = read()
    assert "hunter2" not in json.dumps(event)
    assert "postgresql://app:***@db/outreach" in event["msg"] and "ConnectionError" in event["exc"]


def test_the_level_comes_from_settings_and_a_wrong_one_names_the_variable(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "outreach.yaml").write_text("log_level: warning\n")
    assert load_settings(tmp_path, environ={}).log_level == "WARNING"
    assert load_settings(tmp_path, environ={"OUTREACH_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ValidationFailed, match="OUTREACH_LOG_LEVEL.*not a log level; use one of DEBUG"):
        load_settings(tmp_path, environ={"OUTREACH_LOG_LEVEL": "loud"})
    (tmp_path / "config" / "outreach.yaml").write_text("log_level: 3\n")
    with pytest.raises(ValidationFailed, match="outreach.yaml:1"):
        load_settings(tmp_path, environ={})
