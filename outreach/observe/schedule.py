"""The coming sends: every occurrence of every step in the next days, as the beat will create
them (`delivery.scheduling.occurrences`, the very function it uses), with the audience each
reaches now and, for steps sent at each recipient's local time, when the first and the last
recipients get it.

The audience is counted per campaign (one grouped query by time zone), not per occurrence:
it is who would get it if it went now; the planner takes it again when the run is created.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..delivery.planner import step_audience
from ..delivery.scheduling import EARLIEST_OFFSET, local_due, occurrences
from ..store import find_run

if TYPE_CHECKING:
    from ..authoring.campaigns import Campaign, Step
    from ..delivery.runtime import Runtime


@dataclass(frozen=True)
class Occurrence:
    campaign: str
    step: str
    channel: str
    at: datetime                 # the occurrence, UTC (its identity; the run's `occurrence`)
    local: datetime              # the same instant in the manager's zone (settings `timezone`)
    schedule_zone: str           # the zone the step's schedule is written in
    local_time: bool             # sent at each recipient's own wall-clock time
    audience: int | None         # recipients now (None: one post, not per recipient; or unknown)
    first: datetime | None       # local-time steps: when the first and the last recipients get it
    last: datetime | None
    run_id: int | None           # its run, when the beat has created it already
    run_status: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Schedule:
    occurrences: list[Occurrence]
    problems: dict[str, str]     # campaign → why its schedule could not be computed


def coming(rt: Runtime, days: float = 7, now: datetime | None = None) -> Schedule:
    """Occurrences due in (now, now + days], soonest first."""
    now = now or datetime.now(UTC)
    end = now + timedelta(days=days)
    manager = rt.settings.zone
    found: list[Occurrence] = []
    problems: dict[str, str] = {}
    for campaign in rt.campaigns().values():
        try:
            due = [(step, occ) for step in campaign.steps
                   # a local-time run is created up to EARLIEST_OFFSET before its occurrence
                   for occ in occurrences(campaign, step, now - EARLIEST_OFFSET, end) if now < occ <= end]
        except Exception as exc:  # whatever slipped past validate: this campaign only
            problems[campaign.name] = f"its schedule cannot be computed: {type(exc).__name__}: {exc}"
            continue
        if not due:
            continue
        try:
            zones = _audience_zones(rt, campaign, due[0][0])
        except Exception as exc:
            problems[campaign.name] = f"its audience cannot be counted: {type(exc).__name__}: {exc}"
            zones = None
        for step, occ in due:
            found.append(_occurrence(rt, campaign, step, occ, manager, zones))
    found.sort(key=lambda o: (o.at, o.campaign, o.step))
    return Schedule(found, problems)


def _occurrence(rt: Runtime, campaign: Campaign, step: Step, occ: datetime, manager: Any,
                zones: dict[str | None, int] | None) -> Occurrence:
    per_recipient = step.channel_class.per_recipient
    audience = sum(zones.values()) if per_recipient and zones is not None else None
    first = last = None
    if step.schedule.local_time and zones:
        times = [local_due(campaign, step, occ, zone) for zone in zones]
        first, last = min(times), max(times)
    run = find_run(rt.engine, campaign.name, step.id, occ)
    zone = step.schedule.zone or _anchor_zone(campaign, step)
    return Occurrence(campaign.name, step.id, step.channel, occ, occ.astimezone(manager), str(zone),
                      step.schedule.local_time, audience, first, last, run.id if run else None,
                      run.status if run else None)


def _anchor_zone(campaign: Campaign, step: Step) -> Any:
    from ..authoring.campaigns import root_step

    return root_step(campaign, step)[0].schedule.zone


def _audience_zones(rt: Runtime, campaign: Campaign, step: Step) -> dict[str | None, int]:
    """The campaign's audience now, counted by time zone (one grouped query)."""
    audience = step_audience(rt.segments(), campaign, step).subquery("audience")
    stmt = sa.select(audience.c.timezone, sa.func.count()).group_by(audience.c.timezone)
    with rt.engine.connect() as conn:
        return {zone: int(n) for zone, n in conn.execute(stmt)}
