"""The circuit breaker: a run whose hard-bounce or complaint rate passes the thresholds of
`bounces.breaker` (once it has sent `min_sent`) pauses itself, saying why, for an operator
to resume or cancel. A list gone stale or a campaign people find unwanted is stopped before
mailbox providers start refusing everything the organization sends (Gmail and Yahoo reject
bulk senders whose complaint rate reaches 0.3%)."""
from __future__ import annotations

import logging

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


def check(engine: Engine, settings: Settings, run_id: int) -> str | None:
    """Pause run `run_id` when its rates call for it; return why when this call paused it."""
    why = verdict(settings, feedback.run_rates(engine, [run_id])[run_id])
    if why is None:
        return None
    if not _pause(engine, run_id, why):
        return None  # already paused, finished or cancelled
    log.error("run %d paused: %s; check the list and the content, then resume or cancel it", run_id, why,
              extra={"event": "breaker", "run": run_id, "outcome": "paused", "reason": why})
    return why


def _pause(engine: Engine, run_id: int, why: str) -> bool:
    return ledger.pause_run(engine, run_id, why)
