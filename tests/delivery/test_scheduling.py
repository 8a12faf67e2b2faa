"""Wall-clock times across DST change-overs: a gap moves a time forward by the gap's own
length (not a fixed hour), a fold means the first of the two instants, and a cron schedule
behaves like a one-off one on those nights."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outreach.authoring.campaigns import Campaign
from outreach.delivery.scheduling import occurrences, resolve_wall_time

LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # +10:30 / +11:00: a 30-minute change-over
NEW_YORK = ZoneInfo("America/New_York")


def test_a_time_in_lord_howes_30_minute_gap_moves_30_minutes_not_an_hour():
    # given 02:10 on the night Lord Howe Island jumps from 02:00 to 02:30 (6 Oct 2030)
    wall = datetime(2030, 10, 6, 2, 10)
    # when it is resolved in that zone
    got = resolve_wall_time(wall, LORD_HOWE)
    # then it is 02:40 local (+11:00), the same distance past the gap's start
    assert got.replace(tzinfo=None) == datetime(2030, 10, 6, 2, 40)
    assert got.utcoffset() == timedelta(hours=11)
    assert got.astimezone(UTC) == datetime(2030, 10, 5, 15, 40, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "wall", "expected"), [
    (NEW_YORK, datetime(2030, 3, 10, 2, 30), datetime(2030, 3, 10, 3, 30)),    # one-hour gap
    (LORD_HOWE, datetime(2030, 10, 6, 2, 0), datetime(2030, 10, 6, 2, 30)),    # the gap's first minute
    (LORD_HOWE, datetime(2030, 10, 6, 2, 29), datetime(2030, 10, 6, 2, 59)),
    (LORD_HOWE, datetime(2030, 10, 6, 2, 30), datetime(2030, 10, 6, 2, 30)),   # exists: unchanged
])
def test_gap_times_move_by_the_gaps_length(zone, wall, expected):
    assert resolve_wall_time(wall, zone).replace(tzinfo=None) == expected


@pytest.mark.parametrize(("zone", "wall", "offset"), [
    (LORD_HOWE, datetime(2030, 4, 7, 1, 45), timedelta(hours=11)),   # 01:30-02:00 happens twice
    (NEW_YORK, datetime(2030, 11, 3, 1, 30), timedelta(hours=-4)),   # 01:00-02:00 happens twice
])
def test_a_time_that_happens_twice_means_the_first(zone, wall, offset):
    got = resolve_wall_time(wall, zone)
    assert got.replace(tzinfo=None) == wall
    assert got.utcoffset() == offset  # still summer time: the earlier instant


def _campaign(schedule: str) -> Campaign:
    from outreach.authoring.campaigns import Campaign

    return Campaign.model_validate({
        "name": "dst", "audience": {"filter": {"tags": ["x"]}},
        "steps": [{"id": "mail", "channel": "email", "template": "t", "schedule": schedule}]})


def test_a_cron_time_in_the_gap_moves_like_a_one_off_time():
    # given a daily 02:10 in Lord Howe, and a one-off at the same wall time
    cron = _campaign({"cron": "10 2 * * *", "timezone": "Australia/Lord_Howe"})
    at = _campaign({"at": "2030-10-06 02:10", "timezone": "Australia/Lord_Howe"})
    window = (datetime(2030, 10, 5, 0, 0, tzinfo=UTC), datetime(2030, 10, 7, 0, 0, tzinfo=UTC))
    # when the occurrences around the change-over night are computed
    got = occurrences(cron, cron.steps[0], *window)
    one_off = occurrences(at, at.steps[0], *window)
    # then the night's one occurs at 02:40 local, as the one-off does; the next day at 02:10
    assert [o.astimezone(LORD_HOWE).replace(tzinfo=None) for o in got] == [
        datetime(2030, 10, 6, 2, 40), datetime(2030, 10, 7, 2, 10)]
    assert one_off == got[:1]


def test_a_cron_time_in_a_fold_occurs_once():
    # given a daily 01:45 in Lord Howe, where 01:30-02:00 happens twice on 7 April 2030
    cron = _campaign({"cron": "45 1 * * *", "timezone": "Australia/Lord_Howe"})
    got = occurrences(cron, cron.steps[0], datetime(2030, 4, 6, 0, 0, tzinfo=UTC),
                      datetime(2030, 4, 7, 12, 0, tzinfo=UTC))
    # then that night has one occurrence, the first 01:45 (+11:00)
    assert got == [datetime(2030, 4, 6, 14, 45, tzinfo=UTC)]


def test_every_cron_time_of_a_gap_night_maps_to_a_distinct_or_shared_existing_instant():
    # given a cron every 10 minutes over Lord Howe's gap night
    cron = _campaign({"cron": "*/10 * * * *", "timezone": "Australia/Lord_Howe"})
    got = occurrences(cron, cron.steps[0], datetime(2030, 10, 5, 15, 0, tzinfo=UTC),
                      datetime(2030, 10, 5, 16, 30, tzinfo=UTC))
    # then the times are sorted, unique, and every one exists on the wall clock
    assert got == sorted(set(got))
    for occ in got:
        local = occ.astimezone(LORD_HOWE)
        assert resolve_wall_time(local.replace(tzinfo=None), LORD_HOWE) == local
    # and the instants run 10 minutes apart, from 01:10 (+10:30) to 03:30 (+11:00)
    assert len(got) == 9
