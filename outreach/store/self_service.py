"""What subscribers change themselves, through the links in their email and the sign-up form:
find a subscriber by the `link_id` a link carries, unsubscribe, confirm a sign-up, sign up,
set preferences. SQL only; values arrive checked (outreach.subscribers.fields) and tokens
verified (content/links.py).

Each change is one transaction that is committed before the web page answers, and every
later check reads it: the audience query (store/audience.py) and the last check before
sending (subscribers.load_for_sending), which skips deliveries planned before the change.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

import sqlalchemy as sa

from ..models import EventKind, Subscriber, SubscriberStatus
from .db import Bind, dialect_insert, immediate
from .schema import deliveries, delivery_events, runs, subscriber_tags, subscribers, suppressions, utcnow
from .subscribers import _subscriber, _tags_of
from .suppressions import suppression_key

T = TypeVar("T")
_s, _t = subscribers, subscriber_tags


def _tx(bind: Bind, fn: Callable[[sa.Connection], T]) -> T:
    if isinstance(bind, sa.Connection):
        return fn(bind)
    with bind.connect() as conn, immediate(conn).begin():  # read-then-write: take SQLite's lock at BEGIN
        return fn(conn)


@dataclass(frozen=True)
class Person:
    """A subscriber as their own pages show them."""

    subscriber: Subscriber
    paused_until: datetime | None
    suppressed: bool

    @property
    def id(self) -> int:
        assert self.subscriber.id is not None  # read from the table
        return self.subscriber.id


def by_link_id(bind: Bind, link_id: str) -> Person | None:
    """The subscriber whose links carry `link_id`, or None (deleted, or never existed)."""
    suppressed = sa.exists().where(suppressions.c.address == sa.func.lower(_s.c.email))

    def go(conn: sa.Connection) -> Person | None:
        row = conn.execute(sa.select(_s, suppressed.label("suppressed")).where(_s.c.link_id == link_id)).first()
        if row is None:
            return None
        sub = _subscriber(row, _tags_of(conn, [row.id]).get(row.id, ()))
        return Person(sub, row.paused_until, bool(row.suppressed))
    return _tx(bind, go)


# --- unsubscribe and confirm -----------------------------------------------------------------

def unsubscribe(bind: Bind, subscriber_id: int, campaign: str | None = None, detail: str = "link") -> bool:
    """Stop every email to this subscriber; True when this call changed something (a second
    unsubscribe is harmless). The `unsubscribed` event goes on their latest delivery of
    `campaign`, so an operator sees which email made people leave."""
    def go(conn: sa.Connection) -> bool:
        now = utcnow()
        changed = conn.execute(
            sa.update(_s).where(_s.c.id == subscriber_id,
                                _s.c.status.in_((SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING)))
            .values(status=SubscriberStatus.UNSUBSCRIBED, paused_until=None, updated_at=now)).rowcount > 0
        if changed and campaign:
            d, r = deliveries, runs
            last = conn.execute(
                sa.select(d.c.id, d.c.run_id).join(r, r.c.id == d.c.run_id)
                .where(d.c.subscriber_id == subscriber_id, r.c.campaign == campaign)
                .order_by(d.c.id.desc()).limit(1)).first()
            if last is not None:
                conn.execute(sa.insert(delivery_events).values(delivery_id=last.id, run_id=last.run_id,
                                                               kind=EventKind.UNSUBSCRIBED, detail=detail, at=now))
        return changed
    return _tx(bind, go)


def resubscribe(bind: Bind, subscriber_id: int) -> bool:
    """The person, from a link in their own email, undoes an unsubscribe."""
    stmt = (sa.update(_s).where(_s.c.id == subscriber_id, _s.c.status == SubscriberStatus.UNSUBSCRIBED)
            .values(status=SubscriberStatus.CONFIRMED, consent_at=utcnow(), updated_at=utcnow()))
    return _tx(bind, lambda conn: conn.execute(stmt).rowcount > 0)


def confirm(bind: Bind, subscriber_id: int) -> bool:
    """pending → confirmed (the double opt-in link); True when this call confirmed. Nothing
    else moves: an old confirmation link cannot bring back someone who left since."""
    now = utcnow()
    stmt = (sa.update(_s).where(_s.c.id == subscriber_id, _s.c.status == SubscriberStatus.PENDING)
            .values(status=SubscriberStatus.CONFIRMED, consent_at=now, updated_at=now))
    return _tx(bind, lambda conn: conn.execute(stmt).rowcount > 0)


# --- sign-up ---------------------------------------------------------------------------------

class SignUp(StrEnum):
    NEW = "new"                # a new pending subscriber: send a confirmation
    PENDING = "pending"        # signed up before and never confirmed: send it again
    RETURNING = "returning"    # had unsubscribed, asks again: pending, send a confirmation
    CONFIRMED = "confirmed"    # already receives email: nothing to do
    BLOCKED = "blocked"        # bounced, complained or suppressed: never mailed again

    @property
    def confirm(self) -> bool:
        return self in (SignUp.NEW, SignUp.PENDING, SignUp.RETURNING)


@dataclass(frozen=True)
class SignUpResult:
    outcome: SignUp
    subscriber_id: int
    link_id: str
    email: str  # as stored (the first spelling the address was given in)


def sign_up(bind: Bind, person: Subscriber, topics: Collection[str], source: str) -> SignUpResult:
    """Record a sign-up from the form: a new address becomes `pending` with the given
    details; an unconfirmed one is updated (only its owner will ever confirm it); a confirmed,
    bounced, complained or suppressed one is left exactly as it is, since whoever fills in a
    form is not known to be its owner. `topics` replace the topics of a pending one."""
    key = suppression_key(person.email)
    lower = sa.func.lower(_s.c.email)

    def go(conn: sa.Connection) -> SignUpResult:
        now = utcnow()
        values = {"name": person.name, "timezone": person.timezone, "language": person.language,
                  "consent_source": source[:200]}
        inserted = conn.execute(
            dialect_insert(conn, _s).values(email=person.email, status=SubscriberStatus.PENDING, attrs={},
                                            created_at=now, updated_at=now, **values)
            .on_conflict_do_nothing(index_elements=[lower]).returning(_s.c.id, _s.c.link_id)).first()
        if inserted is not None:
            _set_tags(conn, inserted.id, topics, topics)
            return SignUpResult(SignUp.NEW, inserted.id, inserted.link_id, person.email)
        row = conn.execute(sa.select(_s.c.id, _s.c.status, _s.c.link_id, _s.c.email).where(lower == key)).one()
        blocked = conn.execute(sa.select(suppressions.c.address)
                               .where(suppressions.c.address == key)).first() is not None
        status = SubscriberStatus(row.status)
        if blocked or status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
            return SignUpResult(SignUp.BLOCKED, row.id, row.link_id, row.email)
        if status is SubscriberStatus.CONFIRMED:
            return SignUpResult(SignUp.CONFIRMED, row.id, row.link_id, row.email)
        keep = {k: sa.func.coalesce(v, _s.c[k]) for k, v in values.items()}
        conn.execute(sa.update(_s).where(_s.c.id == row.id)
                     .values(status=SubscriberStatus.PENDING, updated_at=now, **keep))
        _set_tags(conn, row.id, topics, topics)
        return SignUpResult(SignUp.PENDING if status is SubscriberStatus.PENDING else SignUp.RETURNING,
                            row.id, row.link_id, row.email)
    return _tx(bind, go)


# --- preferences -----------------------------------------------------------------------------

def set_preferences(bind: Bind, subscriber_id: int, *, language: str | None, topics: Collection[str],
                    chosen: Collection[str], paused_until: datetime | None) -> None:
    """Save the preferences page: the language, which of the organization's `topics` the
    person wants (`chosen`; their other tags are not touched), and a pause (None: none)."""
    def go(conn: sa.Connection) -> None:
        conn.execute(sa.update(_s).where(_s.c.id == subscriber_id)
                     .values(language=language, paused_until=paused_until, updated_at=utcnow()))
        _set_tags(conn, subscriber_id, topics, chosen)
    _tx(bind, go)


def _set_tags(conn: sa.Connection, subscriber_id: int, among: Iterable[str], chosen: Iterable[str]) -> None:
    """Make the subscriber's tags that are in `among` exactly `chosen`."""
    among, chosen = set(among), set(chosen) & set(among)
    if not among:
        return
    conn.execute(sa.delete(_t).where(_t.c.subscriber_id == subscriber_id, _t.c.tag.in_(sorted(among - chosen))))
    if chosen:
        conn.execute(dialect_insert(conn, _t).on_conflict_do_nothing(index_elements=["subscriber_id", "tag"]),
                     [{"subscriber_id": subscriber_id, "tag": tag} for tag in sorted(chosen)])
