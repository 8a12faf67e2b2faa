"""Sending a batch: claim → eligibility → rate-limit permits → compose → send → record.

Celery calls `send_batch` (worker/tasks.py), and so do tests, without a worker. A delivery
is claimed in the database before it is sent, so a task that runs twice sends once; every
claimed row gets exactly one outcome (sent, retry, failed, skipped, unknown, or given back
unsent).
"""
from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import store
from ..authoring.campaigns import Campaign, Step
from ..channels.base import Channel, SendResult
from ..errors import (
    ChannelConfigurationError,
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RecipientRejected,
    TemplateRenderError,
    TransientError,
)
from ..store import AnyRow
from .planner import find_step
from .runtime import Runtime
from .scheduling import now_utc

log = logging.getLogger(__name__)



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
    channel: str = ""  # the channel of the rows (a batch holds one channel's deliveries)


def send_batch(rt: Runtime, ids: Sequence[int], now: datetime | None = None) -> BatchReport:
    """Send the deliveries `ids` that this process manages to claim; record each outcome."""
    now = now or now_utc()
    report = BatchReport()
    rows = store.claim(rt.engine, ids, rt.worker_id, now + rt.settings.dispatch.lease, now=now)
    report.claimed = len(rows)
    report.channel = rows[0].channel if rows else ""
    by_run: dict[int, list[AnyRow]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    for run_id, group in by_run.items():
        _send_run_group(rt, run_id, group, report)
        store.finish_run_if_done(rt.engine, run_id)
    return report


def _send_run_group(rt: Runtime, run_id: int, rows: list[AnyRow], report: BatchReport) -> None:
    run = store.get_run(rt.engine, run_id)
    campaign = rt.campaign(run.campaign) if run else None  # a built-in one too (delivery/system.py)
    step = find_step(campaign, run.step) if run else None
    if campaign is None or step is None:
        # Someone broke the YAML mid-run: hold the deliveries, don't fail them.
        _hold(rt, rows, f"campaign {run.campaign if run else '?'} does not validate or no longer exists; "
              "fix it and the run resumes", now_utc() + timedelta(minutes=5), report)
        return
    try:
        channel = rt.channel(step)
    except ChannelConfigurationError as exc:
        _hold(rt, rows, str(exc), now_utc() + timedelta(minutes=10), report)
        return

    recipients: dict[int, store.Loaded] = {}
    sendable = rows
    if step.channel_class.per_recipient:
        recipients = store.load_for_sending(rt.engine, [r.subscriber_id for r in rows if r.subscriber_id],
                                            rt.settings.subscribers.attributes, step.reaches)
        sendable = []
        for row in rows:
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


def _send_rows(rt: Runtime, campaign: Campaign, step: Step, channel: Channel, rows: list[AnyRow],
               recipients: dict[int, store.Loaded], sent: list[tuple[int, int, str | None]],
               report: BatchReport) -> None:
    """Compose and send `rows` in order through `channel.send_many`, recording each outcome.

    Payloads are composed lazily, as the channel asks for the next one, so with SMTP
    pipelining the next message is rendered while the last is on the wire. An outcome that
    concerns the account (provider rate limit, broken configuration) stops the feed: what
    was in flight still reports back, and what was never handed over is held unsent."""
    kind = step.channel_class
    waiting = {row.id: row for row in rows}  # no outcome yet
    stop: list[tuple[str, datetime]] = []     # (why, until when) once the rest must wait

    def payloads() -> Iterator[tuple[AnyRow, Any]]:
        for row in rows:
            if stop:
                return
            try:
                subscriber = recipients[row.subscriber_id].subscriber if row.subscriber_id in recipients else None
                payload = kind.compose(rt.composer, campaign, step, subscriber, row.progress)
            except (DeliveryError, TemplateRenderError) as exc:
                outcome(row, exc)
                continue
            yield row, payload

    def outcome(row: AnyRow, result: SendResult | Exception) -> None:
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
        elif isinstance(result, OutcomeUnknown) and not kind.idempotent:
            # it may have gone out: a retry could deliver it twice, so it is left for an operator
            _save_progress(rt, row, result)
            store.record_unknown(rt.engine, row.id, str(result))
            report.unknown += 1
        elif isinstance(result, (TransientError, OutcomeUnknown)):  # unknown: only when a resend is harmless
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


def _hold(rt: Runtime, rows: Sequence[AnyRow], error: str, until: datetime, report: BatchReport) -> None:
    """Put rows back as `retry` until `until` without sending them (nothing was attempted)."""
    log.warning("holding %d deliveries until %s: %s", len(rows), until.isoformat(), error)
    for row in rows:
        store.record_retry(rt.engine, row.id, error, until)
        report.retried += 1


def _save_progress(rt: Runtime, row: AnyRow, exc: Exception) -> None:
    """A thread that failed halfway: remember which tweets were posted so the retry resumes."""
    posted = getattr(exc, "context", {}).get("posted_ids")
    if posted:
        store.record_progress(rt.engine, row.id, {"posted_ids": list(posted)})
