"""The scheduler run twice, and run late: two beats and two dispatchers at once, and a tick
that comes an hour late (the beat was down, or the clock jumped), with and without `expires`."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from outreach.store.schema import runs
from tests.reliability.harness import scale

N = scale(1000, 4000)

CAMPAIGN = """\
name: {name}
title: {title}
audience:
  filter:
    tags: [advocacy]
steps:
  - id: mail
    channel: email
    template: alert
{expires}    schedule:
      at: {at:%Y-%m-%d %H:%M}
      timezone: UTC
"""


def _campaign(name: str, at: datetime, expires: str | None = None) -> str:
    return CAMPAIGN.format(name=name, title=name.title(), at=at,
                           expires=f"    expires: {expires}\n" if expires else "")


def _runs(stack) -> dict[str, str]:
    with stack.engine.connect() as conn:
        return {f"{c}/{s}": st for c, s, st in conn.execute(sa.select(runs.c.campaign, runs.c.step, runs.c.status))}


def test_two_beats_and_two_dispatchers_at_once(stack):
    # given a campaign due this minute and the X posts due with it
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    stack.configure(campaigns={"alert": _campaign("alert", now)}, x_posts=scale(4, 10))
    stack.project.write("templates/x/post.txt", "{{ campaign.title }}: part one\n---\n{{ campaign.title }}: part two")
    for n in range(1, scale(4, 10) + 1):
        text = (stack.project.root / f"config/campaigns/post{n:02d}.yaml").read_text()
        stack.project.write(f"config/campaigns/post{n:02d}.yaml",
                            text.replace("at: 2030-01-15 09:00", f"at: {now:%Y-%m-%d %H:%M}")
                            .replace("Europe/Paris", "UTC"))
    stack.add_people(N)
    # when two beats tick every second and two control workers run the ticks (each one plans
    # and queues), next to two sending workers
    stack.procs.beat()
    stack.procs.outreach("beat", "-l", "warning", "--schedule-file", str(stack.tmp / "logs" / "beat-2-schedule"),
                         name="beat-2")
    stack.procs.worker("control", 1, name="control-1")
    stack.procs.worker("control", 1, name="control-2")
    stack.worker("worker-1")
    stack.worker("worker-2")
    # then each step has one run, and everyone got one message
    counts = stack.finish("two beats and two control workers ticking at once (each tick plans and queues)",
                          "design: runs unique per occurrence, queueing and claims conditional",
                          planned=N + scale(4, 10))
    assert counts.sent == N + scale(4, 10) and counts.duplicates == 0
    assert len(_runs(stack)) == 1 + scale(4, 10)


def test_a_tick_an_hour_late_with_and_without_expires(stack):
    # given two campaigns due 61 minutes ago, one of them with `expires: 30m`
    due = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=61)
    stack.configure(campaigns={"alert": _campaign("alert", due), "stale": _campaign("stale", due, "30m")})
    stack.add_people(N)
    # and a beat whose last tick was two hours ago (it was down, or the clock jumped ahead)
    from outreach.delivery.planner import CURSOR
    from outreach.store import scheduler_state

    scheduler_state.advance_cursor(stack.engine, CURSOR, datetime.now(UTC) - timedelta(hours=2))
    # when the beat starts again
    stack.services(workers=1)
    # then the one without `expires` is sent, once, late; the one past its `expires` is skipped
    counts = stack.finish("the beat's last tick was 2 h ago; two campaigns due 61 min ago, one with `expires: 30m`",
                          "design: missed occurrences are caught up unless older than `expires`", planned=N)
    assert counts.sent == N and counts.planned == N
    assert _runs(stack) == {"alert/mail": "done", "stale/mail": "skipped"}
