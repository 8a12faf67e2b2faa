"""Audiences in SQL: a campaign's segment and filter (authoring/audience.py) compiled to one
SELECT over subscribers.

Whatever a filter or segment says, only subscribers whose status receives mail, whose
address is not suppressed and who have not paused their email are ever selected: those
conditions are added by `audience_select` itself, not by the filters, so no campaign can
forget them.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ..authoring.audience import AttrValue, Audience, Filter, TagFilter, as_list
from ..errors import ConfigurationError
from ..models import SubscriberStatus
from .db import AnyRow, AnySelect, Bind
from .schema import subscriber_tags, subscribers, utcnow
from .suppressions import not_suppressed

_s, _t = subscribers, subscriber_tags

def _tag_exists(tags: list[str]) -> sa.ColumnElement[bool]:
    return sa.exists().where(_t.c.subscriber_id == _s.c.id, _t.c.tag.in_(tags))


def _attr_condition(key: str, value: AttrValue) -> sa.ColumnElement[bool]:
    # Custom attributes come from CSV, so they are stored as text: compare as text, and let a
    # YAML boolean match the usual ways a spreadsheet writes one.
    stored: sa.ColumnElement[str] = _s.c.attrs[key].as_string()
    if isinstance(value, bool):
        words = ("true", "yes", "y", "1") if value else ("false", "no", "n", "0")
        return sa.func.lower(stored).in_(words)
    if isinstance(value, list):
        return stored.in_([str(v) for v in value])
    return stored == str(value)


def filter_condition(flt: Filter) -> sa.ColumnElement[bool]:
    """The WHERE condition of one filter (True for an empty filter)."""
    conds: list[sa.ColumnElement[bool]] = []
    for column, value in (("country", flt.country), ("city", flt.city), ("language", flt.language),
                          ("timezone", flt.timezone)):
        values = as_list(value)
        if values is not None:
            conds.append(_s.c[column].in_(values))
    if flt.tags is not None:
        tags = flt.tags if isinstance(flt.tags, TagFilter) else TagFilter(any=flt.tags)
        if tags.any:
            conds.append(_tag_exists(tags.any))
        conds.extend(_tag_exists([tag]) for tag in tags.all)
        if tags.none:
            conds.append(~_tag_exists(tags.none))
    for key, wanted in (flt.attrs or {}).items():
        conds.append(_attr_condition(key, wanted))
    return sa.and_(sa.true(), *conds)


def audience_select(audience: Audience | None, segments: dict[str, Filter]) -> AnySelect:
    """SELECT id, email, name, city, country, timezone, language, attrs of the audience, by id.
    Confirmed, not suppressed and not paused (preferences page) now, always; then the segment
    and the filter, ANDed."""
    conds: list[sa.ColumnElement[bool]] = [_s.c.status == SubscriberStatus.CONFIRMED,
                                          not_suppressed(_s.c.email),
                                          sa.or_(_s.c.paused_until.is_(None), _s.c.paused_until <= utcnow())]
    if audience is not None and audience.segment is not None:
        try:
            conds.append(filter_condition(segments[audience.segment]))
        except KeyError:
            raise ConfigurationError(
                f"unknown segment {audience.segment!r}; define it in config/segments.yaml "
                f"(defined: {', '.join(sorted(segments)) or 'none'})") from None
    if audience is not None and audience.filter is not None:
        conds.append(filter_condition(audience.filter))
    return (sa.select(_s.c.id, _s.c.email, _s.c.name, _s.c.city, _s.c.country, _s.c.timezone,
                      _s.c.language, _s.c.attrs)
            .where(*conds).order_by(_s.c.id))


def audience_count(bind: Bind, select: AnySelect) -> int:
    stmt = sa.select(sa.func.count()).select_from(select.order_by(None).subquery())
    if isinstance(bind, sa.Connection):
        return bind.execute(stmt).scalar_one()
    with bind.connect() as conn:
        return conn.execute(stmt).scalar_one()


def audience_sample(bind: Bind, select: AnySelect, limit: int = 10) -> Sequence[AnyRow]:
    if isinstance(bind, sa.Connection):
        return bind.execute(select.limit(limit)).all()
    with bind.connect() as conn:
        return conn.execute(select.limit(limit)).all()
