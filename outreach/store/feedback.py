"""Bounces, complaints and provider unsubscribes in SQL: recorded once per event and address,
with what they change (the subscriber's status, a suppression, the delivery's history) in the
same transaction; and the rates the circuit breaker and `outreach status` read.

The rules (what suppresses, after how many) arrive as values: the caller reads them from
settings (`bounces.soft_limit`, `bounces.soft_window`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa

from ..models import DeliveryState, FeedbackKind, SubscriberStatus
from .db import AnyRow, Bind, dialect_insert, immediate
from .overview import progress
from .schema import deliveries, delivery_events, feedback, runs, subscribers, utcnow
from .suppressions import suppress

T = TypeVar("T")
_d, _f, _r, _s = deliveries, feedback, runs, subscribers
KEY_LENGTH = 300


def _tx(bind: Bind, fn: Callable[[sa.Connection], T]) -> T:
    if isinstance(bind, sa.Connection):
        return fn(bind)
    with bind.connect() as conn, immediate(conn).begin():
        return fn(conn)


def event_key(source: str, event: str, address: str) -> str:
    """The idempotency key of one event about one address: readable when short, hashed when
    the provider's id is long."""
    key = f"{source}:{event}:{address.lower()}"
    if len(key) <= KEY_LENGTH:
        return key
    return f"{source}:sha256:{hashlib.sha256(key.encode('utf-8', 'replace')).hexdigest()}"


@dataclass(frozen=True)
class Entry:
    """One thing a report or a provider said about one address."""

    key: str
    source: str
    kind: FeedbackKind
    address: str          # lower-cased addr-spec
    code: str | None
    text: str | None
    at: datetime
    delivery_id: int | None = None  # found by the caller (VERP, Message-ID, the address)
    event: bool = True              # also a delivery event (False: the caller wrote one already)


@dataclass(frozen=True)
class Recorded:
    new: bool                 # False: this event was recorded before (a retry, a replay)
    suppressed: bool = False  # this event suppressed the address
    status: str | None = None  # the subscriber's status this event set
    run_id: int | None = None


# --- which delivery ---------------------------------------------------------------------------

_DELIVERY_COLUMNS = (_d.c.id, _d.c.run_id, _d.c.account, _d.c.recipient, _d.c.subscriber_id, _d.c.channel)


def find_delivery(bind: Bind, *, delivery_id: int | None = None, message_id: str | None = None,
                  address: str | None = None) -> AnyRow | None:
    """The delivery a report answers: by id (VERP), else by the Message-ID it was sent with,
    else the latest delivery sent to `address`."""
    def go(conn: sa.Connection) -> AnyRow | None:
        if delivery_id is not None:
            row = conn.execute(sa.select(*_DELIVERY_COLUMNS).where(_d.c.id == delivery_id)).first()
            if row is not None:
                return row
        if message_id:
            row = conn.execute(sa.select(*_DELIVERY_COLUMNS).where(_d.c.provider_id == message_id)
                               .order_by(_d.c.id.desc()).limit(1)).first()
            if row is not None:
                return row
        if address:
            sub = conn.execute(sa.select(_s.c.id).where(sa.func.lower(_s.c.email) == address.lower())).scalar()
            if sub is not None:
                return conn.execute(sa.select(*_DELIVERY_COLUMNS)
                                    .where(_d.c.subscriber_id == sub, _d.c.state == DeliveryState.SENT)
                                    .order_by(_d.c.sent_at.desc(), _d.c.id.desc()).limit(1)).first()
        return None
    return _tx(bind, go)


# --- recording --------------------------------------------------------------------------------

def record(bind: Bind, entry: Entry, *, soft_limit: int, soft_window: timedelta) -> Recorded:
    """Record `entry` once (a second time changes nothing) and apply the rules:

    - hard bounce: the address is suppressed at once, the subscriber `bounced`;
    - soft bounce: suppressed and `bounced` once it is the `soft_limit`-th within `soft_window`;
    - complaint: the subscriber `complained` (unsubscribed from everything) and the address
      suppressed for good: no campaign mails it again;
    - unsubscribe (through the provider): the subscriber `unsubscribed`, as the link does.
    Each is also an event of its delivery, with the provider's code and text."""
    def go(conn: sa.Connection) -> Recorded:
        delivery = None
        if entry.delivery_id is not None:
            delivery = conn.execute(sa.select(*_DELIVERY_COLUMNS).where(_d.c.id == entry.delivery_id)).first()
        now = utcnow()
        inserted = conn.execute(
            dialect_insert(conn, _f).values(
                key=entry.key[:KEY_LENGTH], source=entry.source[:32], kind=entry.kind, address=entry.address.lower(),
                delivery_id=delivery.id if delivery else None, run_id=delivery.run_id if delivery else None,
                account=delivery.account if delivery else None, code=(entry.code or None) and entry.code[:32],
                text=entry.text, at=entry.at, created_at=now)
            .on_conflict_do_nothing(index_elements=["key"]).returning(_f.c.id)).scalar()
        if inserted is None:
            return Recorded(new=False)
        run_id = delivery.run_id if delivery else None
        if delivery is not None and entry.event:
            detail = " ".join(p for p in (entry.kind.value.replace("_", " ") + ":", entry.code, entry.text) if p)
            conn.execute(sa.insert(delivery_events).values(delivery_id=delivery.id, run_id=delivery.run_id,
                                                           kind=entry.kind.event, detail=detail[:2000], at=now))
        lower = sa.func.lower(_s.c.email) == entry.address.lower()
        if entry.kind is FeedbackKind.UNSUBSCRIBE:
            changed = conn.execute(sa.update(_s).where(lower, _s.c.status.in_((SubscriberStatus.CONFIRMED,
                                                                                 SubscriberStatus.PENDING)))
                                   .values(status=SubscriberStatus.UNSUBSCRIBED, paused_until=None,
                                           updated_at=now)).rowcount
            return Recorded(True, status=SubscriberStatus.UNSUBSCRIBED if changed else None, run_id=run_id)
        if entry.kind is FeedbackKind.COMPLAINT:
            conn.execute(sa.update(_s).where(lower, _s.c.status != SubscriberStatus.COMPLAINED)
                         .values(status=SubscriberStatus.COMPLAINED, paused_until=None, updated_at=now))
            suppressed = _suppress(conn, entry, "complaint", now)
            return Recorded(True, suppressed, SubscriberStatus.COMPLAINED, run_id)
        reason = "hard bounce"
        if entry.kind is FeedbackKind.SOFT_BOUNCE:
            count = conn.execute(sa.select(sa.func.count()).where(
                _f.c.address == entry.address.lower(), _f.c.kind == FeedbackKind.SOFT_BOUNCE,
                _f.c.at >= entry.at - soft_window, _f.c.at <= entry.at)).scalar_one()
            if count < soft_limit:
                return Recorded(True, run_id=run_id)
            reason = f"{count} soft bounces within {_days(soft_window)}"
        conn.execute(sa.update(_s).where(lower, _s.c.status.in_((SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING,
                                                                  SubscriberStatus.UNSUBSCRIBED)))
                     .values(status=SubscriberStatus.BOUNCED, updated_at=now))
        return Recorded(True, _suppress(conn, entry, reason, now), SubscriberStatus.BOUNCED, run_id)
    return _tx(bind, go)


def _suppress(conn: sa.Connection, entry: Entry, reason: str, at: datetime) -> bool:
    source = " ".join(p for p in (entry.source, entry.code, entry.text) if p)[:200]
    return suppress(conn, entry.address, reason, source=source, at=at)


def _days(window: timedelta) -> str:
    days = window.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{window.total_seconds() / 3600:g} hours"


# --- reading ----------------------------------------------------------------------------------

def feedback_of(bind: Bind, address: str, limit: int = 50) -> Sequence[AnyRow]:
    """What was recorded about `address`, newest first."""
    stmt = sa.select(_f).where(_f.c.address == address.lower()).order_by(_f.c.at.desc(), _f.c.id.desc()).limit(limit)
    return _tx(bind, lambda conn: conn.execute(stmt).all())


@dataclass(frozen=True)
class Rates:
    """Bounces and complaints against what was sent (deliveries accepted by the provider, plus
    those refused at once as hard bounces)."""

    sent: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0

    @property
    def hard_bounce_rate(self) -> float:
        return self.hard_bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    def __str__(self) -> str:
        return (f"hard bounces {self.hard_bounces} ({self.hard_bounce_rate:.2%}), complaints {self.complaints} "
                f"({self.complaint_rate:.2%}) of {self.sent} sent")


def _counts(conn: sa.Connection, where: sa.ColumnElement[bool], group: sa.ColumnElement[object]
            ) -> dict[object, dict[str, int]]:
    """Distinct deliveries per kind (a delivery reported twice, say by a DSN and a webhook,
    counts once); "smtp": hard bounces refused during the SMTP transaction (they are
    `failed`, not `sent`, so they are added to what was sent)."""
    out: dict[object, dict[str, int]] = {}
    distinct = sa.func.count(sa.distinct(_f.c.delivery_id))
    known = sa.and_(where, _f.c.delivery_id.is_not(None))
    for key, kind, n in conn.execute(sa.select(group, _f.c.kind, distinct).where(known).group_by(group, _f.c.kind)):
        out.setdefault(key, {})[kind] = n
    for key, n in conn.execute(sa.select(group, distinct).where(known, _f.c.source == "smtp").group_by(group)):
        out.setdefault(key, {})["smtp"] = n
    return out


def run_rates(bind: Bind, run_ids: Iterable[int], sent: Mapping[int, int] | None = None) -> dict[int, Rates]:
    """Per run; `sent`: what each run has sent when the caller counted it already (the
    snapshot has), else it is counted here."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}

    def go(conn: sa.Connection) -> dict[int, Rates]:
        counted: Mapping[int, int] = sent if sent is not None else dict(conn.execute(
            sa.select(_d.c.run_id, sa.func.count()).where(_d.c.run_id.in_(ids), _d.c.state == DeliveryState.SENT)
            .group_by(_d.c.run_id)).all())
        counts = _counts(conn, _f.c.run_id.in_(ids), _f.c.run_id)
        return {i: _rates(counted.get(i, 0), counts.get(i, {})) for i in ids}
    return _tx(bind, go)


def account_rates(bind: Bind, since: datetime) -> dict[str, Rates]:
    """Per sending account, over the runs created since `since`.

    What was sent is read per run, never per delivery of the whole ledger (a status page must
    answer in well under a second on tens of millions of rows): each run's progress as the
    status list reads it (store/overview.py), so a finished run is counted once, through the
    (run_id, state) index, and its counts kept in `runs.counts` for every later look. A run's
    deliveries share one account (its step's), read from one of them."""
    def recent(conn: sa.Connection) -> list[AnyRow]:
        account = (sa.select(_d.c.account).where(_d.c.run_id == _r.c.id).limit(1)
                   .correlate(_r).scalar_subquery())
        return list(conn.execute(sa.select(_r.c.id, _r.c.status, _r.c.counts, account.label("account"))
                                 .where(_r.c.created_at >= since)).all())

    runs_sent = [run for run in _tx(bind, recent) if run.account is not None]
    counted = progress(bind, runs_sent)
    sent: dict[object, int] = {}
    for run in runs_sent:
        sent[run.account] = sent.get(run.account, 0) + counted[run.id][DeliveryState.SENT]
    counts = _tx(bind, lambda conn: _counts(conn, sa.and_(_f.c.at >= since, _f.c.account.is_not(None)),
                                            _f.c.account))
    return {str(a): _rates(sent.get(a, 0), counts.get(a, {})) for a in sorted({*sent, *counts}, key=str)}


def _rates(sent: int, counts: dict[str, int]) -> Rates:
    return Rates(sent=sent + counts.get("smtp", 0), hard_bounces=counts.get(FeedbackKind.HARD_BOUNCE, 0),
                 soft_bounces=counts.get(FeedbackKind.SOFT_BOUNCE, 0),
                 complaints=counts.get(FeedbackKind.COMPLAINT, 0))
