"""When is a step due? One-off, cron and relative schedules, time zones and DST.

An occurrence is identified by the UTC instant its schedule names. For a step delivered
at each recipient's local time, the occurrence is the schedule's wall-clock time in the
schedule's zone (its identity), and each recipient's own due time is computed from the
same wall-clock time in their zone: see `local_due`.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from ..authoring.campaigns import Campaign, Step, root_step

UTC = UTC
# The earliest wall clock on Earth (UTC+14) reaches a local time this long before UTC does,
# and the latest (UTC-12) this long after: a local-time run must exist across that span.
EARLIEST_OFFSET = timedelta(hours=14)
LATEST_OFFSET = timedelta(hours=12)


def resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall time in `zone`, resolving DST gaps forward and folds to the first instant,
    the way people expect a 02:30 reminder on a change-over night to behave."""
    aware = wall.replace(tzinfo=zone, fold=0)
    # round-trip detects a non-existent time (spring forward): move past the gap
    back = aware.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != wall:
        aware = (wall + timedelta(hours=1)).replace(tzinfo=zone, fold=0)
    return aware


def _wall_times(step: Step, start: datetime, end: datetime) -> Iterator[datetime]:
    """Naive wall-clock times of the anchoring schedule between two UTC instants (inclusive end)."""
    sched = step.schedule
    zone = sched.zone
    assert zone is not None
    if sched.at is not None:
        at = resolve_wall_time(sched.at, zone)
        if start < at.astimezone(UTC) <= end:
            yield sched.at
        return
    assert sched.cron is not None
    lower = start.astimezone(zone)
    if sched.start is not None:
        lower = max(lower, resolve_wall_time(sched.start, zone) - timedelta(seconds=1))
    it = croniter(sched.cron, lower)
    while True:
        nxt: datetime = it.get_next(datetime)
        if nxt.astimezone(UTC) > end:
            return
        if sched.end is not None and nxt.replace(tzinfo=None) > sched.end:
            return
        yield nxt.replace(tzinfo=None)


def occurrences(campaign: Campaign, step: Step, start: datetime, end: datetime) -> list[datetime]:
    """UTC occurrence instants of `step` whose run should be created in (start, end].

    A relative step (after: X, delay: D) occurs D after each occurrence of the step that
    anchors it. A local-time step's run is created when the earliest zone on Earth
    reaches the wall-clock time, so every recipient's delivery exists before it is due.
    """
    anchor, delay = root_step(campaign, step)
    zone = anchor.schedule.zone
    assert zone is not None
    lead = EARLIEST_OFFSET if step.schedule.local_time else timedelta(0)
    # widen the window so the wall times we scan cover (start, end] after shifting
    lo, hi = start - delay + lead - LATEST_OFFSET - EARLIEST_OFFSET, end - delay + lead
    out = []
    for wall in _wall_times(anchor, lo, hi):
        occ = resolve_wall_time(wall, zone).astimezone(UTC) + delay
        create_at = occ - lead
        if start < create_at <= end:
            out.append(occ)
    return out


def creation_time(campaign: Campaign, step: Step, occurrence: datetime) -> datetime:
    """When the run for `occurrence` is created (before it, for local-time steps)."""
    anchor, _ = root_step(campaign, step)
    lead = EARLIEST_OFFSET if step.schedule.local_time else timedelta(0)
    return occurrence - lead


def local_due(campaign: Campaign, step: Step, occurrence: datetime, recipient_zone: str | None) -> datetime:
    """A recipient's due time: the occurrence's wall time in their zone (local_time steps),
    otherwise the occurrence itself. Unknown zones fall back to the schedule's zone."""
    if not step.schedule.local_time:
        return occurrence
    anchor, delay = root_step(campaign, step)
    sched_zone = anchor.schedule.zone
    assert sched_zone is not None
    wall = (occurrence - delay).astimezone(sched_zone).replace(tzinfo=None)
    try:
        zone = ZoneInfo(recipient_zone) if recipient_zone else sched_zone
    except (ValueError, KeyError):
        zone = sched_zone
    return resolve_wall_time(wall, zone).astimezone(UTC) + delay


def now_utc() -> datetime:
    return datetime.now(UTC)
