"""Scheduling, planning and sending as plain functions over a Runtime.

Celery calls these (tasks.py), and so do `outreach send` and the tests, without a worker.

    tick ──▶ schedule_runs: due occurrences → create_run (unique) → plan_run
         └─▶ dispatch_due: due deliveries → mark_queued (lease) → enqueue(channel, ids)
    send_batch(ids): claim → eligibility → rate-limit permits → compose → send → record

Correctness rests on the ledger, not on Celery: a run is created at most once, a delivery is
claimed before it is sent, a lost task's lease expires and the tick queues it again.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .. import store
from ..authoring.campaigns import Campaign, Step
from ..channels.base import SendResult
from ..errors import (ChannelConfigurationError, DeliveryError, PermanentError, RateLimited,
                      RecipientRejected, TemplateRenderError, TransientError)
from ..store.audience import audience_select
from .runtime import Runtime
from .scheduling import local_due, now_utc, occurrences
from ..store import scheduler_state

log = logging.getLogger(__name__)

Enqueue = Callable[[str, list[int]], None]
CHANNELS = ("email", "x")
CURSOR = "tick"
STUCK_PLANNING = timedelta(minutes=2)


@dataclass
class TickReport:
    created: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    planned: dict[int, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)


def tick(rt: Runtime, enqueue: Enqueue, now: datetime | None = None) -> TickReport:
    now = now or now_utc()
    report = schedule_runs(rt, now)
    report.queued = dispatch_due(rt, enqueue, now)
    return report


# --- scheduling ----------------------------------------------------------------------------

def schedule_runs(rt: Runtime, now: datetime) -> TickReport:
    """Create the runs of every occurrence that came due since the last tick.

    Two beats racing, or a beat restarted, compute the same occurrences; UNIQUE(campaign,
    step, occurrence) lets exactly one create each run. An occurrence missed while the beat
    was down is created when it comes back, or recorded `skipped` when older than `expires`.
    """
    report = TickReport()
    since = scheduler_state.get_cursor(rt.engine, CURSOR) or now - rt.settings.dispatch.catch_up
    for campaign in rt.campaigns().values():
        for step in campaign.steps:
            for occ in occurrences(campaign, step, since, now):
                late = step.expires is not None and now - occ > step.expires
                run_id = store.create_run(rt.engine, campaign.name, step.id, occ,
                                          status="skipped" if late else "planning")
                if run_id is None:
                    continue
                (report.skipped if late else report.created).append(run_id)
                if late:
                    log.warning("run %s %s/%s at %s skipped: %s late (expires %s)", run_id, campaign.name,
                                step.id, occ.isoformat(), now - occ, step.expires)
                else:
                    report.planned[run_id] = plan_run(rt, run_id)
    scheduler_state.advance_cursor(rt.engine, CURSOR, now)
    # A planner that died between creating and planning a run left it in `planning`;
    # planning is idempotent, so finish the job.
    for run_id in scheduler_state.stuck_runs(rt.engine, "planning", now - STUCK_PLANNING):
        report.planned[run_id] = plan_run(rt, run_id)
    return report


def plan_run(rt: Runtime, run_id: int, due_at: datetime | None = None) -> int:
    """Expand a run into its deliveries (idempotent); return how many were added.
    `due_at` overrides every delivery's due time (the demo sends everything now)."""
    run = store.get_run(rt.engine, run_id)
    if run is None or run.status != "planning":
        return 0
    campaign = rt.campaigns().get(run.campaign)
    step = _step(campaign, run.step)
    if campaign is None or step is None:
        store.set_run_status(rt.engine, run_id, "cancelled",
                             note=f"campaign {run.campaign}/{run.step} no longer exists or does not validate")
        return 0
    if step.channel == "email":
        account = rt.settings.smtp_account(step.account).name
        due = (due_at or ((lambda zone: local_due(campaign, step, run.occurrence, zone))
                          if step.schedule.local_time else run.occurrence))
        select = audience_select(campaign.audience, rt.segments())
        added = store.plan_deliveries(rt.engine, run_id, "email", account, select, due)
    else:
        account = rt.settings.x_account(step.account)
        added = 1 if store.add_delivery(rt.engine, run_id, account.handle, "x", account.name,
                                        due_at or run.occurrence) else 0
    store.mark_run_planned(rt.engine, run_id)
    log.info("planned run %s (%s/%s): %s deliveries", run_id, run.campaign, run.step, added)
    return added


def create_run_now(rt: Runtime, campaign: Campaign, step: Step, now: datetime | None = None, *,
                   occurrence: datetime | None = None, due_at: datetime | None = None) -> int | None:
    """`outreach send --now`: a run of `step` at this instant (a relative step follows after
    its delay), planned at once. None when a run of that occurrence already exists."""
    now = (now or now_utc()).replace(microsecond=0)
    occ = occurrence or now + (step.schedule.delay if step.schedule.after else timedelta(0))
    run_id = store.create_run(rt.engine, campaign.name, step.id, occ)
    if run_id is not None:
        plan_run(rt, run_id, due_at=due_at)
    return run_id


# --- dispatching ---------------------------------------------------------------------------

def dispatch_due(rt: Runtime, enqueue: Enqueue, now: datetime) -> dict[str, int]:
    """Queue every due delivery in batches. The lease is how long a batch may sit in the
    broker and a worker before the tick assumes it was lost and queues it again."""
    d = rt.settings.dispatch
    counts: dict[str, int] = {}
    for channel in CHANNELS:
        total = 0
        while True:
            ids = store.due_deliveries(rt.engine, channel, now, d.batch_size * 20)
            if not ids:
                break
            queued = store.mark_queued(rt.engine, ids, now + d.lease, now=now)
            for i in range(0, len(queued), d.batch_size):
                enqueue(channel, queued[i:i + d.batch_size])
            total += len(queued)
            if len(ids) < d.batch_size * 20 or not queued:
                break
        if total:
            counts[channel] = total
    return counts


# --- sending -------------------------------------------------------------------------------

@dataclass
class BatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    deferred: int = 0
    claimed: int = 0
    # The throttled rows and when the limiter frees permits: the task asks for them again then.
    deferred_ids: list[int] = field(default_factory=list)
    retry_after: float = 0.0


def send_batch(rt: Runtime, ids: Sequence[int], now: datetime | None = None) -> BatchReport:
    """Send the deliveries `ids` that this process manages to claim; record each outcome."""
    now = now or now_utc()
    report = BatchReport()
    rows = store.claim(rt.engine, ids, rt.worker_id, now + rt.settings.dispatch.lease, now=now)
    report.claimed = len(rows)
    by_run: dict[int, list[sa.Row]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    for run_id, group in by_run.items():
        _send_run_group(rt, run_id, group, report)
        store.finish_run_if_done(rt.engine, run_id)
    return report


def _send_run_group(rt: Runtime, run_id: int, rows: list[sa.Row], report: BatchReport) -> None:
    run = store.get_run(rt.engine, run_id)
    campaign = rt.campaigns().get(run.campaign) if run else None
    step = _step(campaign, run.step) if run else None
    if campaign is None or step is None:
        # Someone broke the YAML mid-run: hold the deliveries, don't fail them.
        _hold(rt, rows, f"campaign {run.campaign if run else '?'} does not validate or no longer exists; "
              "fix it and the run resumes", now_utc() + timedelta(minutes=5), report)
        return
    try:
        channel = rt.channel(step.channel, step.account)
    except ChannelConfigurationError as exc:
        _hold(rt, rows, str(exc), now_utc() + timedelta(minutes=10), report)
        return

    recipients = store.load_for_sending(rt.engine, [r.subscriber_id for r in rows if r.subscriber_id]) \
        if step.channel == "email" else {}
    sendable = []
    for row in rows:
        if step.channel == "email":
            loaded = recipients.get(row.subscriber_id) if row.subscriber_id else None
            reason = "subscriber was deleted" if loaded is None else loaded.excluded
            if reason:
                store.record_skipped(rt.engine, row.id, reason)
                report.skipped += 1
                continue
        sendable.append(row)
    if not sendable:
        return

    permit = rt.limiter.acquire(channel.limit_key, channel.limits, n=len(sendable))
    if permit.granted < len(sendable):
        # Throttled: the rest waits in the database until permits are free; no worker sleeps.
        wait = max(permit.retry_after, 0.05)
        later = now_utc() + timedelta(seconds=wait)
        rest = sendable[permit.granted:]
        store.defer(rt.engine, [(row.id, row.run_id) for row in rest], later, "rate limited")
        report.deferred += len(rest)
        report.deferred_ids += [row.id for row in rest]
        report.retry_after = max(report.retry_after, wait)
        sendable = sendable[:permit.granted]

    sent: list[tuple[int, int, str | None]] = []
    try:
        _send_rows(rt, campaign, step, channel, sendable, recipients, sent, report)
    finally:
        store.record_sent_many(rt.engine, sent)  # also when a send raised something unexpected


FLUSH_EVERY = 50  # sent outcomes recorded per transaction; bounds the `unknown`s a crash leaves


def _send_rows(rt: Runtime, campaign: Campaign, step: Step, channel, rows: list[sa.Row], recipients: dict,
               sent: list[tuple[int, int, str | None]], report: BatchReport) -> None:
    """Compose and send `rows` in order through `channel.send_many`, recording each outcome.

    Payloads are composed lazily, as the channel asks for the next one, so with SMTP
    pipelining the next message is rendered while the last is on the wire. An outcome that
    concerns the account (provider rate limit, broken configuration) stops the feed: what
    was in flight still reports back, and what was never handed over is held unsent."""
    waiting = {row.id: row for row in rows}  # no outcome yet
    stop: list[tuple[str, datetime]] = []     # (why, until when) once the rest must wait

    def payloads() -> Iterator[tuple[sa.Row, Any]]:
        for row in rows:
            if stop:
                return
            try:
                if step.channel == "email":
                    payload = rt.composer.email(campaign, step, recipients[row.subscriber_id].subscriber)
                else:
                    payload = rt.composer.tweet(campaign, step, tuple((row.progress or {}).get("posted_ids", ())))
            except (DeliveryError, TemplateRenderError) as exc:
                outcome(row, exc)
                continue
            yield row, payload

    def outcome(row: sa.Row, result: SendResult | Exception) -> None:
        del waiting[row.id]
        if isinstance(result, SendResult):
            if result.progress:
                store.record_progress(rt.engine, row.id, {"posted_ids": list(result.progress)})
            if result.limit_hint:
                rt.limiter.observe(channel.limit_key, *result.limit_hint)
            sent.append((row.id, row.run_id, result.provider_id))
            report.sent += 1
            if len(sent) >= FLUSH_EVERY:
                store.record_sent_many(rt.engine, sent)
                sent.clear()
        elif isinstance(result, RateLimited):
            until = now_utc() + timedelta(seconds=result.retry_after)
            rt.limiter.pause(channel.limit_key, until.timestamp())
            _save_progress(rt, row, result)
            _hold(rt, [row], f"rate limited by provider: {result}", until, report)
            stop.append((f"rate limited by provider: {result}", until))
        elif isinstance(result, RecipientRejected):
            store.record_failed(rt.engine, row.id, str(result), bounced=result.hard_bounce)
            if result.hard_bounce:
                store.suppress(rt.engine, row.recipient, "hard bounce", source=str(result)[:200])
            report.failed += 1
        elif isinstance(result, (PermanentError, TemplateRenderError)):
            _save_progress(rt, row, result)
            store.record_failed(rt.engine, row.id, str(result))
            report.failed += 1
        elif isinstance(result, ChannelConfigurationError):
            until = now_utc() + timedelta(minutes=10)
            _hold(rt, [row], str(result), until, report)
            stop.append((str(result), until))
        elif isinstance(result, TransientError) and result.context.get("outcome_unknown"):
            # it may have gone out: a retry could deliver it twice, so it is left for an operator
            _save_progress(rt, row, result)
            store.record_unknown(rt.engine, row.id, str(result))
            report.unknown += 1
        elif isinstance(result, TransientError):
            _save_progress(rt, row, result)
            if row.attempts >= rt.settings.dispatch.max_attempts:
                store.record_failed(rt.engine, row.id, f"gave up after {row.attempts} attempts: {result}")
                report.failed += 1
            else:
                store.record_retry(rt.engine, row.id, str(result), now_utc() + backoff(rt, row.attempts))
                report.retried += 1
        else:
            raise result

    for row, result in channel.send_many(payloads()):
        outcome(row, result)
    if waiting:  # never handed to the channel because an outcome stopped the feed
        why, until = stop[0]
        _hold(rt, list(waiting.values()), why, until, report)


def backoff(rt: Runtime, attempts: int) -> timedelta:
    """Exponential backoff with full jitter, so retries from many workers do not stampede."""
    d = rt.settings.dispatch
    cap = min(d.backoff_max.total_seconds(), d.backoff_base.total_seconds() * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=random.uniform(cap / 2, cap))


def _hold(rt: Runtime, rows: Sequence[sa.Row], error: str, until: datetime, report: BatchReport) -> None:
    """Put rows back as `retry` until `until` without sending them (nothing was attempted)."""
    log.warning("holding %d deliveries until %s: %s", len(rows), until.isoformat(), error)
    for row in rows:
        store.record_retry(rt.engine, row.id, error, until)
        report.retried += 1


def _save_progress(rt: Runtime, row: sa.Row, exc: Exception) -> None:
    """A thread that failed halfway: remember which tweets were posted so the retry resumes."""
    posted = getattr(exc, "context", {}).get("posted_ids")
    if posted:
        store.record_progress(rt.engine, row.id, {"posted_ids": list(posted)})


def _step(campaign: Campaign | None, step_id: str) -> Step | None:
    if campaign is None:
        return None
    try:
        return campaign.step(step_id)
    except KeyError:
        return None
