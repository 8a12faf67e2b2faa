"""The delivery ledger: runs, deliveries and their events, as plain functions over the store.

The dispatcher, the Celery tasks and the operator tools all change delivery state only through
these functions. Each transition is one conditional UPDATE (`... WHERE state IN (...)`), so
two processes racing on the same rows cannot both win: the database decides, not a lock held
in Redis. Every transition that matters to an operator also writes a `delivery_events` row.

Life of a delivery:
    pending ──mark_queued──▶ queued ──claim──▶ sending ──record_sent──▶ sent
       ▲                        │                 ├──record_retry──▶ retry (due again later)
       │                        │                 ├──give_back─────▶ retry, attempt not counted
       │                        │                 ├──record_failed─▶ failed
       │      lease expired: queued again         └──lease expired─▶ unknown (see claim)
       └──────────── retry ◀────┘

An operator holds a run (`pause_run`, `cancel_run`): what waits in the database or the broker
(pending, retry, queued) becomes `paused` or `cancelled` at once, `claim` takes nothing of a
held run, and a worker holding claimed rows of it hands them back (`hold`) instead of sending
them. `resume_run` makes the paused ones due again as they were planned.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..models import ACTIVE_STATES, DeliveryState, EventKind, RunStatus
from .db import AnyRow, AnySelect, Bind, dialect_insert, immediate
from .schema import UTCDateTime, deliveries, delivery_events, runs, utcnow

T = TypeVar("T")
DueAt = datetime | Callable[[str | None], datetime]

CLAIMABLE_STATES = (DeliveryState.PENDING, DeliveryState.RETRY, DeliveryState.QUEUED)
# What pause and cancel take back at once: nothing of it is with a worker.
WAITING_STATES = CLAIMABLE_STATES
HELD_RUNS = (RunStatus.PAUSED, RunStatus.CANCELLED)
# An operator may pause or cancel a run that is still on its way.
OPEN_RUNS = (RunStatus.PLANNING, RunStatus.PLANNED, RunStatus.PAUSED)
RETRYABLE_STATES = (DeliveryState.FAILED, DeliveryState.UNKNOWN)
_NOT_SENT = tuple(s for s in DeliveryState if s is not DeliveryState.SENT)
_d, _e, _r = deliveries, delivery_events, runs


def _tx(bind: Bind, fn: Callable[[sa.Connection], T]) -> T:
    """Run `fn` in the caller's transaction, or in a new one committed on return."""
    if isinstance(bind, sa.Connection):
        return fn(bind)
    # IMMEDIATE on SQLite: most ledger steps read then write, and a deferred transaction
    # whose snapshot went stale fails at once with "database is locked" instead of waiting.
    with bind.connect() as conn, immediate(conn).begin():
        return fn(conn)


def _ids(ids: Iterable[int]) -> list[int]:
    return sorted({int(i) for i in ids})


_ID_ARRAY = postgresql.ARRAY(sa.BigInteger)


def _id_in(conn: sa.Connection, ids: list[int]) -> sa.ColumnElement[bool]:
    """`deliveries.id` is one of `ids`. On PostgreSQL one array parameter (`id = ANY(:ids)`):
    an IN list of a batch's 500 ids (a tick's 10,000) is that many bind parameters to
    render and send, which cost more client CPU than the UPDATE itself."""
    if conn.dialect.name == "postgresql":
        return _d.c.id == sa.any_(sa.bindparam("id_array", ids, type_=_ID_ARRAY))
    return _d.c.id.in_(ids)


def _events(conn: sa.Connection, rows: Iterable[tuple[int, int]], kind: str, detail: str | None,
            at: datetime) -> None:
    values = [{"delivery_id": d, "run_id": r, "kind": kind, "detail": detail, "at": at} for d, r in rows]
    if values:
        conn.execute(sa.insert(_e), values)


# --- runs ----------------------------------------------------------------------------------

def create_run(bind: Bind, campaign: str, step: str, occurrence: datetime,
               status: str = RunStatus.PLANNING) -> int | None:
    """Create the run of one occurrence of a step; return its id, or None when it already
    exists. INSERT ... ON CONFLICT DO NOTHING on UNIQUE(campaign, step, occurrence) makes this
    the one place that decides which of several racing beats (or a restarted one) plans it."""
    status = RunStatus(status)  # ValueError for a state models.py does not know
    now = utcnow()
    stmt = (dialect_insert(bind, _r)
            .values(campaign=campaign, step=step, occurrence=occurrence, status=status,
                    created_at=now, planned_count=0)
            .on_conflict_do_nothing(index_elements=["campaign", "step", "occurrence"])
            .returning(_r.c.id))
    return _tx(bind, lambda conn: conn.execute(stmt).scalar())


def get_run(bind: Bind, run_id: int) -> AnyRow | None:
    return _tx(bind, lambda conn: conn.execute(sa.select(_r).where(_r.c.id == run_id)).first())


def find_run(bind: Bind, campaign: str, step: str, occurrence: datetime) -> AnyRow | None:
    stmt = sa.select(_r).where(_r.c.campaign == campaign, _r.c.step == step, _r.c.occurrence == occurrence)
    return _tx(bind, lambda conn: conn.execute(stmt).first())


def set_run_status(bind: Bind, run_id: int, status: str, note: str | None = None,
                   only_from: Sequence[str] | None = None) -> bool:
    """Move a run to `status` (optionally only from the given statuses); True when it moved."""
    status = RunStatus(status)  # ValueError for a state models.py does not know
    now = utcnow()
    values: dict[str, Any] = {"status": status}
    if note is not None:
        values["note"] = note
    if status == RunStatus.PLANNED:
        values["planned_at"] = now
    if status in (RunStatus.DONE, RunStatus.SKIPPED, RunStatus.CANCELLED):
        values["finished_at"] = now
    stmt = sa.update(_r).where(_r.c.id == run_id).values(**values)
    if only_from is not None:
        stmt = stmt.where(_r.c.status.in_(list(only_from)))
    return _tx(bind, lambda conn: conn.execute(stmt).rowcount == 1)


def mark_run_planned(bind: Bind, run_id: int, planned_count: int | None = None) -> bool:
    """planning → planned, recording how many deliveries the run has (counted when not given).
    A run an operator paused or cancelled while it was being planned keeps that status, and
    the deliveries written since are held with the others; False then."""
    def go(conn: sa.Connection) -> bool:
        count = planned_count
        if count is None:
            count = conn.execute(sa.select(sa.func.count()).where(_d.c.run_id == run_id)).scalar_one()
        if conn.execute(sa.update(_r).where(_r.c.id == run_id, _r.c.status == RunStatus.PLANNING)
                        .values(status=RunStatus.PLANNED, planned_at=utcnow(), planned_count=count)).rowcount == 1:
            return True
        held = conn.execute(sa.update(_r).where(_r.c.id == run_id, _r.c.status.in_(HELD_RUNS),
                                                _r.c.planned_at.is_(None))
                            .values(planned_at=utcnow(), planned_count=count).returning(_r.c.status)).scalar()
        if held is not None:
            _hold_waiting(conn, run_id, RunStatus(held), utcnow())
        return False
    return _tx(bind, go)


def finish_run_if_done(bind: Bind, run_id: int) -> bool:
    """planned → done once no delivery is still active (sent, failed, skipped and unknown are
    all final). One conditional UPDATE, so it is safe to call from every worker after a batch.
    The one call that finishes the run also keeps its counts (`runs.counts`), so status pages
    never count a finished run's deliveries again."""
    active = sa.exists().where(_d.c.run_id == run_id, _d.c.state.in_(ACTIVE_STATES))
    stmt = (sa.update(_r).where(_r.c.id == run_id, _r.c.status == RunStatus.PLANNED, ~active)
            .values(status=RunStatus.DONE, finished_at=utcnow()))

    def go(conn: sa.Connection) -> bool:
        if conn.execute(stmt).rowcount != 1:
            return False
        counts = conn.execute(sa.select(_d.c.state, sa.func.count()).where(_d.c.run_id == run_id)
                              .group_by(_d.c.state)).all()
        conn.execute(sa.update(_r).where(_r.c.id == run_id).values(counts=dict(counts)))
        return True
    return _tx(bind, go)


def pause_run(bind: Bind, run_id: int, why: str) -> bool:
    """Pause a run that is being planned or sent; True when it was paused by this call.

    Its deliveries waiting in the database or the broker become `paused` in the same
    transaction, so no worker claims them from the moment this returns. The ones a worker has
    already claimed are handed back by that worker (`hold`) before it hands them to a
    provider; `in_flight` counts them until it has."""
    def go(conn: sa.Connection) -> bool:
        now = utcnow()
        moved = conn.execute(sa.update(_r).where(_r.c.id == run_id,
                                                 _r.c.status.in_((RunStatus.PLANNING, RunStatus.PLANNED)))
                             .values(status=RunStatus.PAUSED, reason=why)).rowcount == 1
        if moved:
            _hold_waiting(conn, run_id, RunStatus.PAUSED, now)
        return moved
    return _tx(bind, go)


def resume_run(bind: Bind, run_id: int) -> bool:
    """A paused run goes on: its held deliveries are due again when they were planned (at
    once when that has passed); True when it was resumed by this call."""
    def go(conn: sa.Connection) -> bool:
        now = utcnow()
        moved = conn.execute(
            sa.update(_r).where(_r.c.id == run_id, _r.c.status == RunStatus.PAUSED)
            .values(status=sa.case((_r.c.planned_at.is_(None), RunStatus.PLANNING), else_=RunStatus.PLANNED),
                    reason=None)).rowcount == 1
        if moved:
            conn.execute(sa.update(_d).where(_d.c.run_id == run_id, _d.c.state == DeliveryState.PAUSED)
                         .values(state=_unheld(), leased_until=None, updated_at=now))
        return moved
    resumed = _tx(bind, go)
    if resumed:
        finish_run_if_done(bind, run_id)  # every delivery may have been settled already
    return resumed


def cancel_run(bind: Bind, run_id: int, reason: str = "run cancelled") -> int:
    """Cancel a run for good: its deliveries not with a worker become `cancelled` (with an
    event each); return how many. A delivery already claimed is settled by its worker, which
    hands nothing more of a cancelled run to a provider (`hold`). A finished run is left as
    it is (0)."""
    def go(conn: sa.Connection) -> int:
        now = utcnow()
        if conn.execute(sa.update(_r).where(_r.c.id == run_id, _r.c.status.in_(OPEN_RUNS))
                        .values(status=RunStatus.CANCELLED, finished_at=now, reason=reason)).rowcount != 1:
            return 0
        return _hold_waiting(conn, run_id, RunStatus.CANCELLED, now, reason)
    return _tx(bind, go)


def retry_run(bind: Bind, run_id: int, states: Iterable[str]) -> int:
    """Send again the deliveries of a run that ended in one of `states` (`failed`,
    `unknown`): due now, attempts counted afresh, each with a `requeued` event; the ones
    sent are never touched. A finished run goes on; a paused run holds them until resumed;
    a cancelled or skipped run is left alone (0). Returns how many were requeued."""
    wanted = [DeliveryState(s) for s in states]
    if not wanted or any(s not in RETRYABLE_STATES for s in wanted):
        raise ValueError(f"only {', '.join(RETRYABLE_STATES)} deliveries can be retried, not {wanted}")

    def go(conn: sa.Connection) -> int:
        now = utcnow()
        status = conn.execute(sa.select(_r.c.status).where(_r.c.id == run_id).with_for_update()).scalar()
        if status not in (*OPEN_RUNS, RunStatus.DONE):
            return 0
        target = DeliveryState.PAUSED if status == RunStatus.PAUSED else DeliveryState.PENDING
        rows = conn.execute(sa.update(_d).where(_d.c.run_id == run_id, _d.c.state.in_(wanted))
                            .values(state=target, attempts=0, due_at=now, updated_at=now, leased_until=None)
                            .returning(_d.c.id, _d.c.run_id)).all()
        _events(conn, rows, EventKind.REQUEUED, f"operator retried deliveries that ended {'/'.join(wanted)}", now)
        if rows:
            conn.execute(sa.update(_r).where(_r.c.id == run_id, _r.c.status == RunStatus.DONE)
                         .values(status=RunStatus.PLANNED, finished_at=None))
            conn.execute(sa.update(_r).where(_r.c.id == run_id).values(counts=None))
        return len(rows)
    return _tx(bind, go)


def in_flight(bind: Bind, run_id: int) -> int:
    """Deliveries of a run a worker has claimed and not settled yet: after a pause or a
    cancel, the ones that may still reach a provider (or are being handed back)."""
    stmt = sa.select(sa.func.count()).where(_d.c.run_id == run_id, _d.c.state == DeliveryState.SENDING)
    return int(_tx(bind, lambda conn: conn.execute(stmt).scalar_one()))


def run_status(bind: Bind, run_id: int) -> str | None:
    """A run's status alone: what a worker checks before handing a batch to a provider."""
    stmt = sa.select(_r.c.status).where(_r.c.id == run_id)
    return _tx(bind, lambda conn: conn.execute(stmt).scalar())


STRAGGLERS_WITHIN = timedelta(days=1)


def _hold_among(conn: sa.Connection, ids: list[int], now: datetime) -> None:
    """Rows of `ids` waiting for a worker although their run is paused or cancelled (written
    by a planner that finished after the pause, given back by a worker that was throttled
    meanwhile): held with their run, so that the dispatcher stops queueing them."""
    # Cancelled runs pile up over the years; stragglers come within minutes of the cancel.
    held_runs = conn.execute(sa.select(_r.c.id).where(sa.or_(
        _r.c.status == RunStatus.PAUSED,
        sa.and_(_r.c.status == RunStatus.CANCELLED, _r.c.finished_at > now - STRAGGLERS_WITHIN)))).scalars().all()
    if not held_runs:
        return  # the usual case: one indexed look at `runs`, nothing else
    status = sa.select(_r.c.status).where(_r.c.id == _d.c.run_id).scalar_subquery()
    moved = conn.execute(
        sa.update(_d).where(_id_in(conn, ids), _d.c.state.in_(WAITING_STATES), _d.c.run_id.in_(list(held_runs)))
        .values(state=sa.case((status == RunStatus.PAUSED, DeliveryState.PAUSED), else_=DeliveryState.CANCELLED),
                leased_until=None, updated_at=now)
        .returning(_d.c.id, _d.c.run_id, _d.c.state)).all()
    _events(conn, [(d, r) for d, r, state in moved if state == DeliveryState.CANCELLED], EventKind.CANCELLED,
            "run cancelled", now)


def _unheld() -> sa.ColumnElement[str]:
    """The state a held delivery goes back to: retry when it had been tried, else pending."""
    return sa.case((_d.c.attempts > 0, DeliveryState.RETRY), else_=DeliveryState.PENDING)


def _hold_waiting(conn: sa.Connection, run_id: int, status: RunStatus, now: datetime,
                  reason: str | None = None) -> int:
    """Take back what of a held run waits in the database or the broker: `paused` (no event:
    the run says why) or `cancelled` (an event each). Returns how many."""
    where = sa.and_(_d.c.run_id == run_id, _d.c.state.in_(WAITING_STATES))
    if status == RunStatus.PAUSED:
        return conn.execute(sa.update(_d).where(where)
                            .values(state=DeliveryState.PAUSED, leased_until=None, updated_at=now)).rowcount
    moved = conn.execute(
        sa.update(_d).where(sa.or_(where, sa.and_(_d.c.run_id == run_id, _d.c.state == DeliveryState.PAUSED)))
        .values(state=DeliveryState.CANCELLED, last_error=reason or "run cancelled", leased_until=None,
                updated_at=now)
        .returning(_d.c.id, _d.c.run_id)).all()
    _events(conn, moved, EventKind.CANCELLED, reason or "run cancelled", now)
    return len(moved)


def run_progress(bind: Bind, run_id: int) -> dict[str, int]:
    """Deliveries of a run by state, every state present (0 when none). `unknown` counts the
    ones whose outcome nobody knows: shown to operators, never silently dropped."""
    stmt = sa.select(_d.c.state, sa.func.count()).where(_d.c.run_id == run_id).group_by(_d.c.state)
    counts: dict[str, int] = dict.fromkeys(DeliveryState, 0)
    counts.update(dict(_tx(bind, lambda conn: conn.execute(stmt).all())))
    return counts


# --- planning ------------------------------------------------------------------------------

PLAN_PARTS = 2  # PostgreSQL: insert in this many id ranges at once (one backend per core)


def plan_deliveries(bind: Bind, run_id: int, channel: str, account: str | None,
                    audience: AnySelect, due_at: DueAt, parts: int = PLAN_PARTS) -> int:
    """Insert one pending delivery per audience member; return how many were new.

    `audience` selects subscriber columns named `id`, `email` and `timezone` (see
    `outreach.audience.audience_select`). The rows never pass through Python: INSERT ...
    SELECT copies them inside the database, so planning a million recipients uses flat memory.
    ON CONFLICT DO NOTHING on (run, recipient, channel) makes re-planning after a crash
    idempotent, which is also what lets PostgreSQL plan in `parts` id ranges on parallel
    connections (each a transaction of its own): a million rows went from 44 s to about half.

    `due_at` is a datetime, or a function of a recipient's time zone name (None when unknown)
    for per-recipient local time. The function is called once per distinct time zone of the
    audience, and the results are folded into a CASE so the audience is still read once.
    """
    aud = audience.subquery("audience")
    now = utcnow()

    def due_expression(conn: sa.Connection) -> sa.ColumnElement[datetime]:
        if not callable(due_at):
            return sa.literal(due_at, _d.c.due_at.type)
        zones = conn.execute(sa.select(aud.c.timezone).distinct()).scalars().all()
        fallback = due_at(None)
        whens = {z: sa.literal(due_at(z), _d.c.due_at.type) for z in zones if z is not None}
        return (sa.case(whens, value=aud.c.timezone, else_=sa.literal(fallback, _d.c.due_at.type))
                if whens else sa.literal(fallback, _d.c.due_at.type))

    def insert(conn: sa.Connection, due: sa.ColumnElement[datetime], lo: int | None = None,
               hi: int | None = None) -> int:
        where = sa.true() if lo is None else aud.c.id.between(lo, hi)
        select = sa.select(
            sa.literal(run_id, _d.c.run_id.type), aud.c.id, aud.c.email,
            sa.literal(channel, _d.c.channel.type), sa.literal(account, _d.c.account.type),
            sa.literal(DeliveryState.PENDING, _d.c.state.type), sa.literal(0, _d.c.attempts.type), due,
            sa.literal(now, _d.c.created_at.type), sa.literal(now, _d.c.updated_at.type),
        ).select_from(aud).where(where)  # a WHERE: SQLite would read ON CONFLICT as a join's ON
        stmt = (dialect_insert(conn, _d)
                .from_select(["run_id", "subscriber_id", "recipient", "channel", "account", "state",
                              "attempts", "due_at", "created_at", "updated_at"], select)
                .on_conflict_do_nothing(index_elements=["run_id", "recipient", "channel"]))
        # rows inserted (conflicts excluded); INSERT rowcount must be asked for in SQLAlchemy 2.1
        return conn.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount

    if isinstance(bind, sa.Connection) or bind.dialect.name != "postgresql" or parts < 2:
        return _tx(bind, lambda conn: insert(conn, due_expression(conn)))

    with bind.connect() as conn:
        due = due_expression(conn)
        lo, hi = conn.execute(sa.select(sa.func.min(aud.c.id), sa.func.max(aud.c.id))).one()
    if lo is None:
        return 0
    step = (hi - lo) // parts + 1
    ranges = [(lo + i * step, min(lo + (i + 1) * step - 1, hi)) for i in range(parts)]
    with ThreadPoolExecutor(parts) as pool:
        counts = pool.map(lambda r: _tx(bind, lambda conn: insert(conn, due, *r)), ranges)
        return sum(counts)


def add_delivery(bind: Bind, run_id: int, recipient: str, channel: str, account: str | None,
                 due_at: datetime, subscriber_id: int | None = None) -> int | None:
    """One delivery with no audience behind it (the tweet of an X step, recipient = the
    handle); return its id, or None when the run already has it."""
    now = utcnow()
    stmt = (dialect_insert(bind, _d)
            .values(run_id=run_id, subscriber_id=subscriber_id, recipient=recipient, channel=channel,
                    account=account, state=DeliveryState.PENDING, attempts=0, due_at=due_at, created_at=now,
                    updated_at=now)
            .on_conflict_do_nothing(index_elements=["run_id", "recipient", "channel"])
            .returning(_d.c.id))
    return _tx(bind, lambda conn: conn.execute(stmt).scalar())


def get_delivery(bind: Bind, delivery_id: int) -> AnyRow | None:
    return _tx(bind, lambda conn: conn.execute(sa.select(_d).where(_d.c.id == delivery_id)).first())


# --- dispatching ---------------------------------------------------------------------------

def due_deliveries(bind: Bind, channel: str, now: datetime, limit: int) -> list[int]:
    """Ids to hand to workers now, oldest due first: pending/retry rows that are due, and
    queued/sending rows whose lease ran out (the task was lost with Redis, or the worker died).
    `mark_queued` then sorts out which of those may be sent again.

    One small query per state, each reading at most `limit` entries of the (state, channel,
    due_at|leased_until) index in order; an OR over states would sort every due row."""
    parts = [
        sa.select(_d.c.id, _d.c.due_at).where(_d.c.state == state, _d.c.channel == channel, _d.c.due_at <= now)
        .order_by(_d.c.due_at).limit(limit) for state in (DeliveryState.PENDING, DeliveryState.RETRY)
    ] + [
        sa.select(_d.c.id, _d.c.due_at).where(_d.c.state == state, _d.c.channel == channel,
                                              _d.c.leased_until < now)
        .order_by(_d.c.leased_until).limit(limit) for state in (DeliveryState.QUEUED, DeliveryState.SENDING)
    ]

    def go(conn: sa.Connection) -> list[int]:
        rows = [row for part in parts for row in conn.execute(part)]
        rows.sort(key=lambda r: (r.due_at, r.id))
        return [r.id for r in rows[:limit]]
    return _tx(bind, go)


def mark_queued(bind: Bind, ids: Iterable[int], lease_until: datetime, *, now: datetime | None = None,
                resend_unknown: bool = False) -> list[int]:
    """Lease `ids` to the queue until `lease_until`; return the ids that should now be enqueued.

    Only rows that are due (pending/retry) or whose queue lease expired move to `queued`. A row
    found `sending` with an expired lease is settled here, as `claim` would: its outcome is
    unknown, so it becomes `unknown` (or is queued again when `resend_unknown`)."""
    now = now or utcnow()
    id_list = _ids(ids)
    if not id_list:
        return []

    def go(conn: sa.Connection) -> list[int]:
        _settle_lost_sends(conn, id_list, now, resend_unknown)
        _hold_among(conn, id_list, now)
        may_send = sa.or_(
            sa.and_(_d.c.state.in_((DeliveryState.PENDING, DeliveryState.RETRY)), _d.c.due_at <= now),
            sa.and_(_d.c.state == DeliveryState.QUEUED, _d.c.leased_until < now),
        )
        rows = conn.execute(
            sa.update(_d).where(_id_in(conn, id_list), may_send)
            .values(state=DeliveryState.QUEUED, leased_until=lease_until, updated_at=now)
            .returning(_d.c.id)).all()
        # No event per queued delivery: the row's state and lease say it, and writing one
        # event row per recipient doubled the cost of queueing a large run.
        return sorted(r[0] for r in rows)
    return _tx(bind, go)


def unqueue(bind: Bind, lease_until: datetime, enqueued: Iterable[int]) -> list[int]:
    """Rows that one dispatch leased (`lease_until`, exactly) but never handed to the broker,
    because it failed: due again at once instead of when the lease runs out. Returns their ids."""
    done = set(_ids(enqueued))

    def go(conn: sa.Connection) -> list[int]:
        leased = conn.execute(sa.select(_d.c.id).where(_d.c.state == DeliveryState.QUEUED,
                                                       _d.c.leased_until == lease_until)).scalars().all()
        back = [i for i in leased if i not in done]
        if back:
            conn.execute(sa.update(_d).where(_id_in(conn, back), _d.c.state == DeliveryState.QUEUED)
                         .values(state=sa.case((_d.c.attempts > 0, DeliveryState.RETRY), else_=DeliveryState.PENDING),
                                 leased_until=None, updated_at=utcnow()))
        return back
    return _tx(bind, go)


def unfinished_runs(bind: Bind, campaign: str, step: str, note_prefix: str) -> list[AnyRow]:
    """Runs of a step, not finished, whose note starts with `note_prefix` (oldest first)."""
    stmt = (sa.select(_r).where(_r.c.campaign == campaign, _r.c.step == step,
                                _r.c.status.in_((RunStatus.PLANNING, RunStatus.PLANNED)),
                                _r.c.note.startswith(note_prefix, autoescape=True))
            .order_by(_r.c.id))
    return list(_tx(bind, lambda conn: conn.execute(stmt).all()))


def _settle_lost_sends(conn: sa.Connection, ids: list[int], now: datetime, resend_unknown: bool) -> None:
    """`sending` rows with an expired lease: a worker took them and never reported back. The
    message may or may not have left, so by default they become `unknown` (counted, visible,
    never resent by itself, since a resend could be a duplicate). Channels whose provider
    deduplicates (`resend_unknown=True`) get them back as `queued` instead."""
    lost = sa.and_(_id_in(conn, ids), _d.c.state == DeliveryState.SENDING, _d.c.leased_until < now)
    if resend_unknown:
        rows = conn.execute(sa.update(_d).where(lost)
                            .values(state=DeliveryState.QUEUED, leased_until=None, updated_at=now)
                            .returning(_d.c.id, _d.c.run_id, _d.c.claimed_by)).all()
        for did, rid, worker in rows:
            _events(conn, [(did, rid)], EventKind.REQUEUED, f"lease of {worker} expired while sending; resending", now)
    else:
        rows = conn.execute(sa.update(_d).where(lost)
                            .values(state=DeliveryState.UNKNOWN, leased_until=None, updated_at=now,
                                    last_error="outcome unknown: the lease expired while sending")
                            .returning(_d.c.id, _d.c.run_id, _d.c.claimed_by)).all()
        for did, rid, worker in rows:
            _events(conn, [(did, rid)], EventKind.UNKNOWN,
                    f"lease of {worker} expired while sending; not resent to avoid a duplicate", now)


_CLAIMED = [c for c in _d.c if not isinstance(c.type, UTCDateTime)]


def claim(bind: Bind, ids: Iterable[int], worker: str, lease_until: datetime, *,
          now: datetime | None = None, resend_unknown: bool = False) -> list[AnyRow]:
    """Take `ids` for sending; return the rows THIS call claimed (state `sending`, attempts
    incremented; every column but the timestamps, which a sender does not need and which
    cost more to convert than the rest of the row). A row is claimable when it is pending, retry or queued
    and due; another claim that got there first wins, so a Celery task run twice sends once.
    Rows found `sending` with an expired lease are settled first (see `_settle_lost_sends`);
    with `resend_unknown` they are then claimed again."""
    now = now or utcnow()
    id_list = _ids(ids)
    if not id_list:
        return []

    def go(conn: sa.Connection) -> list[AnyRow]:
        _settle_lost_sends(conn, id_list, now, resend_unknown)
        # nothing of a run an operator paused or cancelled, however it came to be waiting
        held = sa.exists().where(_r.c.id == _d.c.run_id, _r.c.status.in_(HELD_RUNS))
        stmt = (sa.update(_d)
                .where(_id_in(conn, id_list), _d.c.state.in_(CLAIMABLE_STATES), _d.c.due_at <= now, ~held)
                .values(state=DeliveryState.SENDING, claimed_by=worker, leased_until=lease_until,
                        attempts=_d.c.attempts + 1, updated_at=now)
                .returning(*_CLAIMED))
        return sorted(conn.execute(stmt).all(), key=lambda r: r.id)
    return _tx(bind, go)


# --- outcomes ------------------------------------------------------------------------------

def _outcome(bind: Bind, delivery_id: int, from_states: Sequence[str], values: dict[str, Any],
             kind: str, detail: str | None) -> bool:
    now = utcnow()

    def go(conn: sa.Connection) -> bool:
        row = conn.execute(
            sa.update(_d).where(_d.c.id == delivery_id, _d.c.state.in_(list(from_states)))
            .values(updated_at=now, **values).returning(_d.c.id, _d.c.run_id)).first()
        if row is None:
            return False
        _events(conn, [tuple(row)], kind, detail, now)
        return True
    return _tx(bind, go)


def record_sent(bind: Bind, delivery_id: int, provider_id: str | None) -> bool:
    """The provider accepted the message. Also accepted from `unknown` (a slow worker
    reporting after its lease ran out knows better than the ledger); False when already sent."""
    return _outcome(bind, delivery_id, _NOT_SENT,
                    {"state": DeliveryState.SENT, "provider_id": provider_id, "sent_at": utcnow(),
                     "leased_until": None, "last_error": None}, EventKind.SENT, provider_id)


def record_sent_many(bind: Bind, sent: Sequence[tuple[int, int, str | None]]) -> None:
    """`record_sent` for many deliveries at once: (delivery id, run id, provider id) each.

    One transaction instead of one per message: at thousands of emails a second the
    per-message commit, not the SMTP send, was the cost. The caller flushes often (every few
    dozen messages), so a worker killed between a send and the flush leaves few deliveries
    whose outcome is unknown. On PostgreSQL it is a single statement (an UPDATE over
    unnest()ed arrays feeding the event INSERT): an executemany of both cost ~5x the CPU on
    each side. Either way an event is written only for a row that this call moved to sent."""
    if not sent:
        return
    now = utcnow()

    def go(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(_record_sent_pg, {"ids": [d for d, _, _ in sent], "pids": [p for _, _, p in sent],
                                           "now": now})
            return
        moved = conn.execute(_record_sent_json, {"batch": json.dumps([[d, p] for d, _, p in sent]), "now": now})
        done = [{"delivery_id": d, "run_id": r, "kind": EventKind.SENT, "detail": p, "at": now} for d, r, p in moved]
        if done:
            conn.execute(sa.insert(_e), done)
    _tx(bind, go)


def _json_record_sent() -> sa.Update:
    batch = sa.func.json_each(sa.bindparam("batch", type_=sa.Text)).table_valued("value").alias("batch")
    did = sa.func.json_extract(batch.c.value, "$[0]")
    pid = sa.func.json_extract(batch.c.value, "$[1]")
    return (sa.update(_d).where(_d.c.id == did, _d.c.state != DeliveryState.SENT)
            .values(state=DeliveryState.SENT, provider_id=pid, sent_at=sa.bindparam("now"), leased_until=None,
                    last_error=None, updated_at=sa.bindparam("now"))
            .returning(_d.c.id, _d.c.run_id, _d.c.provider_id))


_record_sent_json = _json_record_sent()


def _pg_record_sent() -> sa.Insert:
    batch = sa.func.unnest(sa.bindparam("ids", type_=_ID_ARRAY),
                           sa.bindparam("pids", type_=postgresql.ARRAY(sa.Text))
                           ).table_valued("id", "pid").render_derived(name="batch")
    moved = (sa.update(_d).where(_d.c.id == batch.c.id, _d.c.state != DeliveryState.SENT)
             .values(state=DeliveryState.SENT, provider_id=batch.c.pid, sent_at=sa.bindparam("now"), leased_until=None,
                     last_error=None, updated_at=sa.bindparam("now"))
             .returning(_d.c.id, _d.c.run_id, _d.c.provider_id).cte("moved"))
    return sa.insert(_e).from_select(
        ["delivery_id", "run_id", "kind", "detail", "at"],
        sa.select(moved.c.id, moved.c.run_id, sa.literal(EventKind.SENT, _e.c.kind.type), moved.c.provider_id,
                  sa.bindparam("now", type_=_e.c.at.type)))


_record_sent_pg = _pg_record_sent()


def record_retry(bind: Bind, delivery_id: int, error: str, next_due_at: datetime) -> bool:
    """A transient failure: due again at `next_due_at` (backoff, or the provider's reset time);
    the dispatcher queues it then, so no worker sleeps on it."""
    return _outcome(bind, delivery_id, (DeliveryState.SENDING, DeliveryState.UNKNOWN, DeliveryState.QUEUED),
                    {"state": DeliveryState.RETRY, "due_at": next_due_at, "leased_until": None, "last_error": error},
                    EventKind.RETRIED, error)


def record_unknown(bind: Bind, delivery_id: int, error: str) -> bool:
    """Nobody knows whether the message left (the connection dropped after its data, a
    request timed out): `unknown`, like a send whose worker died. Never resent by itself,
    since a resend could be a duplicate; an operator may requeue it (`requeue_unknown`)."""
    return _outcome(bind, delivery_id, (DeliveryState.SENDING,),
                    {"state": DeliveryState.UNKNOWN, "leased_until": None, "last_error": error},
                    EventKind.UNKNOWN, error)


def give_back(bind: Bind, ids: Iterable[int], next_due_at: datetime, reason: str, *,
              worker: str | None = None, lease_until: datetime | None = None) -> list[int]:
    """Hand claimed deliveries back unsent, due again at `next_due_at`: nothing of them
    reached a provider (our own limit said wait, the account is paused, or something failed
    before the hand-off), so the claim's attempt is handed back too. Returns the ids moved.

    `worker`: only rows that worker claimed; then also rows the dispatcher has meanwhile
    settled as `unknown` because the lease ran out (the worker knows they never left).
    `lease_until`: only rows of the claim that set this lease, and only while still
    `sending` (a claim whose reply was lost with the connection: its rows are ours, unsent)."""
    id_list = _ids(ids)
    if not id_list:
        return []
    now = utcnow()
    states = [DeliveryState.SENDING]
    if worker is not None and lease_until is None:
        states.append(DeliveryState.UNKNOWN)

    def go(conn: sa.Connection) -> list[int]:
        stmt = sa.update(_d).where(_id_in(conn, id_list), _d.c.state.in_(states))
        if worker is not None:
            stmt = stmt.where(_d.c.claimed_by == worker)
        if lease_until is not None:
            stmt = stmt.where(_d.c.leased_until == lease_until)
        moved = conn.execute(stmt.values(state=DeliveryState.RETRY, due_at=next_due_at, leased_until=None,
                                         last_error=reason, attempts=_d.c.attempts - 1, updated_at=now)
                             .returning(_d.c.id, _d.c.run_id)).all()
        _events(conn, moved, EventKind.RETRIED, reason, now)
        return sorted(d for d, _ in moved)
    return _tx(bind, go)


def hold(bind: Bind, ids: Iterable[int], worker: str) -> list[int]:
    """Claimed deliveries a worker found its run paused or cancelled for, before handing them
    to a provider: `paused` (or `cancelled`, with an event) like the rest of their run, the
    claim's attempt handed back; due again as planned if the run was resumed meanwhile.
    Returns the ids moved."""
    id_list = _ids(ids)
    if not id_list:
        return []
    now = utcnow()
    status = sa.select(_r.c.status).where(_r.c.id == _d.c.run_id).scalar_subquery()

    def go(conn: sa.Connection) -> list[int]:
        moved = conn.execute(
            sa.update(_d).where(_id_in(conn, id_list), _d.c.state == DeliveryState.SENDING,
                                _d.c.claimed_by == worker)
            .values(state=sa.case((status == RunStatus.PAUSED, DeliveryState.PAUSED),
                                  (status == RunStatus.CANCELLED, DeliveryState.CANCELLED),
                                  (_d.c.attempts > 1, DeliveryState.RETRY), else_=DeliveryState.PENDING),
                    attempts=_d.c.attempts - 1, leased_until=None, updated_at=now)
            .returning(_d.c.id, _d.c.run_id, _d.c.state)).all()
        _events(conn, [(d, r) for d, r, state in moved if state == DeliveryState.CANCELLED], EventKind.CANCELLED,
                "run cancelled", now)
        return sorted(d for d, _, _ in moved)
    return _tx(bind, go)


def defer(bind: Bind, rows: Sequence[tuple[int, int]], next_due_at: datetime, reason: str) -> None:
    """`give_back` for rows given as (delivery id, run id): our own rate limit said wait."""
    give_back(bind, [d for d, _ in rows], next_due_at, reason)


def record_failed(bind: Bind, delivery_id: int, error: str, bounced: bool = False) -> bool:
    """A permanent failure (or attempts exhausted). `bounced` records the event as a hard
    bounce; suppressing the address is the caller's job (`suppressions.suppress`)."""
    return _outcome(bind, delivery_id, (*ACTIVE_STATES, DeliveryState.UNKNOWN),
                    {"state": DeliveryState.FAILED, "leased_until": None, "last_error": error},
                    EventKind.BOUNCED if bounced else EventKind.FAILED, error)


def record_skipped(bind: Bind, delivery_id: int, reason: str) -> bool:
    """Not sent on purpose (suppressed or unsubscribed since planning, run cancelled)."""
    return _outcome(bind, delivery_id, tuple(ACTIVE_STATES),
                    {"state": DeliveryState.SKIPPED, "leased_until": None, "last_error": reason},
                    EventKind.SKIPPED, reason)


def record_progress(bind: Bind, delivery_id: int, progress: Any) -> bool:
    """Save partial progress of a multi-part send (e.g. ids of the tweets of a thread already
    posted) so a retry continues where it stopped instead of posting them again."""
    return _outcome(bind, delivery_id, (DeliveryState.SENDING, DeliveryState.UNKNOWN, DeliveryState.RETRY,
                                        DeliveryState.QUEUED),
                    {"progress": progress}, EventKind.PROGRESS, None)


def record_event(bind: Bind, delivery_id: int, kind: str, detail: str | None = None,
                 at: datetime | None = None) -> None:
    """An event after the fact (a bounce report, an unsubscribe or click from a link)."""
    def go(conn: sa.Connection) -> None:
        run_id = conn.execute(sa.select(_d.c.run_id).where(_d.c.id == delivery_id)).scalar_one()
        _events(conn, [(delivery_id, run_id)], kind, detail, at or utcnow())
    _tx(bind, go)


def requeue_unknown(bind: Bind, run_id: int) -> int:
    """Operator decision after checking the provider: send the `unknown` deliveries of a run
    again. Returns how many were requeued (`retry_run`)."""
    return retry_run(bind, run_id, [DeliveryState.UNKNOWN])


def delivery_events_of(bind: Bind, delivery_id: int) -> Sequence[AnyRow]:
    stmt = sa.select(_e).where(_e.c.delivery_id == delivery_id).order_by(_e.c.id)
    return _tx(bind, lambda conn: conn.execute(stmt).all())


def add_system_delivery(bind: Bind, campaign: str, step: str, occurrence: datetime, channel: str,
                        account: str | None, recipient: str, subscriber_id: int, due_at: datetime) -> int | None:
    """One delivery of a built-in step (the sign-up confirmation), in the run of `occurrence`
    (created `planned` on first use: nothing plans it from an audience). Returns its id, or
    None when that run already has a delivery to `recipient`. A run found `done` is planned
    again, so the sender's bookkeeping treats the new delivery like any other."""
    def go(conn: sa.Connection) -> int | None:
        now = utcnow()
        conn.execute(dialect_insert(conn, _r)
                     .values(campaign=campaign, step=step, occurrence=occurrence, status=RunStatus.PLANNED,
                             created_at=now, planned_at=now, planned_count=0)
                     .on_conflict_do_nothing(index_elements=["campaign", "step", "occurrence"]))
        run_id = conn.execute(sa.select(_r.c.id).where(_r.c.campaign == campaign, _r.c.step == step,
                                                       _r.c.occurrence == occurrence)).scalar_one()
        delivery_id: int | None = conn.execute(
            dialect_insert(conn, _d)
            .values(run_id=run_id, subscriber_id=subscriber_id, recipient=recipient, channel=channel,
                    account=account, state=DeliveryState.PENDING, attempts=0, due_at=due_at, created_at=now,
                    updated_at=now)
            .on_conflict_do_nothing(index_elements=["run_id", "recipient", "channel"])
            .returning(_d.c.id)).scalar()
        if delivery_id is not None:
            conn.execute(sa.update(_r).where(_r.c.id == run_id)
                         .values(planned_count=_r.c.planned_count + 1, counts=None, status=sa.case(
                             (_r.c.status == RunStatus.DONE, RunStatus.PLANNED), else_=_r.c.status),
                             finished_at=sa.case((_r.c.status == RunStatus.DONE, None), else_=_r.c.finished_at)))
        return delivery_id
    return _tx(bind, go)
