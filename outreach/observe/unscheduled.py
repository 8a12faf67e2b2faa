"""What the scheduler leaves out, as its last tick found it: the campaign files that do not
validate and the campaigns whose schedule fails. Each tick writes the list to Redis, so
`outreach status`, the dashboard and /metrics show it without validating every campaign
and template again (seconds, in a command an operator runs to look).

One small JSON value that expires: a record older than a few ticks means no beat is ticking,
and whoever reads it works the list out for itself. Losing the key loses nothing: the next
tick writes it again. The key names the ledger (its URL without the password, hashed): two
deployments sharing a Redis never read each other's list.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis as redis_lib
import sqlalchemy as sa

from ..store.db import display_url

KEY = "outreach:not-scheduled"
MIN_KEEP = 120.0  # seconds; at least three ticks


@dataclass(frozen=True)
class NotScheduled:
    at: datetime                # the tick that found them
    problems: tuple[str, ...]   # one line each: file:line [field] message, or "campaign NAME: why"


def _key(ledger: sa.Engine) -> str:
    return f"{KEY}:{hashlib.blake2b(display_url(ledger).encode(), digest_size=8).hexdigest()}"


def record(redis: redis_lib.Redis, ledger: sa.Engine, problems: Sequence[str], tick_seconds: float,
           now: float | None = None) -> None:
    """Write what this tick left out (an empty list too: "nothing is left out" is news).
    Redis failing is not the tick's problem: it says nothing and goes on."""
    now = time.time() if now is None else now
    value = json.dumps({"at": now, "problems": list(problems)})
    try:
        redis.set(_key(ledger), value, ex=int(max(MIN_KEEP, 3 * tick_seconds)))
    except redis_lib.RedisError:
        pass


def recorded(redis: redis_lib.Redis, ledger: sa.Engine) -> NotScheduled | None:
    """The last tick's list while it is fresh, else None."""
    raw = redis.get(_key(ledger))
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return NotScheduled(datetime.fromtimestamp(float(data["at"]), UTC), tuple(str(p) for p in data["problems"]))
    except (ValueError, KeyError, TypeError):
        return None
