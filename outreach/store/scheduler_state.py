"""The scheduler's cursor: up to when occurrences have been turned into runs.

Kept in the database (not Redis) so a restarted or replaced beat resumes where the last one
stopped: occurrences it missed are created on its first tick, or recorded as skipped when
they are past their `expires` window.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .db import Bind, dialect_insert
from .ledger import _tx
from .schema import runs, scheduler_state


def get_cursor(bind: Bind, name: str) -> datetime | None:
    stmt = sa.select(scheduler_state.c.value).where(scheduler_state.c.name == name)
    return _tx(bind, lambda conn: conn.execute(stmt).scalar())


def advance_cursor(bind: Bind, name: str, value: datetime) -> None:
    """Move the cursor forward only: two beats racing never move it back."""
    def go(conn: sa.Connection) -> None:
        ins = dialect_insert(conn, scheduler_state).values(name=name, value=value)
        conn.execute(ins.on_conflict_do_update(
            index_elements=["name"], set_={"value": value},
            where=scheduler_state.c.value < value))
    _tx(bind, go)


def stuck_runs(bind: Bind, status: str, created_before: datetime) -> list[int]:
    stmt = sa.select(runs.c.id).where(runs.c.status == status, runs.c.created_at < created_before)
    return _tx(bind, lambda conn: list(conn.execute(stmt).scalars()))
