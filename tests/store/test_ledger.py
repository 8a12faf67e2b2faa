from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from outreach.store import (
    add_delivery,
    cancel_run,
    claim,
    create_run,
    delivery_events_of,
    due_deliveries,
    find_run,
    finish_run_if_done,
    get_delivery,
    mark_queued,
    mark_run_planned,
    plan_deliveries,
    record_failed,
    record_progress,
    record_retry,
    record_sent,
    record_sent_many,
    requeue_unknown,
    run_progress,
    suppress,
)
from outreach.store.audience import audience_select
from outreach.store.schema import deliveries
from tests.store.helpers import T0, people

LEASE = timedelta(minutes=5)


def _concurrently(n: int, fn) -> list:
    """Run fn(i) in n threads released together; each uses its own pooled connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _planned_run(engine, count: int = 3, due: datetime = T0) -> tuple[int, list[int]]:
    people(engine, *[(f"p{i}@example.org", []) for i in range(count)])
    run_id = create_run(engine, "camp", "email", T0)
    plan_deliveries(engine, run_id, "email", "news", audience_select(None, {}), due)
    mark_run_planned(engine, run_id)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == run_id)
                                .order_by(deliveries.c.id)).scalars())
    return run_id, ids


def test_create_run_is_unique_per_occurrence(engine):
    # given one run
    first = create_run(engine, "camp", "email", T0)
    # when the same occurrence is created again (also written in another zone), or another occurrence
    again = create_run(engine, "camp", "email", T0.astimezone(ZoneInfo("Asia/Seoul")))
    other = create_run(engine, "camp", "email", T0 + timedelta(days=1))
    # then only the first and the other one are new
    assert isinstance(first, int) and again is None and isinstance(other, int) and other != first
    assert find_run(engine, "camp", "email", T0).id == first


def test_create_run_under_concurrent_inserts_creates_exactly_one(engine):
    # given 8 beats racing for each of 5 occurrences, each with its own connection
    for k in range(5):
        occurrence = T0 + timedelta(hours=k)
        # when they all insert at once
        ids = _concurrently(8, lambda i, occurrence=occurrence: create_run(engine, "race", "s", occurrence))
        # then exactly one of them got the run
        winners = [x for x in ids if x is not None]
        assert len(winners) == 1, ids
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from runs where campaign = 'race'").scalar() == 5


def test_plan_is_idempotent_and_skips_suppressed(engine):
    # given four confirmed subscribers, one of them suppressed
    people(engine, *[(f"p{i}@example.org", []) for i in range(4)])
    suppress(engine, "p3@example.org", "hard bounce")
    run_id = create_run(engine, "camp", "email", T0)
    audience = audience_select(None, {})
    # when planning twice (a crash and a retry), then once more after someone subscribes
    first = plan_deliveries(engine, run_id, "email", "news", audience, T0)
    second = plan_deliveries(engine, run_id, "email", "news", audience, T0)
    people(engine, ("late@example.org", []))
    third = plan_deliveries(engine, run_id, "email", "news", audience, T0)
    # then each recipient has exactly one delivery
    assert (first, second, third) == (3, 0, 1)
    assert run_progress(engine, run_id)["pending"] == 4
    with engine.connect() as conn:
        recipients = set(conn.execute(sa.select(deliveries.c.recipient)).scalars())
    assert "p3@example.org" not in recipients and "late@example.org" in recipients


def test_plan_gives_each_time_zone_its_own_local_due_time(engine):
    # given subscribers in three zones and one with no zone
    people(engine, ("chi@example.org", [], {"timezone": "America/Chicago"}),
           ("chi2@example.org", [], {"timezone": "America/Chicago"}),
           ("seoul@example.org", [], {"timezone": "Asia/Seoul"}),
           ("lon@example.org", [], {"timezone": "Europe/London"}),
           ("none@example.org", []))
    run_id = create_run(engine, "camp", "email", T0)
    calls: list[str | None] = []

    def nine_am_local(zone: str | None) -> datetime:
        calls.append(zone)
        tz = ZoneInfo(zone or "America/Los_Angeles")
        return datetime(2026, 12, 1, 9, 0, tzinfo=tz)

    # when planning with a due time that depends on the zone
    count = plan_deliveries(engine, run_id, "email", None, audience_select(None, {}), nine_am_local)
    # then the function ran once per zone, and each delivery is due at 09:00 in its zone
    assert count == 5
    assert sorted(calls, key=str) == sorted(["America/Chicago", "Asia/Seoul", "Europe/London", None], key=str)
    with engine.connect() as conn:
        due = dict(conn.execute(sa.select(deliveries.c.recipient, deliveries.c.due_at)).all())
    assert due["chi@example.org"] == due["chi2@example.org"] == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert due["seoul@example.org"] == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert due["lon@example.org"] == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert due["none@example.org"] == datetime(2026, 12, 1, 17, 0, tzinfo=UTC)


def test_add_delivery_for_a_tweet_is_idempotent(engine):
    run_id = create_run(engine, "camp", "tweet", T0)
    first = add_delivery(engine, run_id, "libertyinnk", "x", "link", T0)
    again = add_delivery(engine, run_id, "libertyinnk", "x", "link", T0)
    assert isinstance(first, int) and again is None
    assert get_delivery(engine, first).subscriber_id is None


def test_due_queue_claim_send_and_finish(engine):
    # given a planned run of 3 deliveries due at T0
    run_id, ids = _planned_run(engine, 3)
    # when nothing is due yet, then nothing is returned
    assert due_deliveries(engine, "email", T0 - timedelta(seconds=1), 100) == []
    assert due_deliveries(engine, "x", T0, 100) == []
    # when due, they are queued, claimed and sent
    due = due_deliveries(engine, "email", T0, 100)
    assert due == ids
    assert mark_queued(engine, due, T0 + LEASE, now=T0) == ids
    assert due_deliveries(engine, "email", T0, 100) == []  # leased: not handed out twice
    rows = claim(engine, ids, "w1", T0 + LEASE, now=T0)
    assert [r.id for r in rows] == ids and {r.state for r in rows} == {"sending"} and rows[0].attempts == 1
    assert rows[0].recipient == "p0@example.org"
    for r in rows:
        assert finish_run_if_done(engine, run_id) is False
        assert record_sent(engine, r.id, f"<{r.id}@mail>")
    # then the run is done, with every delivery sent and an event trail
    assert finish_run_if_done(engine, run_id) is True
    assert run_progress(engine, run_id)["sent"] == 3
    assert [e.kind for e in delivery_events_of(engine, ids[0])] == ["sent"]  # queueing writes no event
    assert record_sent(engine, ids[0], "again") is False  # already sent: not counted twice


def test_claim_is_exclusive_under_concurrency(engine):
    # given 120 due deliveries
    run_id, ids = _planned_run(engine, 120)
    batches = [ids[i:i + 30] for i in range(0, len(ids), 30)]

    # when 6 workers claim every batch at once (a task delivered several times)
    def work(i: int) -> list[int]:
        got = []
        for batch in batches:
            got += [r.id for r in claim(engine, batch, f"w{i}", T0 + LEASE, now=T0)]
        return got

    claimed = _concurrently(6, work)
    # then every delivery was claimed exactly once, by one worker, with one attempt
    flat = [i for got in claimed for i in got]
    assert sorted(flat) == ids
    with engine.connect() as conn:
        attempts = set(conn.execute(sa.select(deliveries.c.attempts).where(deliveries.c.run_id == run_id)).scalars())
    assert attempts == {1}


def test_expired_queue_lease_makes_a_delivery_due_again(engine):
    # given a delivery queued at T0 whose task was lost (Redis died)
    _, ids = _planned_run(engine, 1)
    mark_queued(engine, ids, T0 + LEASE, now=T0)
    # when the lease has not expired, it is not due; when it has, it is
    assert due_deliveries(engine, "email", T0 + LEASE - timedelta(seconds=1), 10) == []
    later = T0 + LEASE + timedelta(seconds=1)
    assert due_deliveries(engine, "email", later, 10) == ids
    # then it is queued again and can be claimed and sent once
    assert mark_queued(engine, ids, later + LEASE, now=later) == ids
    assert len(claim(engine, ids, "w2", later + LEASE, now=later)) == 1
    assert claim(engine, ids, "w3", later + LEASE, now=later) == []


def test_lease_expired_while_sending_is_counted_unknown_not_resent(engine):
    # given a delivery a worker claimed and then died while sending
    run_id, ids = _planned_run(engine, 2)
    claim(engine, ids, "dead-worker", T0 + LEASE, now=T0)
    record_sent(engine, ids[1], "ok")
    later = T0 + LEASE + timedelta(seconds=1)
    # when the dispatcher finds it after the lease and tries to queue it
    assert due_deliveries(engine, "email", later, 10) == [ids[0]]
    queued = mark_queued(engine, [ids[0]], later + LEASE, now=later)
    # then it is not queued (it may have been sent) but counted as unknown, with an event
    assert queued == []
    assert get_delivery(engine, ids[0]).state == "unknown"
    assert run_progress(engine, run_id)["unknown"] == 1
    assert delivery_events_of(engine, ids[0])[-1].kind == "unknown"
    assert "dead-worker" in delivery_events_of(engine, ids[0])[-1].detail
    assert due_deliveries(engine, "email", later, 10) == []
    # and the run can finish: unknown is a final state the operator sees
    assert finish_run_if_done(engine, run_id) is True
    # and an operator may decide to resend it
    assert requeue_unknown(engine, run_id) == 1
    assert get_delivery(engine, ids[0]).state == "pending"


def test_claim_settles_a_lost_send_the_same_way(engine):
    # given a delivery stuck in sending after its lease (a duplicate task arrives late)
    _, ids = _planned_run(engine, 1)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    later = T0 + LEASE + timedelta(seconds=1)
    # when claimed again, then nothing is claimed and the outcome is unknown
    assert claim(engine, ids, "w2", later + LEASE, now=later) == []
    assert get_delivery(engine, ids[0]).state == "unknown"


def test_idempotent_channel_may_resend_a_lost_send(engine):
    # given a lost send on a channel whose provider deduplicates
    _, ids = _planned_run(engine, 1)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    later = T0 + LEASE + timedelta(seconds=1)
    # when claimed with resend_unknown
    rows = claim(engine, ids, "w2", later + LEASE, now=later, resend_unknown=True)
    # then it is claimed again, on its second attempt
    assert [(r.claimed_by, r.attempts) for r in rows] == [("w2", 2)]
    assert [e.kind for e in delivery_events_of(engine, ids[0])] == ["requeued"]


def test_retry_waits_for_its_due_time(engine):
    # given a claimed delivery that failed transiently
    _, ids = _planned_run(engine, 1)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    retry_at = T0 + timedelta(minutes=2)
    assert record_retry(engine, ids[0], "421 try later", retry_at)
    # when a stale task tries to claim it before then, it gets nothing
    assert claim(engine, ids, "w2", T0 + LEASE, now=T0 + timedelta(minutes=1)) == []
    assert due_deliveries(engine, "email", T0 + timedelta(minutes=1), 10) == []
    # then at the retry time it is due and claimable again
    assert due_deliveries(engine, "email", retry_at, 10) == ids
    rows = claim(engine, ids, "w2", retry_at + LEASE, now=retry_at)
    assert rows[0].attempts == 2 and rows[0].last_error == "421 try later"


def test_failure_and_progress_are_recorded(engine):
    run_id, ids = _planned_run(engine, 2)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    assert record_progress(engine, ids[0], {"tweets": ["111", "222"]})
    assert get_delivery(engine, ids[0]).progress == {"tweets": ["111", "222"]}
    assert record_failed(engine, ids[0], "550 no such user", bounced=True)
    assert record_failed(engine, ids[1], "403 duplicate")
    assert [e.kind for e in delivery_events_of(engine, ids[0])] == ["progress", "bounced"]
    assert run_progress(engine, run_id)["failed"] == 2
    assert finish_run_if_done(engine, run_id)


def test_due_deliveries_are_oldest_first_across_states_and_limited(engine):
    # given pending deliveries due at T0+1m..T0+3m, one retry due at T0, one lost in sending
    run_id, ids = _planned_run(engine, 4)
    with engine.begin() as conn:
        for i, did in enumerate(ids[:3]):
            conn.execute(sa.update(deliveries).where(deliveries.c.id == did)
                         .values(due_at=T0 + timedelta(minutes=i + 1)))
    claim(engine, [ids[3]], "w1", T0 + timedelta(seconds=30), now=T0)
    record_retry(engine, ids[3], "busy", T0)
    now = T0 + timedelta(hours=1)
    # when asking for the 2 most overdue, then for all
    # then the retry (due T0) comes first, then the oldest pending
    assert due_deliveries(engine, "email", now, 2) == [ids[3], ids[0]]
    assert due_deliveries(engine, "email", now, 10) == [ids[3], ids[0], ids[1], ids[2]]


def test_cancel_run_cancels_what_was_not_sent(engine):
    run_id, ids = _planned_run(engine, 3)
    claim(engine, [ids[0]], "w1", T0 + LEASE, now=T0)
    record_sent(engine, ids[0], "x")
    claim(engine, [ids[1]], "w1", T0 + LEASE, now=T0)
    # when cancelled, the untouched delivery is cancelled, the one with a worker left to it
    assert cancel_run(engine, run_id) == 1
    progress = run_progress(engine, run_id)
    assert (progress["sent"], progress["sending"], progress["cancelled"]) == (1, 1, 1)
    assert due_deliveries(engine, "email", T0 + timedelta(days=1), 10) == [ids[1]]  # lease expiry still seen


def test_sent_outcomes_recorded_together_write_one_event_per_delivery_moved(engine):
    # given three claimed deliveries, one of them already recorded sent
    run_id, ids = _planned_run(engine, 3)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    assert record_sent(engine, ids[0], "<first@mail>")
    # when all three are recorded sent in one batch
    record_sent_many(engine, [(i, run_id, f"<{i}@mail>") for i in ids])
    # then each is sent with its own provider id, and the one sent before keeps its first record
    assert [get_delivery(engine, i).provider_id for i in ids] == ["<first@mail>", f"<{ids[1]}@mail>",
                                                                   f"<{ids[2]}@mail>"]
    assert {get_delivery(engine, i).state for i in ids} == {"sent"}
    assert [[e.kind for e in delivery_events_of(engine, i)] for i in ids] == [["sent"]] * 3
    assert run_progress(engine, run_id)["sent"] == 3
