"""The tick, and queueing due deliveries for the workers.

    tick ──▶ planner.schedule_runs
         ├─▶ dispatch_due: due deliveries → mark_queued (lease) → enqueue(channel, ids)
         └─▶ what it left out, for operators (observe/unscheduled.py)

A lost task costs nothing but time: its lease expires and the next tick queues its rows
again (or settles them as `unknown` when a worker had started sending them).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .. import store
from ..channels import CHANNELS
from ..observe import unscheduled
from .planner import TickReport, left_out, schedule_runs
from .runtime import Runtime
from .scheduling import now_utc

Enqueue = Callable[[str, list[int]], None]


def tick(rt: Runtime, enqueue: Enqueue, now: datetime | None = None) -> TickReport:
    now = now or now_utc()
    report = schedule_runs(rt, now)
    report.queued = dispatch_due(rt, enqueue, now)
    unscheduled.record(rt.redis, rt.engine, left_out(rt, now, report), rt.settings.dispatch.tick_seconds,
                       now.timestamp())
    return report


def dispatch_due(rt: Runtime, enqueue: Enqueue, now: datetime) -> dict[str, int]:
    """Queue every due delivery in batches. The lease is how long a batch may sit in the
    broker and a worker before the tick assumes it was lost and queues it again."""
    d = rt.settings.dispatch
    counts: dict[str, int] = {}
    for kind, channel in CHANNELS.items():
        total = 0
        while True:
            ids = store.due_deliveries(rt.engine, kind, now, d.batch_size * 20)
            if not ids:
                break
            queued = store.mark_queued(rt.engine, ids, now + d.lease, now=now, resend_unknown=channel.idempotent)
            for i in range(0, len(queued), d.batch_size):
                enqueue(kind, queued[i:i + d.batch_size])
            total += len(queued)
            if len(ids) < d.batch_size * 20 or not queued:
                break
        if total:
            counts[kind] = total
    return counts
