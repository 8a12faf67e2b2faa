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

from .. import formats
from ..authoring.advocacy import QuietHours
from ..authoring.campaigns import Campaign, Step, root_step

UTC = UTC
# The earliest wall clock on Earth (UTC+14) reaches a local time this long before UTC does,
# and the latest (UTC-12) this long after: a local-time run must exist across that span.
EARLIEST_OFFSET = timedelta(hours=14)
LATEST_OFFSET = timedelta(hours=12)


def resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall time in `zone` as an instant, the way people expect a 02:30 reminder on a
    change-over night to behave: a time that falls in a DST gap moves forward by the length
    of that gap (not by a fixed hour: Australia/Lord_Howe shifts 30 minutes, so 02:10 there
    becomes 02:40), and a time that happens twice (a fold) means the first of the two."""
    aware = wall.replace(tzinfo=zone, fold=0)
    # fold=0 reads a time in a gap with the offset from before the change-over; the round
    # trip through UTC then lands as far past the gap's start as the time was
    back = aware.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != wall:
        return back
    return aware


# A cron time inside a DST gap resolves to after the gap, so the scan below reaches this far
# past its window not to miss one (no zone still in use skips more than 2 hours).
_GAP_MARGIN = timedelta(hours=3)


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
    # Iterate wall-clock times (naive) and resolve each one: croniter over an aware time
    # yields a time in a fold twice, and one in a gap as the gap's end instead of moving
    # it by the gap's length like every other schedule.
    lower = start.astimezone(zone).replace(tzinfo=None) - _GAP_MARGIN
    upper = end.astimezone(zone).replace(tzinfo=None) + _GAP_MARGIN
    if sched.start is not None:
        lower = max(lower, sched.start - timedelta(seconds=1))
    it = croniter(sched.cron, lower)
    while True:
        nxt: datetime = it.get_next(datetime)
        if nxt > upper or (sched.end is not None and nxt > sched.end):
            return
        if start < resolve_wall_time(nxt, zone).astimezone(UTC) <= end:
            yield nxt


def occurrences(campaign: Campaign, step: Step, start: datetime, end: datetime) -> list[datetime]:
    """UTC occurrence instants of `step` whose run should be created in (start, end].

    A relative step (after: X, delay: D) occurs D after each occurrence of the step that
    anchors it. A local-time step's run is created when the earliest zone on Earth
    reaches the wall-clock time, so every recipient's delivery exists before it is due.
    """
    anchor, delay = root_step(campaign, step)
    before = anchor.schedule.before_event
    if before is not None:
        # one occurrence per stop of the campaign's events: that stop's start, less `before`
        stops = campaign.placed_events.stops if campaign.placed_events is not None else ()
        return sorted({s.start - before + delay for s in stops if start < s.start - before + delay <= end})
    zone = anchor.schedule.zone
    assert zone is not None
    lead = EARLIEST_OFFSET if step.schedule.local_time else timedelta(0)
    # widen the window so the wall times we scan cover (start, end] after shifting
    lo, hi = start - delay + lead - LATEST_OFFSET - EARLIEST_OFFSET, end - delay + lead
    out: set[datetime] = set()
    for wall in _wall_times(anchor, lo, hi):
        occ = resolve_wall_time(wall, zone).astimezone(UTC) + delay
        create_at = occ - lead
        if start < create_at <= end:
            out.add(occ)  # two cron times in one DST gap can land on the same instant
    return sorted(out)


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
        zone = formats.zone(recipient_zone) if recipient_zone else sched_zone
    except ValueError:  # e.g. `Asia`, stored before the importer checked zones
        zone = sched_zone
    return resolve_wall_time(wall, zone).astimezone(UTC) + delay


def outside_quiet(instant: datetime, recipient_zone: str | None, quiet: QuietHours, default: ZoneInfo) -> datetime:
    """`instant`, or the end of the recipient's quiet hours when it falls inside them (21:00 to
    08:00 moves a 23:30 send to 08:00 the next morning in their zone). An unknown zone is read
    as `default` (the schedule's)."""
    try:
        zone = ZoneInfo(recipient_zone) if recipient_zone else default
    except (ValueError, KeyError, IsADirectoryError):
        zone = default
    local = instant.astimezone(zone)
    if not quiet.contains(local.time()):
        return instant
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:  # before midnight: ends tomorrow
        day += timedelta(days=1)
    return resolve_wall_time(datetime.combine(day, quiet.end), zone).astimezone(UTC)


def quiet_until(campaign: Campaign, step: Step, recipient_zone: str | None, instant: datetime) -> datetime:
    """`instant` moved out of the campaign's quiet hours in the recipient's zone (unchanged for
    an urgent step, or a campaign without quiet hours)."""
    quiet = getattr(campaign, "quiet_hours", None)  # built-in campaigns have none
    if quiet is None or step.urgent:
        return instant
    default = root_step(campaign, step)[0].schedule.zone or ZoneInfo("UTC")
    return outside_quiet(instant, recipient_zone, quiet, default)


def now_utc() -> datetime:
    return datetime.now(UTC)
