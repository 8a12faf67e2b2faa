"""The circuit breaker: a run whose hard-bounce or complaint rate passes the thresholds of
`bounces.breaker` (once it has sent `min_sent`) pauses itself, saying why, for an operator
to resume or cancel. A list gone stale or a campaign people find unwanted is stopped before
mailbox providers start refusing everything the organization sends (Gmail and Yahoo reject
bulk senders whose complaint rate reaches 0.3%)."""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from ..settings import Settings
from ..store import feedback, ledger

log = logging.getLogger(__name__)


def verdict(settings: Settings, rates: feedback.Rates) -> str | None:
    """Why a run with these rates must stop, or None."""
    b = settings.bounces.breaker
    if rates.sent < b.min_sent:
        return None
    if rates.hard_bounce_rate >= b.hard_bounce_rate:
        return (f"circuit breaker: hard bounces reached {rates.hard_bounce_rate:.2%} ({rates.hard_bounces} of "
                f"{rates.sent} sent; bounces.breaker.hard_bounce_rate is {b.hard_bounce_rate:.2%})")
    if rates.complaint_rate >= b.complaint_rate:
        return (f"circuit breaker: complaints reached {rates.complaint_rate:.2%} ({rates.complaints} of "
                f"{rates.sent} sent; bounces.breaker.complaint_rate is {b.complaint_rate:.2%})")
    return None


# Counting what a run of a million has sent takes ~0.3 s on PostgreSQL, and a bad run brings
# bounces by the thousand: a run whose rates were far below the thresholds (less than half of
# them, with at least min_sent sent) is not counted again by this process for a few seconds.
# Its rates cannot double in that time unless as many bounces come as in all of its life so far.
RECHECK_AFTER = 5.0
_FAR_BELOW = 0.5
_last: dict[int, float] = {}  # run id -> when it was last found far below the thresholds
_last_lock = threading.Lock()


def _closeness(settings: Settings, rates: feedback.Rates) -> float:
    b = settings.bounces.breaker
    return max(rates.hard_bounce_rate / b.hard_bounce_rate, rates.complaint_rate / b.complaint_rate)


def check(engine: Engine, settings: Settings, run_id: int) -> str | None:
    """Pause run `run_id` when its rates call for it; return why when this call paused it."""
    now = time.monotonic()
    with _last_lock:
        if now - _last.get(run_id, -RECHECK_AFTER) < RECHECK_AFTER:
            return None
    rates = feedback.run_rates(engine, [run_id])[run_id]
    why = verdict(settings, rates)
    if why is None:
        far = rates.sent >= settings.bounces.breaker.min_sent and _closeness(settings, rates) < _FAR_BELOW
        with _last_lock:
            if far:
                if len(_last) > 10_000:
                    _last.clear()
                _last[run_id] = now
            else:
                _last.pop(run_id, None)
        return None
    if not _pause(engine, run_id, why):
        return None  # already paused, finished or cancelled
    log.error("run %d paused: %s; check the list and the content, then resume or cancel it", run_id, why,
              extra={"event": "breaker", "run": run_id, "outcome": "paused", "reason": why})
    return why


def _pause(engine: Engine, run_id: int, why: str) -> bool:
    return ledger.pause_run(engine, run_id, why)
