"""The durable store: SQLite or PostgreSQL through SQLAlchemy Core, the source of truth for
subscribers, suppressions, runs, deliveries and their events. SQL only: values arrive
checked, and what a row means is in outreach.models."""
from __future__ import annotations

from .db import AnyRow, AnySelect, Bind, display_url, engine_for, make_engine, normalize_url
from .ledger import (
                     add_delivery,
                     add_system_delivery,
                     cancel_run,
                     claim,
                     create_run,
                     defer,
                     delivery_events_of,
                     due_deliveries,
                     find_run,
                     finish_run_if_done,
                     get_delivery,
                     get_run,
                     give_back,
                     hold,
                     in_flight,
                     mark_queued,
                     mark_run_planned,
                     pause_run,
                     plan_deliveries,
                     record_event,
                     record_failed,
                     record_progress,
                     record_retry,
                     record_sent,
                     record_sent_many,
                     record_skipped,
                     record_unknown,
                     requeue_unknown,
                     resume_run,
                     retry_run,
                     run_progress,
                     run_status,
                     set_run_status,
                     unfinished_runs,
                     unqueue,
)
from .migrations import current_revision, head_revision, require_current, upgrade

# Table objects live in `outreach.store.schema` (not re-exported: `subscribers` and
# `suppressions` are also the names of modules of this package).
from .schema import metadata, utcnow
from .subscribers import (
                     ImportResult,
                     Loaded,
                     add_subscriber,
                     attribute_names,
                     find_subscriber,
                     get_subscriber,
                     get_tags,
                     iter_subscribers,
                     load_for_sending,
                     set_status,
                     upsert,
)
from .suppressions import (
                     is_suppressed,
                     suppress,
                     suppressed_among,
                     suppression_key,
                     unsuppress,
)

__all__ = [
    # engines and schema
    "Bind", "AnyRow", "AnySelect", "make_engine", "engine_for", "normalize_url", "display_url",
    "upgrade", "current_revision", "head_revision", "require_current", "metadata", "utcnow",
    # subscribers and suppressions
    "ImportResult", "Loaded", "upsert", "add_subscriber", "get_subscriber", "find_subscriber", "get_tags",
    "set_status", "iter_subscribers", "attribute_names", "load_for_sending",
    "suppress", "unsuppress", "is_suppressed", "suppressed_among", "suppression_key",
    # ledger
    "create_run", "get_run", "find_run", "set_run_status", "mark_run_planned", "finish_run_if_done",
    "cancel_run", "pause_run", "resume_run", "retry_run", "in_flight", "run_status", "hold",
    "run_progress", "plan_deliveries", "add_delivery", "add_system_delivery", "get_delivery",
    "due_deliveries", "mark_queued", "claim", "record_sent", "record_sent_many", "defer", "give_back",
    "record_retry", "record_unknown", "unqueue", "unfinished_runs", "record_failed", "record_skipped",
    "record_progress", "record_event", "requeue_unknown", "delivery_events_of",
]
