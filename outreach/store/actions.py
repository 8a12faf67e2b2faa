"""What supporters did: the actions they record from their signed links ("I sent it", "I
posted it"), each at most once per subscriber, campaign and action, and the counts operators
read (`outreach status`). SQL only.

A recorded action is committed before the thank-you page answers, and every later check reads
it: the audience of a step that goes only to those who have not acted (store/audience.py),
and the last check before sending, which skips a reminder planned before the click.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from .db import Bind, dialect_insert
from .schema import actions, utcnow

_a = actions


def record_action(bind: Bind, subscriber_id: int, campaign: str, action: str, target: str | None) -> bool:
    """Record that the subscriber did `action` for `campaign`; False when it was already recorded
    (a second click, a retried POST: nothing changes)."""
    stmt = (dialect_insert(bind, _a)
            .values(subscriber_id=subscriber_id, campaign=campaign, action=action, target=target, at=utcnow())
            .on_conflict_do_nothing(index_elements=["subscriber_id", "campaign", "action"]))

    def go(conn: sa.Connection) -> bool:
        return bool(conn.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount)
    if isinstance(bind, sa.Connection):
        return go(bind)
    with bind.begin() as conn:
        return go(conn)


def has_acted(bind: Bind, subscriber_id: int, campaign: str, action: str) -> bool:
    stmt = sa.select(sa.literal(1)).where(_a.c.subscriber_id == subscriber_id, _a.c.campaign == campaign,
                                          _a.c.action == action).limit(1)
    if isinstance(bind, sa.Connection):
        return bind.execute(stmt).first() is not None
    with bind.connect() as conn:
        return conn.execute(stmt).first() is not None


def acted_among(bind: Bind, ids: Iterable[int], campaign: str, action: str) -> set[int]:
    """Which of the subscribers `ids` recorded `action` for `campaign`."""
    id_list = sorted(set(ids))
    if not id_list:
        return set()
    stmt = sa.select(_a.c.subscriber_id).where(_a.c.subscriber_id.in_(id_list), _a.c.campaign == campaign,
                                               _a.c.action == action)
    if isinstance(bind, sa.Connection):
        return set(bind.execute(stmt).scalars())
    with bind.connect() as conn:
        return set(conn.execute(stmt).scalars())


def acted_condition(subscriber_id: sa.ColumnElement[int], campaign: str, action: str) -> sa.ColumnElement[bool]:
    return sa.exists().where(_a.c.subscriber_id == subscriber_id, _a.c.campaign == campaign, _a.c.action == action)


@dataclass(frozen=True)
class ActionCount:
    campaign: str
    action: str
    target: str | None
    count: int


def action_counts(bind: Bind, campaign: str | None = None) -> list[ActionCount]:
    """Actions per campaign, action and target (the office the letter went to), most first."""
    n = sa.func.count().label("n")
    stmt = sa.select(_a.c.campaign, _a.c.action, _a.c.target, n).group_by(_a.c.campaign, _a.c.action, _a.c.target)
    if campaign is not None:
        stmt = stmt.where(_a.c.campaign == campaign)
    stmt = stmt.order_by(_a.c.campaign, _a.c.action, n.desc(), _a.c.target)
    if isinstance(bind, sa.Connection):
        rows = bind.execute(stmt).all()
    else:
        with bind.connect() as conn:
            rows = conn.execute(stmt).all()
    return [ActionCount(r.campaign, r.action, r.target, r.n) for r in rows]
