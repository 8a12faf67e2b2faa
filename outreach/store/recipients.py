"""Subscribers as templates see them, read from the store in one query per batch.

Also the last check before a send: a subscriber planned yesterday who unsubscribed, bounced
or was suppressed since then is not eligible any more.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from .schema import subscriber_tags, subscribers, suppressions
from ..errors import DataError
from .subscribers import get_subscriber
from ..content.templating import Recipient

_s, _t, _x = subscribers, subscriber_tags, suppressions


@dataclass(frozen=True)
class Loaded:
    recipient: Recipient
    excluded: str | None  # why it must not be sent now, or None


def load_recipients(bind: sa.Engine | sa.Connection, ids: Iterable[int]) -> dict[int, Loaded]:
    id_list = sorted(set(ids))
    if not id_list:
        return {}
    suppressed = sa.exists().where(_x.c.address == sa.func.lower(_s.c.email)).label("suppressed")
    rows_stmt = sa.select(_s, suppressed).where(_s.c.id.in_(id_list))
    tags_stmt = sa.select(_t.c.subscriber_id, _t.c.tag).where(_t.c.subscriber_id.in_(id_list))

    def go(conn: sa.Connection) -> dict[int, Loaded]:
        tags: dict[int, list[str]] = {}
        for sid, tag in conn.execute(tags_stmt):
            tags.setdefault(sid, []).append(tag)
        out = {}
        for row in conn.execute(rows_stmt):
            excluded = ("suppressed" if row.suppressed else
                        None if row.status == "confirmed" else f"subscriber is {row.status}")
            out[row.id] = Loaded(_recipient(row, tags.get(row.id, ())), excluded)
        return out

    if isinstance(bind, sa.Connection):
        return go(bind)
    with bind.connect() as conn:
        return go(conn)


def recipient_by_email(bind: sa.Engine, email: str) -> Recipient | None:
    try:
        row = get_subscriber(bind, email)
    except DataError:  # not an address at all: nobody has it
        return None
    return None if row is None else load_recipients(bind, [row.id])[row.id].recipient


def _recipient(row: sa.Row, tags: Iterable[str]) -> Recipient:
    return Recipient(email=row.email, name=row.name, city=row.city, country=row.country,
                     timezone=row.timezone, language=row.language, tags=tuple(sorted(tags)),
                     attrs=dict(row.attrs or {}))
