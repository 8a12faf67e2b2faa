"""Sending a batch: claim → eligibility → rate-limit permits → compose → send → record.

Celery calls `send_batch` (worker/tasks.py), and so do tests, without a worker. A delivery
is claimed in the database before it is sent, so a task that runs twice sends once.

Every claimed row gets exactly one outcome, whatever is raised (a worker acks or nacks in
`finally`): sent, retry, failed, skipped, given back unsent (the attempt not counted), or
`unknown`, which only a row handed to the channel can become. Outcomes are decided in
memory (`_Book`) and written as they come; when the database refuses a write, nothing more
is handed to the channel, and what is owed is written again until the database answers.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .. import store, telemetry
from ..authoring.campaigns import Campaign, Step
from ..bounces import breaker
from ..channels import channel_class
from ..channels.base import Channel, SendResult
from ..errors import (
    ChannelConfigurationError,
    ConfigurationError,
    DeliveryError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RecipientRejected,
    TemplateRenderError,
    TransientError,
)
from ..models import FeedbackKind, RunStatus
from ..store import AnyRow, feedback
from ..store.actions import acted_among
from ..store.overview import reason_of
from .planner import find_step
from .runtime import Runtime
from .scheduling import now_utc, quiet_until

log = logging.getLogger(__name__)

FLUSH_EVERY = 50  # sent outcomes recorded per transaction; bounds the `unknown`s a crash leaves
# Something failed before the hand-off (Redis, the database, this process's settings): the
# rows go back unsent and are due again after this (with jitter), for any worker to take.
GIVE_BACK_AFTER = timedelta(seconds=10)
# A configuration error pauses the account for every worker this long: one probe a minute
# finds the fix soon after it is made, at the cost of one refused request.
CONFIG_PAUSE = timedelta(minutes=1)
CAMPAIGN_HOLD = timedelta(minutes=5)  # the campaign no longer validates: look again then
# Permits about to be freed (the limiter's next bucket, a few ms away) are waited for in the
# feed, up to this much at a time and TOP_UP_FOR in all per batch, so an account stays at its
# limit; anything longer (a paused account, a daily limit) goes back to the database, and the
# worker slot to other batches.
SHORT_WAIT = 0.25
TOP_UP_FOR = 5.0
# Outcomes owed to a database that refuses writes are written again for at most this long
# (and never past half the lease: after it the tick settles the rows by itself).
WRITE_PATIENCE = timedelta(minutes=2)
# How often a batch being sent looks whether an operator paused or cancelled its run: the
# longest a run goes on being handed to a provider after `outreach runs pause` (which waits
# for the workers' claimed rows to settle before it returns). One indexed read per run per
# interval, not per message.
HOLD_CHECK_EVERY = 0.5
HELD_RUNS = (RunStatus.PAUSED, RunStatus.CANCELLED)


@dataclass
class BatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    deferred: int = 0      # throttled by our own limiter or a paused account: given back
    held: int = 0          # its run was paused or cancelled: handed back unsent, held with the run
    given_back: int = 0    # given back unsent for another reason (an error before the hand-off)
    claimed: int = 0
    # The throttled rows and when the limiter frees permits: the task asks for them again then.
    deferred_ids: list[int] = field(default_factory=list)
    retry_after: float = 0.0
    channel: str = ""  # the channel of the rows (a batch holds one channel's deliveries)
    bounced_runs: set[int] = field(default_factory=set)  # runs with hard bounces: the breaker looks


def send_batch(rt: Runtime, ids: Sequence[int], now: datetime | None = None) -> BatchReport:
    """Send the deliveries `ids` that this process manages to claim; record each outcome."""
    now = now or now_utc()
    report = BatchReport()
    lease_until = now + rt.settings.dispatch.lease
    try:
        rows = store.claim(rt.engine, ids, rt.worker_id, lease_until, now=now)
    except BaseException as exc:
        # The claim may have committed with its reply lost (a cut connection): its rows are
        # ours and unsent. The exact lease tells them apart from any other claim.
        why = f"given back unsent: {_why(exc)}"
        _durably(rt, lambda: store.give_back(rt.engine, ids, _soon(), why, worker=rt.worker_id,
                                             lease_until=lease_until), "give back a claim")
        raise
    report.claimed = len(rows)
    report.channel = rows[0].channel if rows else ""
    book = _Book(rt, rows, report)
    by_run: dict[int, list[AnyRow]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    try:
        for run_id, group in by_run.items():
            if book.broken is None and not rt.stopping.is_set():
                event = {"event": "batch", "run": run_id, "channel": group[0].channel, "account": group[0].account,
                         "claimed": len(group)}
                before = _outcomes(report)
                started = time.monotonic()
                try:
                    _send_run_group(rt, run_id, group, book, event)
                finally:
                    _log_batch(event, before, report, started)
    except BaseException as exc:
        book.finish(exc)
        raise
    book.finish(None)
    for run_id in by_run:
        _durably(rt, functools.partial(store.finish_run_if_done, rt.engine, run_id), f"finish run {run_id}")
    _count(rt, report)
    for run_id in sorted(report.bounced_runs):
        _durably(rt, functools.partial(breaker.check, rt.engine, rt.settings, run_id), f"check run {run_id}")
    return report


def _count(rt: Runtime, report: BatchReport) -> None:
    """The batch's outcomes into the shared counters (/metrics), with what the channel and the
    limiter counted meanwhile: one Redis round trip per batch, never an error."""
    if report.channel:
        telemetry.TALLY.outcomes(report.channel, {name: getattr(report, name) for name in _OUTCOMES})
    telemetry.flush(rt.redis)


_OUTCOMES = ("sent", "retried", "failed", "skipped", "unknown", "deferred", "given_back", "held")


def _outcomes(report: BatchReport) -> tuple[int, ...]:
    return tuple(getattr(report, name) for name in _OUTCOMES)


def _log_batch(event: dict[str, Any], before: tuple[int, ...], report: BatchReport, started: float) -> None:
    """One event per run's share of a batch: which run, channel and account, and how each of
    its deliveries ended (see outreach/logs.py)."""
    if not log.isEnabledFor(logging.INFO):
        return
    outcomes = {name: now - then for name, now, then in zip(_OUTCOMES, _outcomes(report), before, strict=True)
                if now != then}
    event["outcomes"] = outcomes
    event["seconds"] = round(time.monotonic() - started, 3)
    log.info("run %s: %s", event["run"], ", ".join(f"{n} {k}" for k, n in outcomes.items()) or "nothing claimed",
             extra=event)


def _send_run_group(rt: Runtime, run_id: int, rows: list[AnyRow], book: _Book, event: dict[str, Any]) -> None:
    run = store.get_run(rt.engine, run_id)
    looked = time.monotonic()
    if run is not None:
        event.update(campaign=run.campaign, step=run.step)
    if run is not None and run.status in HELD_RUNS:  # paused or cancelled since it was queued
        book.hold(rows, run.status)
        return
    campaign = rt.campaign(run.campaign) if run else None  # a built-in one too (delivery/system.py)
    step = find_step(campaign, run.step) if run else None
    if campaign is None or step is None:
        # Someone broke the YAML mid-run: hold the deliveries, don't fail them.
        book.give_back(rows, f"campaign {run.campaign if run else '?'} does not validate or no longer exists; "
                       "fix it and the run resumes", now_utc() + CAMPAIGN_HOLD)
        return
    try:
        channel = rt.channel(step)
    except ConfigurationError as exc:  # no such account, or its channel cannot be built
        _pause_account(rt, step, None, exc)
        book.give_back(rows, str(exc), now_utc() + CONFIG_PAUSE)
        return

    recipients: dict[int, store.Loaded] = {}
    sendable = rows
    if step.channel_class.per_recipient:
        recipients = store.load_for_sending(rt.engine, [r.subscriber_id for r in rows if r.subscriber_id],
                                            rt.settings.subscribers.attributes, step.reaches)
        sendable = []
        # a reminder "to those who have not acted" skips whoever acted since it was planned
        waiting = step.audience.not_acted if step.audience is not None else None
        acted = acted_among(rt.engine, recipients, waiting.campaign or campaign.name,
                            waiting.action) if waiting is not None else set()
        for row in rows:
            loaded = recipients.get(row.subscriber_id) if row.subscriber_id else None
            reason = "subscriber was deleted" if loaded is None else loaded.excluded
            if reason is None and row.subscriber_id in acted:
                reason = f"already did {waiting.action if waiting else ''}"
            if reason:
                book.skipped(row, reason)
                continue
            sendable.append(row)
    if not sendable:
        return

    permits = _Permits(rt, channel, len(sendable))
    if permits.wait_is_long:
        # Throttled for longer than a moment: the rest waits in the database until permits
        # are free, for any worker to take then.
        rest = sendable[permits.allowance:]
        telemetry.TALLY.wait(channel.limit_key, len(rest))
        book.give_back(rest, permits.why(), now_utc() + timedelta(seconds=permits.wait), deferred=True)
        book.report.retry_after = max(book.report.retry_after, permits.wait)
        sendable = sendable[:permits.allowance]

    _send_rows(rt, campaign, step, channel, sendable, recipients, book, _HoldCheck(rt, run_id, looked), permits)


class _HoldCheck:
    """Has an operator paused or cancelled the run since we last looked? Looked up at most
    every HOLD_CHECK_EVERY seconds while a batch is fed to its channel."""

    def __init__(self, rt: Runtime, run_id: int, looked: float) -> None:
        self.rt, self.run_id, self.looked = rt, run_id, looked
        self.status: str | None = None  # the run's status once found held

    def held(self) -> bool:
        if self.status is None and time.monotonic() - self.looked >= HOLD_CHECK_EVERY:
            status = store.run_status(self.rt.engine, self.run_id)
            self.looked = time.monotonic()
            if status in HELD_RUNS:
                self.status = status
        return self.status is not None


def _send_rows(rt: Runtime, campaign: Campaign, step: Step, channel: Channel, rows: list[AnyRow],
               recipients: dict[int, store.Loaded], book: _Book, hold: _HoldCheck, permits: _Permits) -> None:
    """Compose and send `rows` in order through `channel.send_many`, recording each outcome.

    Payloads are composed lazily, as the channel asks for the next one, so with SMTP
    pipelining the next message is rendered while the last is on the wire. An outcome that
    concerns the account (provider rate limit, broken configuration) stops the feed, and so
    does a database that refuses an outcome: what was in flight still reports back, and
    what was never handed over is given back unsent."""
    kind = step.channel_class
    stop: list[tuple[str, datetime]] = []  # (why, until when) once the rest must wait

    throttled = False

    def payloads() -> Iterator[tuple[AnyRow, Any]]:
        nonlocal throttled
        for i, row in enumerate(rows):
            if stop or book.broken is not None or rt.stopping.is_set():
                return
            if not permits.take(len(rows) - i):  # a permit for this row, asking for all that are left
                throttled = True
                telemetry.TALLY.wait(channel.limit_key, len(rows) - i)
                stop.append((permits.why(), now_utc() + timedelta(seconds=permits.wait)))
                return
            try:
                if hold.held():
                    log.info("run %s was %s: handing nothing more of it to %s", hold.run_id, hold.status,
                             channel.limit_key)
                    return
            except _DB_ERRORS as exc:
                book.broken = exc
                return
            try:
                subscriber = recipients[row.subscriber_id].subscriber if row.subscriber_id in recipients else None
                payload = kind.compose(rt.composer, campaign, step, subscriber, row.progress)
                payload = kind.for_delivery(rt.composer, payload, row.id)
            except (DeliveryError, TemplateRenderError) as exc:
                outcome(row, exc)
                continue
            book.handed.add(row.id)
            yield row, payload

    def outcome(row: AnyRow, result: SendResult | Exception) -> None:
        progress = _progress(rt, row, result)
        if isinstance(result, SendResult):
            if result.limit_hint:
                _advisory(lambda: rt.limiter.observe(channel.limit_key, *result.limit_hint))  # type: ignore[misc]
            book.sent(row, result.provider_id, progress)
        elif isinstance(result, RateLimited):
            # the provider refused before accepting anything: not an attempt of this delivery
            until = now_utc() + timedelta(seconds=result.retry_after)
            why = f"rate limited by provider: {result}"
            _advisory(lambda: rt.limiter.pause(channel.limit_key, until.timestamp(), why))
            book.give_back([row], why, until, progress=progress)
            stop.append((why, until))
        elif isinstance(result, RecipientRejected):
            book.failed(row, str(result), bounced=result.hard_bounce, suppress=result.hard_bounce,
                        code=str(result.context.get("smtp_code") or "") or None)
        elif isinstance(result, (PermanentError, TemplateRenderError)):
            book.failed(row, str(result), progress=progress)
        elif isinstance(result, ChannelConfigurationError):
            # the account cannot send until someone fixes a setting: every worker holds back,
            # `outreach status` says why, and no delivery spends an attempt on it
            until = _pause_account(rt, step, channel, result)
            book.give_back([row], str(result), until, progress=progress)
            stop.append((str(result), until))
        elif isinstance(result, OutcomeUnknown) and not kind.idempotent:
            # it may have gone out: a retry could deliver it twice, so it is left for an operator
            book.unknown(row, str(result), progress=progress)
        elif isinstance(result, (TransientError, OutcomeUnknown)):  # unknown: only when a resend is harmless
            if row.attempts >= rt.settings.dispatch.max_attempts:
                book.failed(row, f"gave up after {row.attempts} attempts: {result}", progress=progress)
            else:
                # a retry waits out the recipient's quiet hours too
                loaded = recipients.get(row.subscriber_id) if row.subscriber_id else None
                zone = loaded.subscriber.timezone if loaded is not None else None
                until = quiet_until(campaign, step, zone, now_utc() + backoff(rt, row.attempts))
                book.retry(row, str(result), until, progress=progress)
        else:
            raise result

    for row, result in channel.send_many(payloads()):
        outcome(row, result)
    waiting = [row for row in rows if row.id in book.open and row.id not in book.handed]
    if waiting and hold.status is not None:  # an operator paused or cancelled the run meanwhile
        book.hold(waiting, hold.status)
    elif waiting and stop:  # never handed to the channel because an outcome stopped the feed
        why, until = stop[0]
        book.give_back(waiting, why, until, deferred=throttled)
        if throttled:
            book.report.retry_after = max(book.report.retry_after, permits.wait)
    elif waiting and rt.stopping.is_set():  # any other worker may take them at once
        book.give_back(waiting, "the worker was stopped before sending it", now_utc())
    # (stopped because the database refused a write: `_Book.finish` gives those back)


class _Permits:
    """Permits of the global limiter for one run group, taken as the feed needs them.

    The first request asks for every row at once (one Redis call for an unthrottled batch).
    When the limit is reached and the next permits are a moment away (the limiter's next
    bucket), `take` waits for them in the feed (at most SHORT_WAIT at a time, TOP_UP_FOR in
    all), while the messages already handed over are on the wire. Giving such rows back to
    the database instead, to be claimed again a few milliseconds later, kept three workers at
    93% of a 500/s limit they could exceed by 38% (tests/reliability/test_load.py)."""

    def __init__(self, rt: Runtime, channel: Channel, wanted: int) -> None:
        self.rt, self.channel = rt, channel
        self.deadline = time.monotonic() + TOP_UP_FOR
        self.paused = False
        self.unavailable = ""  # why the limiter could not be asked, once it could not
        self.wait = 0.0
        self.allowance = 0
        self._ask(wanted)

    @property
    def wait_is_long(self) -> bool:
        """Nothing more will come in a moment: the caller gives the rest back now."""
        return self.wait > 0 and (self.paused or self.wait > SHORT_WAIT)

    def _ask(self, n: int) -> None:
        permit = self.rt.limiter.acquire(self.channel.limit_key, self.channel.limits, n=n)
        self.allowance += permit.granted
        self.paused = permit.paused
        self.wait = max(permit.retry_after, 0.005) if permit.granted < n else 0.0

    def take(self, left: int) -> bool:
        """One permit for the next row (`left` rows remain, this one included); False when
        the rest must wait longer than a moment (then `wait` says how long)."""
        while self.allowance == 0:
            if self.wait_is_long or time.monotonic() + self.wait > self.deadline:
                self.wait = max(self.wait, 0.05)
                return False
            time.sleep(self.wait)
            try:
                self._ask(left)
            except TransientError as exc:
                # the limiter's Redis went away mid-batch: stop feeding, so what is on the
                # wire still gets its outcome, and give the rest back like any short wait
                self.unavailable, self.wait = str(exc), 5.0
                return False
        self.allowance -= 1
        return True

    def why(self) -> str:
        if self.unavailable:
            return self.unavailable
        if self.paused:
            return f"account {self.channel.limit_key} paused: {_pause_reason(self.rt, self.channel.limit_key)}"
        return "rate limited"


def backoff(rt: Runtime, attempts: int) -> timedelta:
    """Exponential backoff with full jitter, so retries from many workers do not stampede."""
    d = rt.settings.dispatch
    cap = min(d.backoff_max.total_seconds(), d.backoff_base.total_seconds() * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=random.uniform(cap / 2, cap))


Write = Callable[[], object]


def _log_delivery(row: AnyRow, outcome: str, error: str) -> None:
    """A delivery that ended badly is an event of its own (its reason without the address)."""
    log.warning("delivery %s %s: %s", row.id, outcome, reason_of(error),
                extra={"event": "delivery", "delivery": row.id, "run": row.run_id, "channel": row.channel,
                       "account": row.account, "outcome": outcome, "reason": reason_of(error)})


class _Book:
    """The one outcome of each claimed row of a batch.

    An outcome is decided here (the row leaves `open`) and written to the ledger at once,
    except `sent`, written FLUSH_EVERY at a time. A write the database refuses is kept, in
    order, and `broken` stops the feed; `finish` settles whatever is still open, whatever
    was raised, and writes what is owed until the database answers."""

    def __init__(self, rt: Runtime, rows: Sequence[AnyRow], report: BatchReport) -> None:
        self.rt, self.engine, self.report = rt, rt.engine, report
        self.open: dict[int, AnyRow] = {row.id: row for row in rows}
        self.handed: set[int] = set()   # given to the channel: may have reached the provider
        self._sent: list[tuple[int, int, str | None]] = []
        self._owed: list[Write] = []    # decided, not yet written, oldest first
        self.broken: Exception | None = None

    # --- outcomes ---------------------------------------------------------------------

    def sent(self, row: AnyRow, provider_id: str | None, progress: Write | None = None) -> None:
        self._close(row, progress)
        self._sent.append((row.id, row.run_id, provider_id))
        self.report.sent += 1
        if len(self._sent) >= FLUSH_EVERY:
            self._queue_sent()
            self.flush()

    def retry(self, row: AnyRow, error: str, until: datetime, progress: Write | None = None) -> None:
        self._decide([row], lambda: store.record_retry(self.engine, row.id, error, until), progress)
        self.report.retried += 1

    def failed(self, row: AnyRow, error: str, *, bounced: bool = False, suppress: bool = False,
               progress: Write | None = None, code: str | None = None) -> None:
        _log_delivery(row, "bounced" if bounced else "failed", error)
        def write() -> None:
            store.record_failed(self.engine, row.id, error, bounced=bounced)
            if suppress:
                # a hard bounce at once: suppressed, the subscriber `bounced`, and counted in
                # the run's bounce rate like one that comes back later as a report
                bounces = self.rt.settings.bounces
                feedback.record(self.engine, feedback.Entry(
                    key=feedback.event_key("smtp", str(row.id), row.recipient), source="smtp",
                    kind=FeedbackKind.HARD_BOUNCE, address=row.recipient.lower(), code=code, text=error[:500],
                    at=now_utc(), delivery_id=row.id, event=False),
                    soft_limit=bounces.soft_limit, soft_window=bounces.soft_window)
        self._decide([row], write, progress)
        self.report.failed += 1
        if suppress:
            self.report.bounced_runs.add(row.run_id)

    def skipped(self, row: AnyRow, reason: str) -> None:
        self._decide([row], lambda: store.record_skipped(self.engine, row.id, reason))
        self.report.skipped += 1

    def unknown(self, row: AnyRow, error: str, progress: Write | None = None) -> None:
        _log_delivery(row, "unknown", error)
        self._decide([row], lambda: store.record_unknown(self.engine, row.id, error), progress)
        self.report.unknown += 1

    def give_back(self, rows: Sequence[AnyRow], reason: str, until: datetime, *, deferred: bool = False,
                  progress: Write | None = None) -> None:
        """Unsent, due again at `until`, the claim's attempt handed back."""
        if not rows:
            return
        ids = [row.id for row in rows]
        log.warning("giving back %d deliveries until %s: %s", len(ids), until.isoformat(), reason,
                    extra={"event": "give_back", "run": rows[0].run_id, "channel": rows[0].channel,
                           "account": rows[0].account, "deliveries": len(ids), "until": until.isoformat(),
                           "reason": reason_of(reason)})
        self._decide(rows, lambda: store.give_back(self.engine, ids, until, reason, worker=self.rt.worker_id),
                     progress)
        if deferred:
            self.report.deferred += len(ids)
            self.report.deferred_ids += ids
        else:
            self.report.given_back += len(ids)

    def hold(self, rows: Sequence[AnyRow], status: str) -> None:
        """Unsent because an operator paused or cancelled their run: held with the rest of it
        (the claim's attempt handed back)."""
        if not rows:
            return
        ids = [row.id for row in rows]
        log.info("holding %d deliveries of run %s: the run is %s", len(ids), rows[0].run_id, status,
                 extra={"event": "hold", "run": rows[0].run_id, "channel": rows[0].channel, "account": rows[0].account,
                        "deliveries": len(ids), "run_status": status})
        self._decide(rows, lambda: store.hold(self.engine, ids, self.rt.worker_id))
        self.report.held += len(ids)

    # --- writing ----------------------------------------------------------------------

    def _close(self, row: AnyRow, progress: Write | None) -> None:
        del self.open[row.id]  # a KeyError here would be a second outcome: a bug
        if progress is not None:
            self._owed.append(progress)

    def _decide(self, rows: Sequence[AnyRow], write: Write, progress: Write | None = None) -> None:
        for row in rows:
            self._close(row, None)
        if progress is not None:
            self._owed.append(progress)
        self._owed.append(write)
        self.flush()

    def _queue_sent(self) -> None:
        if self._sent:
            batch, self._sent = self._sent, []
            self._owed.append(lambda: store.record_sent_many(self.engine, batch))

    def flush(self) -> None:
        """Write what is owed, in order; a database that refuses stops the feed."""
        if self.broken is not None:
            return
        try:
            while self._owed:
                self._owed[0]()
                self._owed.pop(0)
        except _DB_ERRORS as exc:
            self.broken = exc
            log.warning("the database refused an outcome (%s); handing nothing more to the channel", _why(exc))

    def finish(self, exc: BaseException | None) -> None:
        """Settle every row still open and write everything owed. A row handed to the channel
        whose outcome never came back may have reached the provider: `unknown` (or sent
        again later, when the channel's resends are harmless). Any other is given back."""
        cause = exc or self.broken
        why = _why(cause) if cause is not None else "the batch stopped before sending it"
        handed = [row for row in self.open.values() if row.id in self.handed]
        for row in handed:
            if channel_class(row.channel).idempotent:
                self.retry(row, f"outcome unknown ({why}); sending again", _soon())
            else:
                self.unknown(row, f"outcome unknown: {why} after it was handed to the channel")
        rest = list(self.open.values())
        if rest:
            self.give_back(rest, f"given back unsent: {why}", _soon())
        self._queue_sent()
        self.broken = None
        owed = list(self._owed)
        self._owed.clear()
        deadline = _deadline(self.rt)  # one for them all: a database that is down fails each alike
        for write in owed:
            try:
                _durably(self.rt, write, "record an outcome", deadline)
            except Exception:  # a bug in one write must not cost the others theirs
                log.exception("could not record an outcome")


def _deadline(rt: Runtime) -> float:
    patience = min(WRITE_PATIENCE, rt.settings.dispatch.lease / 2).total_seconds()
    return time.monotonic() + max(patience, 1.0)


def _durably(rt: Runtime, write: Callable[[], object], what: str, deadline: float | None = None) -> None:
    """Run a ledger write until the database takes it (a cut connection is replaced by the
    pool's pre-ping; a restarted server comes back), for a bounded time: past half the lease
    the tick settles the rows itself. Then it gives up, saying so."""
    deadline = deadline or _deadline(rt)
    pause = 0.1
    while True:
        try:
            write()
            return
        except _DB_ERRORS as exc:
            if time.monotonic() + pause > deadline:
                log.error("could not %s: %s; the tick settles these deliveries when their lease runs out",
                          what, _why(exc))
                return
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.InternalError)


def _pause_account(rt: Runtime, step: Step, channel: Channel | None, exc: Exception) -> datetime:
    """Hold the account back for every worker until CONFIG_PAUSE from now; return that time."""
    until = now_utc() + CONFIG_PAUSE
    try:
        key = channel.limit_key if channel is not None else step.channel_class.limit_key_of(
            step.channel_class.account_for(rt.settings, step.account))
    except ConfigurationError:
        return until  # no account to pause: the step names none that exists
    log.error("pausing account %s for every worker until %s: %s", key, until.isoformat(), exc,
              extra={"event": "account_paused", "account": key, "until": until.isoformat()})
    _advisory(lambda: rt.limiter.pause(key, until.timestamp(), str(exc)))
    return until


def _pause_reason(rt: Runtime, key: str) -> str:
    try:
        return rt.limiter.why_paused(key) or "by an operator"
    except TransientError:
        return "(the reason is in Redis, which did not answer)"


def _advisory(call: Callable[[], object]) -> None:
    """A call to the limiter that only tightens or explains (a pause, a provider's hint):
    Redis failing it must not cost the outcome of a message that already went out."""
    try:
        call()
    except TransientError as exc:
        log.warning("rate limiter not updated: %s", exc)


def _progress(rt: Runtime, row: AnyRow, result: SendResult | Exception) -> Write | None:
    """The write that remembers which posts of a thread exist (all of them when it went out,
    those before the failure when it did not), so a retry resumes after them."""
    posted = result.progress if isinstance(result, SendResult) else getattr(result, "context", {}).get("posted_ids")
    if not posted:
        return None
    value = {"posted_ids": list(posted)}
    return lambda: store.record_progress(rt.engine, row.id, value)


def _soon() -> datetime:
    return now_utc() + GIVE_BACK_AFTER * random.uniform(1.0, 1.5)


def _why(exc: BaseException | None) -> str:
    if exc is None:
        return "stopped"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
