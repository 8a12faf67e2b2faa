"""What operators look at (`outreach status`, the dashboard, /metrics), as a few aggregate
queries that stay cheap however long the ledger's history grows.

Nothing here reads deliveries row by row in Python, and nothing scans the whole table:
- a run's progress counts its deliveries through the (run_id, state) index, only for runs
  that can still change; a finished run with nothing active keeps its counts in `runs.counts`
  (written on first look, cleared when it is reopened), so ten million historical rows
  cost one row each per run shown;
- the backlog counts only the active states, through the (state, channel, due_at) index,
  and the scheduler's lag is the first entry of that index;
- the last errors are the newest error events, through the (kind, at) index, at most
  `limit` of them, grouped by reason.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa

from ..models import ACTIVE_STATES, DeliveryState, EventKind, RunStatus
from .db import AnyRow, Bind
from .ledger import _tx
from .schema import deliveries, delivery_events, runs

_d, _e, _r = deliveries, delivery_events, runs
OPEN_RUNS = (RunStatus.PLANNING, RunStatus.PLANNED, RunStatus.PAUSED)
ERROR_KINDS = (EventKind.FAILED, EventKind.BOUNCED, EventKind.RETRIED, EventKind.UNKNOWN)
T = TypeVar("T")


def _read(bind: Bind, fn: Callable[[sa.Connection], T]) -> T:
    """A read in the caller's transaction or a plain one: never the write lock `_tx` takes
    on SQLite, so looking does not hold up a worker recording outcomes."""
    if isinstance(bind, sa.Connection):
        return fn(bind)
    with bind.connect() as conn:
        return fn(conn)


def runs_to_show(bind: Bind, *, limit: int, run_id: int | None = None, campaign: str | None = None) -> list[AnyRow]:
    """Every run still open (planning, planned, paused) and the newest `limit` others, newest
    first; or one run (`run_id`), or the runs of one campaign (the newest `limit`)."""
    def go(conn: sa.Connection) -> list[AnyRow]:
        if run_id is not None:
            return list(conn.execute(sa.select(_r).where(_r.c.id == run_id)).all())
        if campaign is not None:
            return list(conn.execute(sa.select(_r).where(_r.c.campaign == campaign)
                                     .order_by(_r.c.id.desc()).limit(limit)).all())
        open_ = conn.execute(sa.select(_r).where(_r.c.status.in_(OPEN_RUNS)).order_by(_r.c.id.desc())).all()
        recent = conn.execute(sa.select(_r).order_by(_r.c.id.desc()).limit(limit)).all()
        seen: dict[int, AnyRow] = {row.id: row for row in (*open_, *recent)}
        return sorted(seen.values(), key=lambda row: row.id, reverse=True)
    return _read(bind, go)


def progress(bind: Bind, shown: Sequence[AnyRow], *, fresh: bool = False) -> dict[int, dict[str, int]]:
    """Deliveries by state (every state present) for each run of `shown`. Finished runs use
    their kept counts unless `fresh`; the others are counted in one grouped query, and a
    finished run found with nothing active gets its counts kept."""
    out: dict[int, dict[str, int]] = {}
    to_count: list[int] = []
    for run in shown:
        kept = run.counts if not fresh and RunStatus(run.status).finished else None
        if isinstance(kept, dict):
            out[run.id] = {**dict.fromkeys(DeliveryState, 0), **{k: int(v) for k, v in kept.items()}}
        else:
            to_count.append(run.id)
    if not to_count:
        return out

    def count(conn: sa.Connection) -> None:
        stmt = (sa.select(_d.c.run_id, _d.c.state, sa.func.count()).where(_d.c.run_id.in_(to_count))
                .group_by(_d.c.run_id, _d.c.state))
        for run_id in to_count:
            out[run_id] = dict.fromkeys(DeliveryState, 0)
        for run_id, state, n in conn.execute(stmt):
            out[run_id][state] = n
    _read(bind, count)
    finished = {run.id for run in shown if RunStatus(run.status).finished}
    keep = {run_id: {k: v for k, v in out[run_id].items() if v} for run_id in to_count
            if run_id in finished and not any(out[run_id][s] for s in ACTIVE_STATES)}
    if keep:
        def write(conn: sa.Connection) -> None:
            for run_id, kept in keep.items():  # only while it is still finished
                conn.execute(sa.update(_r).where(_r.c.id == run_id, _r.c.status.in_(_FINISHED))
                             .values(counts=kept))
        _tx(bind, write)
    return out


_FINISHED = [s for s in RunStatus if s.finished]


@dataclass(frozen=True)
class Backlog:
    """Active deliveries of one channel by state, and the oldest due one still pending."""

    channel: str
    states: dict[str, int]
    oldest_due: datetime | None


def backlog(bind: Bind, channels: Sequence[str]) -> list[Backlog]:
    """Per channel: how many deliveries are pending, queued, sending, retry or paused, and
    the due time of the oldest pending one (the scheduler is late by now minus that)."""
    states = sorted(ACTIVE_STATES)

    def go(conn: sa.Connection) -> list[Backlog]:
        found = []
        for channel in channels:
            counts: dict[str, int] = dict.fromkeys(states, 0)
            stmt = (sa.select(_d.c.state, sa.func.count())
                    .where(_d.c.channel == channel, _d.c.state.in_(states)).group_by(_d.c.state))
            counts.update(dict(conn.execute(stmt).all()))
            oldest = conn.execute(sa.select(_d.c.due_at).where(_d.c.state == DeliveryState.PENDING,
                                                                _d.c.channel == channel)
                                  .order_by(_d.c.due_at).limit(1)).scalar()
            found.append(Backlog(channel, counts, oldest))
        return found
    return _read(bind, go)


@dataclass(frozen=True)
class ErrorGroup:
    """Error events with one reason: how many among the newest looked at, the newest when."""

    kind: str
    reason: str
    count: int
    last_at: datetime
    runs: tuple[int, ...]
    example: str


# What makes one message's error text differ from another's with the same cause.
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")
_NUMBER = re.compile(r"(?<![\w.])\d{4,}(?![\w.])|\b[0-9a-f]{12,}\b", re.IGNORECASE)


def reason_of(detail: str | None) -> str:
    """An error's reason without what is particular to one message (addresses, ids)."""
    text = (detail or "no reason given").strip().splitlines()[0] if (detail or "").strip() else "no reason given"
    return _NUMBER.sub("…", _ADDRESS.sub("<address>", text))[:300]


def recent_errors(bind: Bind, since: datetime, limit: int = 500, *, run_ids: Sequence[int] | None = None
                  ) -> list[ErrorGroup]:
    """The newest error events since `since` (at most `limit` of each kind), grouped by kind and
    reason, most frequent first."""
    def go(conn: sa.Connection) -> list[AnyRow]:
        rows: list[AnyRow] = []
        for kind in ERROR_KINDS:
            stmt = (sa.select(_e.c.kind, _e.c.detail, _e.c.at, _e.c.run_id)
                    .where(_e.c.kind == kind, _e.c.at >= since).order_by(_e.c.at.desc()).limit(limit))
            if run_ids is not None:
                stmt = stmt.where(_e.c.run_id.in_(list(run_ids)))
            rows.extend(conn.execute(stmt).all())
        return rows
    groups: dict[tuple[str, str], list[AnyRow]] = {}
    for row in _read(bind, go):
        groups.setdefault((row.kind, reason_of(row.detail)), []).append(row)
    found = [ErrorGroup(kind, reason, len(rows), max(r.at for r in rows), tuple(sorted({r.run_id for r in rows})),
                        rows[0].detail or "") for (kind, reason), rows in groups.items()]
    return sorted(found, key=lambda g: (-g.count, g.kind, g.reason))
