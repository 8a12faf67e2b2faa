"""Scheduling and planning: which runs are due, and each run's deliveries.

    tick ──▶ schedule_runs: due occurrences → create_run (unique) → plan_run
    plan_run: one delivery per audience member (or one post), each with its own due time

Correctness rests on the ledger, not on Celery: a run is created at most once (UNIQUE on
campaign, step and occurrence), and planning is idempotent.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import store
from ..authoring.audience import Filter
from ..authoring.campaigns import Campaign, Step, root_step
from ..authoring.events import PlacedEvent
from ..models import RunStatus
from ..store import AnySelect, scheduler_state
from ..store.audience import audience_select, near_condition, step_condition
from .runtime import Runtime
from .scheduling import local_due, now_utc, occurrences, quiet_until

log = logging.getLogger(__name__)

CURSOR = "tick"
STUCK_PLANNING = timedelta(minutes=2)


@dataclass
class TickReport:
    created: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    planned: dict[int, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    # campaign name → why it was not (fully) scheduled in this tick; the others were
    failed: dict[str, str] = field(default_factory=dict)


# The database (or the connection to it) failing is everyone's problem: the whole tick stops
# and the next one does the same work again (creating and planning runs is idempotent).
_SHARED_FAILURES = (sa.exc.OperationalError, sa.exc.InterfaceError)


def schedule_runs(rt: Runtime, now: datetime) -> TickReport:
    """Create the runs of every occurrence that came due since the last tick.

    Two beats racing, or a beat restarted, compute the same occurrences; UNIQUE(campaign,
    step, occurrence) lets exactly one create each run. An occurrence missed while the beat
    was down is created when it comes back, or recorded `skipped` when older than `expires`.

    One campaign that fails (its schedule cannot be computed, its run cannot be planned) is
    logged and reported in `failed`, and every other campaign is still scheduled: one file
    must not stop every campaign. A failed campaign's occurrences in this tick's window are
    not retried by the next tick; a run it created stays `planning` and is planned again below
    once it is stuck.
    """
    report = TickReport()
    since = scheduler_state.get_cursor(rt.engine, CURSOR) or now - rt.settings.dispatch.catch_up
    for campaign in rt.campaigns().values():
        try:
            due = [(step, occ) for step in campaign.steps for occ in occurrences(campaign, step, since, now)]
        except Exception as exc:  # whatever slipped past validate: this campaign only
            _failed(report, campaign.name, "its schedule cannot be computed", exc)
            continue
        for step, occ in due:
            late = step.expires is not None and now - occ > step.expires
            run_id = store.create_run(rt.engine, campaign.name, step.id, occ,
                                      status=RunStatus.SKIPPED if late else RunStatus.PLANNING)
            if run_id is None:
                continue
            (report.skipped if late else report.created).append(run_id)
            if late:
                log.warning("run %s %s/%s at %s skipped: %s late (expires %s)", run_id, campaign.name,
                            step.id, occ.isoformat(), now - occ, step.expires)
            else:
                _plan(rt, run_id, campaign.name, report)
    scheduler_state.advance_cursor(rt.engine, CURSOR, now)
    # A planner that died between creating and planning a run left it in `planning`;
    # planning is idempotent, so finish the job.
    for run_id in scheduler_state.stuck_runs(rt.engine, RunStatus.PLANNING, now - STUCK_PLANNING):
        run = store.get_run(rt.engine, run_id)
        _plan(rt, run_id, run.campaign if run else f"run {run_id}", report)
    return report


def _plan(rt: Runtime, run_id: int, campaign: str, report: TickReport) -> None:
    try:
        report.planned[run_id] = plan_run(rt, run_id)
    except _SHARED_FAILURES:
        raise
    except Exception as exc:  # this run stays `planning`: retried when stuck
        _failed(report, campaign, f"run {run_id} cannot be planned", exc)


def _failed(report: TickReport, campaign: str, what: str, exc: BaseException) -> None:
    reason = f"{what}: {type(exc).__name__}: {exc}"
    report.failed[campaign] = reason
    log.error("campaign %s not scheduled in this tick (the others are): %s", campaign, reason,
              extra={"event": "campaign_not_scheduled", "campaign": campaign, "reason": reason})


def schedule_problems(rt: Runtime, now: datetime, ahead: timedelta = timedelta(days=1)) -> dict[str, str]:
    """What the tick would fail on for each valid campaign, looking from the last tick's window
    to `ahead` from now; computed, nothing is written (for `outreach status`)."""
    since = now - rt.settings.dispatch.catch_up
    problems: dict[str, str] = {}
    for campaign in rt.campaigns().values():
        try:
            for step in campaign.steps:
                occurrences(campaign, step, since, now + ahead)
        except Exception as exc:
            problems[campaign.name] = f"its schedule cannot be computed: {type(exc).__name__}: {exc}"
    return problems


def left_out(rt: Runtime, now: datetime, report: TickReport | None = None) -> list[str]:
    """Everything the scheduler leaves out, one line each: the campaign files that do not
    validate, the campaigns whose schedule cannot be computed (a day ahead), and those a
    tick's `report` says it could not schedule."""
    lines = [str(problem) for problem in rt.catalog.rejected()]
    failing = {**schedule_problems(rt, now), **(report.failed if report else {})}
    return lines + [f"campaign {name}: {why}" for name, why in failing.items()]


def plan_run(rt: Runtime, run_id: int, due_at: datetime | None = None) -> int:
    """Expand a run into its deliveries (idempotent); return how many were added.
    `due_at` overrides every delivery's due time (the demo sends everything now)."""
    run = store.get_run(rt.engine, run_id)
    if run is None or run.status != RunStatus.PLANNING:
        return 0
    campaign = rt.campaigns().get(run.campaign)
    step = find_step(campaign, run.step)
    if campaign is None or step is None:
        store.set_run_status(rt.engine, run_id, RunStatus.CANCELLED,
                             note=f"campaign {run.campaign}/{run.step} no longer exists or does not validate")
        return 0
    channel = step.channel_class
    account = channel.account_for(rt.settings, step.account)
    if channel.per_recipient:
        due: datetime | Callable[[str | None], datetime] = due_at or (
            (lambda zone: local_due(campaign, step, run.occurrence, zone))
            if step.schedule.local_time else run.occurrence)
        if due_at is None and campaign.quiet_hours is not None and not step.urgent:
            due = _quiet(campaign, step, due)
        select = step_audience(rt.segments(), campaign, step, run.occurrence)
        added = store.plan_deliveries(rt.engine, run_id, channel.name, account.name, select, due)
    else:
        added = 1 if store.add_delivery(rt.engine, run_id, channel.broadcast_recipient(account), channel.name,
                                        account.name, due_at or run.occurrence) else 0
    store.mark_run_planned(rt.engine, run_id)
    log.info("planned run %s (%s/%s): %s deliveries", run_id, run.campaign, run.step, added,
             extra={"event": "run_planned", "run": run_id, "campaign": run.campaign, "step": run.step,
                    "channel": channel.name, "account": account.name, "deliveries": added})
    return added


def _quiet(campaign: Campaign, step: Step,
           due: datetime | Callable[[str | None], datetime]) -> Callable[[str | None], datetime]:
    """Each recipient's due time moved out of the campaign's quiet hours in their zone."""
    def moved(zone: str | None) -> datetime:
        return quiet_until(campaign, step, zone, due(zone) if callable(due) else due)
    return moved


def step_audience(segments: dict[str, Filter], campaign: Campaign, step: Step,
                  occurrence: datetime | None = None) -> AnySelect:
    """Who a step sent per recipient goes to, as one SELECT: the campaign's audience, narrowed by
    the step's own `audience:` (acted / not acted / near an event) and, for a step sent before
    each event, to the people of the stop of that `occurrence` (every stop's when None). The
    planner and `outreach audience --step` both ask here, so they cannot disagree."""
    stop = event_of(campaign, step, occurrence)
    events = campaign.placed_events
    extra = step_condition(step.audience, campaign.name, events, stop)
    if root_step(campaign, step)[0].schedule.before_event is not None and events is not None and stop is None:
        # no occurrence: the people of every stop (`outreach audience`); an occurrence that is no
        # stop's any more (the stop moved or was removed since the run was made): nobody
        extra = sa.and_(extra, near_condition(events) if occurrence is None else sa.false())
    return audience_select(campaign.audience, segments, extra)


def event_of(campaign: Campaign, step: Step, occurrence: datetime | None) -> PlacedEvent | None:
    """The stop a run of a `before_event` step is about (its occurrence is that stop's start
    less `before_event`, plus the delays of the steps after it), or None."""
    anchor, delay = root_step(campaign, step)
    before = anchor.schedule.before_event
    if before is None or occurrence is None or campaign.placed_events is None:
        return None
    return campaign.placed_events.by_start(occurrence - delay + before)


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


def find_step(campaign: Campaign | None, step_id: str) -> Step | None:
    if campaign is None:
        return None
    try:
        return campaign.step(step_id)
    except KeyError:
        return None
