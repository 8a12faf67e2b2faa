"""Who a campaign step goes to, as a campaign manager writes it: filters and named segments
(config/segments.yaml). store/audience.py compiles them to SQL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError, field_validator

from ..errors import Problem, ValidationFailed
from ..formats import zone as _zone
from ..settings import Strict
from ..subscribers.fields import normalize_country
from . import yamlfile

AttrValue = str | int | bool | list[str | int]


def as_list(value: str | list[str] | None) -> list[str] | None:
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
        for code in as_list(value) or []:
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
        for name in as_list(value) or []:
            _zone(name)
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
