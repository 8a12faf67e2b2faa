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

from ..authoring.advocacy import StepAudience
from ..authoring.audience import AttrValue, Audience, Filter, TagFilter, as_list
from ..authoring.events import KM_PER_DEGREE, PlacedEvent, PlacedEvents
from ..errors import ConfigurationError
from ..models import SubscriberStatus
from .actions import acted_condition
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


def _distance2(stop: PlacedEvent) -> sa.ColumnElement[float]:
    """The squared distance in km² from the subscriber to `stop`, as PlacedEvent.distance2
    computes it (+ - * only: SQLite has no trigonometry)."""
    dy = (_s.c.latitude - stop.latitude) * KM_PER_DEGREE
    dx = (_s.c.longitude - stop.longitude) * stop.lon_scale
    return dy * dy + dx * dx


def near_condition(events: PlacedEvents, stop: PlacedEvent | None = None) -> sa.ColumnElement[bool]:
    """Subscribers within the radius of a stop (any stop, or those whose nearest stop is
    `stop`: nearer to it than to every stop listed before it, and no farther than from every
    one after it, as PlacedEvents.nearest decides)."""
    placed = sa.and_(_s.c.latitude.is_not(None), _s.c.longitude.is_not(None))
    r2 = events.radius_km ** 2
    if stop is None:
        return sa.and_(placed, sa.or_(*(_distance2(e) <= r2 for e in events.stops)))
    d = _distance2(stop)
    closer = [d < _distance2(e) if e.index < stop.index else d <= _distance2(e)
              for e in events.stops if e.index != stop.index]
    return sa.and_(placed, d <= r2, *closer)


def step_condition(step_audience: StepAudience | None, campaign: str, events: PlacedEvents | None,
                   stop: PlacedEvent | None = None) -> sa.ColumnElement[bool]:
    """What a step's own `audience:` adds to the campaign's (and, for a step sent before each
    event, the people of that stop)."""
    conds: list[sa.ColumnElement[bool]] = []
    if step_audience is not None:
        if step_audience.acted is not None:
            conds.append(acted_condition(_s.c.id, step_audience.acted.campaign or campaign,
                                         step_audience.acted.action))
        if step_audience.not_acted is not None:
            conds.append(~acted_condition(_s.c.id, step_audience.not_acted.campaign or campaign,
                                          step_audience.not_acted.action))
        if step_audience.near_event is not None and events is not None and stop is None:
            near = near_condition(events)
            conds.append(near if step_audience.near_event else ~near)
    if stop is not None and events is not None:
        conds.append(near_condition(events, stop))
    return sa.and_(sa.true(), *conds)


def audience_select(audience: Audience | None, segments: dict[str, Filter],
                    extra: sa.ColumnElement[bool] | None = None) -> AnySelect:
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
    if extra is not None:
        conds.append(extra)
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
