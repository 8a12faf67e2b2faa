"""Who a campaign step goes to: filters and named segments, compiled to one SQL SELECT.

Whatever a filter or segment says, only `confirmed` subscribers whose address is not
suppressed are ever selected: those two conditions are added by `audience_select` itself,
not by the filters, so no campaign can forget them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import ValidationError, field_validator

from . import yamlfile
from ..errors import ConfigurationError, Problem, ValidationFailed
from ..settings import Strict
from ..store.schema import subscriber_tags, subscribers
from ..store.subscribers import normalize_country
from ..store.suppressions import not_suppressed

AttrValue = str | int | bool | list[str | int]
_s, _t = subscribers, subscriber_tags


def _as_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class TagFilter(Strict):
    """Subscribers with any of `any`, all of `all`, and none of `none`."""

    any: list[str] = []
    all: list[str] = []
    none: list[str] = []


class Filter(Strict):
    """Every key given must match (AND); a list of values means any of them (OR)."""

    country: str | list[str] | None = None   # ISO 3166 alpha-2
    city: str | list[str] | None = None
    language: str | list[str] | None = None
    timezone: str | list[str] | None = None
    tags: list[str] | TagFilter | None = None  # a list means any-of
    attrs: dict[str, AttrValue] | None = None

    @field_validator("country")
    @classmethod
    def _countries(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return None
        bad = []
        codes = []
        for code in _as_list(value) or []:
            try:
                codes.append(normalize_country(code))
            except Exception:
                bad.append(code)
        if bad:
            raise ValueError(f"unknown country code{'s' if len(bad) > 1 else ''} "
                             f"{', '.join(repr(b) for b in bad)}; use ISO 3166 alpha-2 codes such as US, GB, KR")
        return codes[0] if isinstance(value, str) else codes

    @field_validator("timezone")
    @classmethod
    def _zones(cls, value: str | list[str] | None) -> str | list[str] | None:
        for name in _as_list(value) or []:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None
        return value


class Audience(Strict):
    """A named segment and/or an inline filter; when both are given, both must match."""

    segment: str | None = None
    filter: Filter | None = None


# --- segments ------------------------------------------------------------------------------

def load_segments(path: Path | str, display: str | None = None) -> dict[str, Filter]:
    """Named segments from a YAML mapping of name → filter (`config/segments.yaml`). A missing
    file means no segments. Raises ValidationFailed naming file, line and key of every mistake."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        doc = yamlfile.load(path, display or str(path))
    except yamlfile.YamlSyntaxError as exc:
        raise ValidationFailed([exc.problem]) from None
    if doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        raise ValidationFailed([Problem(doc.file, 1, None, "expected a mapping of segment name to filter")])
    segments: dict[str, Filter] = {}
    problems: list[Problem] = []
    for name, body in doc.data.items():
        try:
            segments[str(name)] = Filter.model_validate(body if body is not None else {})
        except ValidationError as exc:
            problems.extend(yamlfile.problems_from(exc, doc, Filter, prefix=(name,)))
    if problems:
        raise ValidationFailed(problems)
    return segments


def segments_for(settings: Any) -> dict[str, Filter]:
    """The segments of a project: `segments.yaml` in the data directory (config/), plus any
    defined inline under `segments:` in config/outreach.yaml."""
    path = settings.path(settings.data_dir) / "segments.yaml"
    segments = load_segments(path, str(settings.data_dir / "segments.yaml"))
    problems: list[Problem] = []
    for name, body in (settings.segments or {}).items():
        if name in segments:
            problems.append(Problem("config/outreach.yaml", None, f"segments.{name}",
                                    f"segment {name!r} is also defined in {path.name}", "keep one of them"))
            continue
        try:
            segments[name] = Filter.model_validate(body or {})
        except ValidationError as exc:
            problems.extend(Problem("config/outreach.yaml", None, f"segments.{name}.{'.'.join(map(str, e['loc']))}",
                                    e["msg"]) for e in exc.errors(include_url=False))
    if problems:
        raise ValidationFailed(problems)
    return segments


# --- SQL -----------------------------------------------------------------------------------

def _tag_exists(tags: list[str]) -> sa.ColumnElement[bool]:
    return sa.exists().where(_t.c.subscriber_id == _s.c.id, _t.c.tag.in_(tags))


def _attr_condition(key: str, value: AttrValue) -> sa.ColumnElement[bool]:
    # Custom attributes come from CSV, so they are stored as text: compare as text, and let a
    # YAML boolean match the usual ways a spreadsheet writes one.
    stored = _s.c.attrs[key].as_string()
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
        values = _as_list(value)
        if values is not None:
            conds.append(_s.c[column].in_(values))
    if flt.tags is not None:
        tags = flt.tags if isinstance(flt.tags, TagFilter) else TagFilter(any=flt.tags)
        if tags.any:
            conds.append(_tag_exists(tags.any))
        conds.extend(_tag_exists([tag]) for tag in tags.all)
        if tags.none:
            conds.append(~_tag_exists(tags.none))
    for key, value in (flt.attrs or {}).items():
        conds.append(_attr_condition(key, value))
    return sa.and_(sa.true(), *conds)


def audience_select(audience: Audience | None, segments: dict[str, Filter]) -> sa.Select:
    """SELECT id, email, name, city, country, timezone, language, attrs of the audience, by id.
    Confirmed and not suppressed, always; then the segment and the filter, ANDed."""
    conds: list[sa.ColumnElement[bool]] = [_s.c.status == "confirmed", not_suppressed(_s.c.email)]
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


def audience_count(bind: sa.Engine | sa.Connection, select: sa.Select) -> int:
    stmt = sa.select(sa.func.count()).select_from(select.order_by(None).subquery())
    if isinstance(bind, sa.Connection):
        return bind.execute(stmt).scalar_one()
    with bind.connect() as conn:
        return conn.execute(stmt).scalar_one()


def audience_sample(bind: sa.Engine | sa.Connection, select: sa.Select, limit: int = 10) -> list[sa.Row]:
    if isinstance(bind, sa.Connection):
        return bind.execute(select.limit(limit)).all()
    with bind.connect() as conn:
        return conn.execute(select.limit(limit)).all()
