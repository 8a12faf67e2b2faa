"""Subscribers in SQL: upsert by address, lookups, status changes, and the batch load a
sender does right before sending. Values arrive checked (`outreach.subscribers.fields`);
CSV files are read and written in `outreach.subscribers.csvfile`.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import DataError
from ..models import Subscriber, SubscriberStatus
from ..subscribers.fields import make_subscriber, normalize_email
from .db import AnyRow, Bind, dialect_insert
from .schema import subscriber_tags, subscribers, suppressions, utcnow

T = TypeVar("T")
BATCH_SIZE = 1000
# Columns an update leaves as stored when the new value is None ("not given").
_KEPT = ("name", "city", "region", "country", "timezone", "language", "consent_source", "consent_at", "latitude",
         "longitude")
_s, _t, _x = subscribers, subscriber_tags, suppressions
# Statuses an import never changes.
_STAYS = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


def _read(bind: Bind, fn: Callable[[sa.Connection], T]) -> T:
    if isinstance(bind, sa.Connection):
        return fn(bind)
    with bind.connect() as conn:
        return fn(conn)


@dataclass
class ImportResult:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        return f"{self.inserted} new, {self.updated} updated, {self.skipped} skipped"


def upsert(bind: Bind, records: Iterable[Subscriber],
           default_status: SubscriberStatus = SubscriberStatus.CONFIRMED) -> ImportResult:
    """Insert or update `records` (one transaction per batch of BATCH_SIZE). A field that is
    None keeps the stored value; new rows without a status get `default_status`."""
    result = ImportResult()
    batch: dict[str, Subscriber] = {}
    for rec in records:
        key = rec.email.lower()
        if key in batch:  # a later row for the same address wins, as if applied in order
            result.updated += 1
            rec = rec.replace(email=batch[key].email)  # ... so the first spelling stays
        batch[key] = rec
        if len(batch) >= BATCH_SIZE:
            _write(bind, batch, default_status, result)
            batch = {}
    if batch:
        _write(bind, batch, default_status, result)
    return result


def _write(bind: Bind, batch: dict[str, Subscriber], default_status: SubscriberStatus, result: ImportResult) -> None:
    if isinstance(bind, sa.Connection):
        _write_batch(bind, batch, default_status, result)
    else:
        with bind.begin() as conn:
            _write_batch(conn, batch, default_status, result)


def _write_batch(conn: sa.Connection, batch: dict[str, Subscriber], default_status: SubscriberStatus,
                 result: ImportResult) -> None:
    s = subscribers
    lower = sa.func.lower(s.c.email)
    pg = conn.dialect.name == "postgresql"
    if not pg:  # SQLite cannot say whether an upsert inserted; ask first (IN uses the index)
        existing = conn.execute(sa.select(sa.func.count()).where(lower.in_(list(batch)))).scalar_one()
    now = utcnow()
    ins = dialect_insert(conn, s)
    ex = ins.excluded
    attrs = s.c.attrs.op("||")(ex.attrs) if pg else sa.func.json_patch(s.c.attrs, ex.attrs)
    keep = {c: sa.func.coalesce(ex[c], s.c[c]) for c in _KEPT}
    # xmax = 0 only on a row version this statement inserted: PostgreSQL's way to tell insert
    # from update in one round trip (a pre-SELECT of 1,000 addresses chose a seq scan).
    inserted = sa.literal_column("(xmax = 0)") if pg else sa.null()
    ids: dict[str, int] = {}
    # Two statements: rows whose file gave a status, and rows that keep the stored one. A given
    # status never upgrades: an unsubscribed, bounced or complained subscriber stays so (only
    # the person, or the provider, changes that), and a pending one is not confirmed by a file
    # (only the person confirms). Moving someone out of `confirmed` is allowed.
    for given in (True, False):
        group = [rec for rec in batch.values() if (rec.status is not None) == given]
        if not group:
            continue
        status = (sa.case((sa.or_(*(s.c.status == kept for kept in _STAYS)), s.c.status),
                          ((s.c.status == SubscriberStatus.PENDING) & (ex.status == SubscriberStatus.CONFIRMED),
                           s.c.status),
                          else_=ex.status) if given
                  else s.c.status)
        stmt = ins.on_conflict_do_update(
            index_elements=[lower],
            set_={**keep, "status": status, "attrs": attrs, "updated_at": ex.updated_at},
        ).returning(s.c.id, s.c.email, inserted)
        rows = [{**{c: getattr(rec, c) for c in _KEPT}, "email": rec.email,
                 "status": rec.status or default_status, "attrs": dict(rec.attrs),
                 "created_at": now, "updated_at": now}
                for rec in group]
        for sid, email, new in conn.execute(stmt, rows).all():
            ids[email.lower()] = sid
            if pg:
                result.inserted += bool(new)
                result.updated += not new
    if not pg:
        result.updated += existing
        result.inserted += len(batch) - existing

    tagged = [(ids[key], rec.tags) for key, rec in batch.items() if rec.tags is not None]
    if tagged:
        conn.execute(sa.delete(subscriber_tags).where(
            subscriber_tags.c.subscriber_id.in_([sid for sid, _ in tagged])))
        tag_rows = [{"subscriber_id": sid, "tag": t} for sid, tags in tagged for t in tags]
        if tag_rows:
            conn.execute(sa.insert(subscriber_tags), tag_rows)


def add_subscriber(bind: Bind, email: str, *, status: str = SubscriberStatus.CONFIRMED,
                   tags: Iterable[str] | None = None, attrs: dict[str, str] | None = None,
                   **fields: str | None) -> int:
    """Insert or update one subscriber (validated like a CSV row); return its id."""
    values: dict[str, str | None] = {"email": email, "status": status, **fields}
    if tags is not None:
        values["tags"] = ";".join(tags)
    sub = make_subscriber(values, attrs)
    upsert(bind, [sub], default_status=SubscriberStatus(status))
    found = get_subscriber(bind, sub.email)
    assert found is not None and found.id is not None
    return found.id


def _by_address(email: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(_s.c.email) == normalize_email(email).lower()


_STATUS = {str(s): s for s in SubscriberStatus}  # a dict lookup: SubscriberStatus(x) costs ~1 µs a row


def _subscriber(row: AnyRow, tags: Iterable[str], attributes: Iterable[str] = ()) -> Subscriber:
    # declared attributes the row lacks are present as None (see Composer.for_templates)
    attrs = {**dict.fromkeys(attributes), **(row.attrs or {})}
    return Subscriber(email=row.email, name=row.name, city=row.city, region=row.region, country=row.country,
                      timezone=row.timezone, language=row.language, tags=tuple(sorted(tags)),
                      attrs=MappingProxyType(attrs), status=_STATUS[row.status],
                      consent_source=row.consent_source, consent_at=row.consent_at, id=row.id,
                      link_id=row.link_id, latitude=getattr(row, "latitude", None),
                      longitude=getattr(row, "longitude", None))


def _tags_of(conn: sa.Connection, ids: list[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {}
    for sid, tag in conn.execute(sa.select(_t.c.subscriber_id, _t.c.tag).where(_t.c.subscriber_id.in_(ids))):
        tags.setdefault(sid, []).append(tag)
    return tags


def get_subscriber(bind: Bind, email: str) -> Subscriber | None:
    """The subscriber with this address (any spelling), or None. DataError when `email` is
    not an address at all."""
    def go(conn: sa.Connection) -> Subscriber | None:
        row = conn.execute(sa.select(_s).where(_by_address(email))).first()
        return None if row is None else _subscriber(row, _tags_of(conn, [row.id]).get(row.id, ()))
    return _read(bind, go)


def find_subscriber(bind: Bind, email: str) -> Subscriber | None:
    """Like get_subscriber, but None for something that is not an address (nobody has it)."""
    try:
        return get_subscriber(bind, email)
    except DataError:
        return None


def get_tags(bind: Bind, subscriber_id: int) -> list[str]:
    stmt = sa.select(_t.c.tag).where(_t.c.subscriber_id == subscriber_id).order_by(_t.c.tag)
    return _read(bind, lambda conn: list(conn.execute(stmt).scalars()))


def set_status(bind: Bind, email: str, status: str) -> bool:
    """Change one subscriber's status (e.g. `unsubscribed` from the unsubscribe link)."""
    stmt = (sa.update(_s).where(_by_address(email))
            .values(status=SubscriberStatus(status), updated_at=utcnow()))
    if isinstance(bind, sa.Connection):
        return bind.execute(stmt).rowcount > 0
    with bind.begin() as conn:
        return conn.execute(stmt).rowcount > 0


def iter_subscribers(engine: Engine, batch: int = BATCH_SIZE) -> Iterator[Subscriber]:
    """Every subscriber in id order, read a batch at a time (flat memory)."""
    with engine.connect() as conn, engine.connect() as tag_conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(
            sa.select(_s).order_by(_s.c.id))
        for part in result.partitions():
            tags = _tags_of(tag_conn, [r.id for r in part])
            for row in part:
                yield _subscriber(row, tags.get(row.id, ()))


def attribute_names(bind: Bind) -> list[str]:
    """Every custom attribute key in use, sorted."""
    if bind.dialect.name == "postgresql":
        q = "SELECT DISTINCT jsonb_object_keys(attrs) AS k FROM subscribers ORDER BY 1"
    else:
        q = "SELECT DISTINCT j.key AS k FROM subscribers, json_each(subscribers.attrs) AS j ORDER BY 1"
    return _read(bind, lambda conn: list(conn.execute(sa.text(q)).scalars()))


# --- right before sending ----------------------------------------------------------------------

@dataclass(frozen=True)
class Loaded:
    subscriber: Subscriber
    excluded: str | None  # why it must not be sent now, or None


CAMPAIGN_STATUSES = frozenset({SubscriberStatus.CONFIRMED})


def load_for_sending(bind: Bind, ids: Iterable[int], attributes: Iterable[str] = (),
                     statuses: Collection[SubscriberStatus] = CAMPAIGN_STATUSES) -> dict[int, Loaded]:
    """The subscribers `ids` in one query, each with why it may not be sent now: a subscriber
    planned yesterday who unsubscribed, bounced, paused or was suppressed since then is
    excluded. `attributes`: the custom attributes templates may read, present (None) on every
    one. `statuses`: whom the step may reach (the step's `reaches`: campaigns only confirmed
    subscribers, the sign-up confirmation only pending ones)."""
    attributes = tuple(attributes)
    id_list = sorted(set(ids))
    if not id_list:
        return {}
    suppressed = sa.exists().where(_x.c.address == sa.func.lower(_s.c.email)).label("suppressed")
    # only what a message needs, read by position: this runs for every recipient of every
    # batch, and attribute access on rows and the timestamps' conversion were a third of it
    rows_stmt = sa.select(_s.c.id, _s.c.email, _s.c.name, _s.c.city, _s.c.region, _s.c.country, _s.c.timezone,
                          _s.c.language, _s.c.attrs, _s.c.status, suppressed, _s.c.link_id,
                          _s.c.paused_until, _s.c.latitude, _s.c.longitude).where(_s.c.id.in_(id_list))
    defaults = dict.fromkeys(attributes)
    now = utcnow()

    def go(conn: sa.Connection) -> dict[int, Loaded]:
        tags = _tags_of(conn, id_list)
        out = {}
        for (sid, email, name, city, region, country, zone, language, attrs, status, blocked, link_id,
             paused, latitude, longitude) in conn.execute(rows_stmt):
            state = _STATUS[status]
            sub = Subscriber(email=email, name=name, city=city, region=region, country=country, timezone=zone,
                             language=language, tags=tuple(sorted(tags.get(sid, ()))),
                             attrs=MappingProxyType({**defaults, **(attrs or {})}), status=state, id=sid,
                             link_id=link_id, latitude=latitude, longitude=longitude)
            excluded = ("suppressed" if blocked else
                        f"subscriber is {status}" if state not in statuses else
                        f"paused until {paused:%Y-%m-%d}" if paused is not None and paused > now else None)
            out[sid] = Loaded(sub, excluded)
        return out
    return _read(bind, go)
