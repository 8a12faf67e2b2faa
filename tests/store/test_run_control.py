"""Operators hold runs: pause, resume, cancel and retry in the ledger, against SQLite and
PostgreSQL. The worker side (a real worker holding what it claimed) is in tests/worker."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from outreach.store import (
    cancel_run,
    claim,
    create_run,
    delivery_events_of,
    due_deliveries,
    get_delivery,
    get_run,
    hold,
    in_flight,
    mark_queued,
    mark_run_planned,
    pause_run,
    plan_deliveries,
    record_failed,
    record_sent,
    record_unknown,
    resume_run,
    retry_run,
    run_progress,
    run_status,
)
from outreach.store.audience import audience_select
from outreach.store.schema import deliveries
from tests.store.helpers import T0, people
from tests.store.test_ledger import LEASE, _planned_run

LATER = T0 + timedelta(hours=1)


def _states(engine, ids):
    return [get_delivery(engine, i).state for i in ids]


def test_a_paused_run_is_neither_dispatched_nor_claimed_until_resumed(engine):
    # given a run of four: one pending, one queued, one sent, one retry that had an attempt
    run_id, ids = _planned_run(engine, 4)
    mark_queued(engine, [ids[1]], T0 + LEASE, now=T0)
    claim(engine, [ids[2]], "w1", T0 + LEASE, now=T0)
    record_sent(engine, ids[2], "x")
    claim(engine, [ids[3]], "w1", T0 + LEASE, now=T0)
    from outreach.store import record_retry
    record_retry(engine, ids[3], "busy", T0)
    # when paused
    assert pause_run(engine, run_id, "wrong link in the letter")
    # then what waited is held, the sent one untouched, and the reason kept
    assert _states(engine, ids) == ["paused", "paused", "sent", "paused"]
    run = get_run(engine, run_id)
    assert (run.status, run.reason) == ("paused", "wrong link in the letter")
    # and the dispatcher finds nothing, and a task already in the broker claims nothing
    assert due_deliveries(engine, "email", LATER, 10) == []
    assert claim(engine, ids, "w2", LATER + LEASE, now=LATER) == []
    # and pausing again is refused (it is already paused)
    assert not pause_run(engine, run_id, "again")
    # when resumed
    assert resume_run(engine, run_id)
    # then each goes back to what it was (a tried one to retry), due as planned
    assert _states(engine, ids) == ["pending", "pending", "sent", "retry"]
    assert get_run(engine, run_id).status == "planned" and get_run(engine, run_id).reason is None
    assert sorted(due_deliveries(engine, "email", LATER, 10)) == sorted([ids[0], ids[1], ids[3]])
    assert not resume_run(engine, run_id)  # not paused any more


def test_a_claim_refuses_rows_of_a_held_run_however_they_came_to_wait(engine):
    # given a paused run with a delivery written pending after the pause (a planner still at work)
    run_id, ids = _planned_run(engine, 2)
    assert pause_run(engine, run_id, "hold")
    with engine.begin() as conn:
        conn.execute(sa.update(deliveries).where(deliveries.c.id == ids[0]).values(state="pending"))
    # when a worker tries to claim it
    claimed = claim(engine, ids, "w1", LATER + LEASE, now=LATER)
    # then nothing is claimed
    assert claimed == []
    assert get_delivery(engine, ids[0]).state == "pending"
    # and the dispatcher, finding it due, holds it with its run instead of queueing it again
    assert mark_queued(engine, ids, LATER + LEASE, now=LATER) == []
    assert _states(engine, ids) == ["paused", "paused"]
    # and in a cancelled run, it is cancelled (with its event)
    assert resume_run(engine, run_id)
    cancel_run(engine, run_id)
    with engine.begin() as conn:
        conn.execute(sa.update(deliveries).where(deliveries.c.id == ids[1]).values(state="retry"))
    assert mark_queued(engine, ids, LATER + LEASE, now=LATER) == []
    assert get_delivery(engine, ids[1]).state == "cancelled"
    assert [e.kind for e in delivery_events_of(engine, ids[1])][-1] == "cancelled"


def test_a_worker_hands_back_what_it_claimed_before_the_pause(engine):
    # given two deliveries claimed by a worker, then the run is paused
    run_id, ids = _planned_run(engine, 2)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    assert pause_run(engine, run_id, "stop")
    assert in_flight(engine, run_id) == 2
    assert run_status(engine, run_id) == "paused"
    # when another worker's id tries to hold them, nothing moves; when their worker does, both do
    assert hold(engine, ids, "w2") == []
    assert hold(engine, ids, "w1") == sorted(ids)
    # then they are paused with their attempt handed back, and nothing is in flight
    assert _states(engine, ids) == ["paused", "paused"]
    assert [get_delivery(engine, i).attempts for i in ids] == [0, 0]
    assert in_flight(engine, run_id) == 0


def test_a_cancelled_runs_remaining_deliveries_end_cancelled(engine):
    # given a run: one sent, one claimed by a worker, one paused, one pending
    run_id, ids = _planned_run(engine, 4)
    claim(engine, [ids[0]], "w1", T0 + LEASE, now=T0)
    record_sent(engine, ids[0], "x")
    claim(engine, [ids[1]], "w1", T0 + LEASE, now=T0)
    # when it is paused, then cancelled
    assert pause_run(engine, run_id, "check")
    assert cancel_run(engine, run_id, "the action is over") == 2
    # then what waited is cancelled (with an event), the sent one kept
    assert _states(engine, ids) == ["sent", "sending", "cancelled", "cancelled"]
    assert [e.kind for e in delivery_events_of(engine, ids[2])] == ["cancelled"]
    run = get_run(engine, run_id)
    assert (run.status, run.reason) == ("cancelled", "the action is over")
    assert not resume_run(engine, run_id)
    # and the worker holding the claimed one cancels it instead of sending it
    assert hold(engine, [ids[1]], "w1") == [ids[1]]
    assert _states(engine, ids) == ["sent", "cancelled", "cancelled", "cancelled"]
    # and cancelling again, or a finished run, changes nothing
    assert cancel_run(engine, run_id) == 0
    assert run_progress(engine, run_id)["cancelled"] == 3


def test_a_done_run_cannot_be_cancelled_or_paused(engine):
    run_id, ids = _planned_run(engine, 1)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    record_sent(engine, ids[0], "x")
    from outreach.store import finish_run_if_done
    assert finish_run_if_done(engine, run_id)
    assert cancel_run(engine, run_id) == 0
    assert not pause_run(engine, run_id, "late")
    assert get_run(engine, run_id).status == "done"


def test_pausing_a_run_being_planned_holds_what_the_planner_writes_after(engine):
    # given a run still being planned when it is paused
    people(engine, *[(f"p{i}@example.org", []) for i in range(3)])
    run_id = create_run(engine, "camp", "email", T0)
    assert pause_run(engine, run_id, "not yet")
    # when the planner writes its deliveries and marks it planned
    plan_deliveries(engine, run_id, "email", "news", audience_select(None, {}), T0)
    assert not mark_run_planned(engine, run_id)
    # then the run stays paused with its count, and every delivery is held
    run = get_run(engine, run_id)
    assert (run.status, run.planned_count) == ("paused", 3)
    assert run_progress(engine, run_id)["paused"] == 3
    # and on resume it is planned, its deliveries due
    assert resume_run(engine, run_id)
    assert get_run(engine, run_id).status == "planned"
    assert run_progress(engine, run_id)["pending"] == 3


def test_retry_resends_only_the_failed_or_unknown_and_reopens_the_run(engine):
    # given a finished run: one sent, one failed, one unknown
    run_id, ids = _planned_run(engine, 3)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    record_sent(engine, ids[0], "x")
    record_failed(engine, ids[1], "550 mailbox full")
    record_unknown(engine, ids[2], "connection dropped")
    from outreach.store import finish_run_if_done
    assert finish_run_if_done(engine, run_id)
    # when the failed ones are retried
    assert retry_run(engine, run_id, ["failed"]) == 1
    # then only that one is pending again, attempts counted afresh, and the run is open again
    assert _states(engine, ids) == ["sent", "pending", "unknown"]
    assert get_delivery(engine, ids[1]).attempts == 0
    assert get_run(engine, run_id).status == "planned"
    assert [e.kind for e in delivery_events_of(engine, ids[1])][-1] == "requeued"
    # and the unknown ones on their own, and never a sent one
    assert retry_run(engine, run_id, ["unknown"]) == 1
    assert retry_run(engine, run_id, ["failed", "unknown"]) == 0
    with pytest.raises(ValueError, match="failed, unknown"):
        retry_run(engine, run_id, ["sent"])


def test_retry_in_a_paused_run_holds_and_in_a_cancelled_run_does_nothing(engine):
    run_id, ids = _planned_run(engine, 2)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    record_failed(engine, ids[0], "550")
    record_failed(engine, ids[1], "550")
    assert pause_run(engine, run_id, "look first")
    assert retry_run(engine, run_id, ["failed"]) == 2
    assert _states(engine, ids) == ["paused", "paused"]
    cancel_run(engine, run_id)
    assert retry_run(engine, run_id, ["cancelled"] if False else ["failed"]) == 0
    assert retry_run(engine, 999_999, ["failed"]) == 0
