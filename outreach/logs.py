"""Structured logs: one JSON object per line, per event, for the worker, beat and web processes.

    {"ts": "2026-11-26T02:40:01.123Z", "level": "INFO", "logger": "outreach.delivery.sender",
     "event": "batch", "msg": "run 12 alert/mail: 500 sent", "run": 12, "batch": "4f1c...",
     "channel": "email", "account": "email:news", "sent": 500, "failed": 0, ...}

An event's fields come from `extra=` on the logging call, and from `bound(...)` around a unit
of work (the Celery task binds its batch id, so every line of that batch carries it). Plain
`log.info("...")` calls, Celery's and uvicorn's included, become lines with `msg` alone.
The level comes from settings (`log_level`, OUTREACH_LOG_LEVEL), a command's --loglevel over it.

What never goes in: a secret. Events name runs, batches, channels, accounts (by name) and
outcomes; a message text that carries a URL has its password replaced (`redact`).
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("outreach_log_fields", default={})  # noqa: B039
# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_PASSWORD_IN_URL = re.compile(r"(//[^/@\s:]*:)[^@\s/]*@")


def redact(text: str) -> str:
    """`scheme://user:password@host` → `scheme://user:***@host`."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every event logged inside the block (this thread or task only)."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        event.update(_bound.get())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(event, default=str, ensure_ascii=False)


def configure(level: str) -> None:
    """Every logger of the process writes JSON lines to stderr at `level` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
