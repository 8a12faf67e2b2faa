"""What an advocacy campaign writes besides its steps: the letter supporters send, the actions
they can record, the events they are invited to, quiet hours, and the audiences of steps that
depend on those (only who has not acted yet; only who lives near a stop of the tour).

Shapes only; content/advocacy.py makes each supporter's letter, target and event from them.
"""
from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..formats import zone_name
from ..settings import Strict

ACTION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_DISTANCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km|mi)\s*$")
_KM_PER = {"km": 1.0, "mi": 1.609344}
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_distance(value: Any) -> float:
    """'150 km' or '100 mi' → kilometres."""
    m = _DISTANCE.match(str(value)) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a distance; write e.g. 150 km or 100 mi")
    return float(m.group(1)) * _KM_PER[m.group(2)]


class Letter(Strict):
    """The letter each supporter sends, personalized: a paragraph written as a list is a set of
    alternatives, one chosen per supporter (the same one every time), because offices discard
    identical copies."""

    subject: str | list[str]
    salutation: str | None = None      # default: the target's (the target file's `salutation`)
    paragraphs: list[str | list[str]] = Field(min_length=1)
    closing: str = "Sincerely,"
    # Shown where the supporter may add a sentence of their own (the page and the email).
    personal_prompt: str = "Add a sentence of your own: why this matters to you."

    @field_validator("paragraphs")
    @classmethod
    def _no_empty_alternatives(cls, v: list[str | list[str]]) -> list[str | list[str]]:
        for i, p in enumerate(v):
            if isinstance(p, list) and not p:
                raise ValueError(f"paragraph {i + 1} is an empty list; give at least one version")
        return v


class Event(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    venue: str
    city: str
    country: str
    region: str | None = None
    address: str | None = None
    coordinates: tuple[float, float] | None = None   # else the city is placed
    start: datetime                                  # wall time at the venue
    timezone: str | None = None                      # the venue's; else the placed city's
    rsvp_url: str | None = None
    livestream_url: str | None = None
    parking: str | None = None

    @field_validator("start", mode="before")
    @classmethod
    def _wall(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v.strip())
            except ValueError:
                raise ValueError(f"{v!r} is not a date and time; write YYYY-MM-DD HH:MM (the venue's time)") from None
        if isinstance(v, datetime) and v.tzinfo is not None:
            raise ValueError("write the venue's wall time without an offset, and its zone in `timezone:`")
        return v

    _tz = field_validator("timezone")(zone_name)

    @field_validator("coordinates")
    @classmethod
    def _on_earth(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-90 <= v[0] <= 90 and -180 <= v[1] <= 180):
            raise ValueError("coordinates are [latitude, longitude] in degrees")
        return v


class Events(Strict):
    """Stops of a tour: each subscriber is invited to the nearest one within `radius`."""

    radius: float
    stops: list[Event] = Field(min_length=1)

    _radius = field_validator("radius", mode="before")(lambda v: parse_distance(v))

    @model_validator(mode="after")
    def _unique(self) -> Events:
        ids = [e.id for e in self.stops]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"event id {dup[0]!r} is used twice; give each stop its own id")
        return self


class ActionRef(Strict):
    action: str = Field(pattern=ACTION_PATTERN)
    campaign: str | None = None   # default: this campaign


class StepAudience(Strict):
    """Narrows the campaign's audience for one step (ANDed with it)."""

    acted: ActionRef | None = None       # only those who recorded this action
    not_acted: ActionRef | None = None   # only those who have not (yet)
    near_event: bool | None = None       # true: within the radius of a stop; false: beyond every stop


class QuietHours(Strict):
    start: time
    end: time

    @staticmethod
    def parse(value: Any) -> Any:
        """'21:00-08:00' → the mapping pydantic builds QuietHours from."""
        if isinstance(value, str):
            m = _CLOCK.match(value)
            if not m or int(m.group(1)) > 23 or int(m.group(3)) > 23 or int(m.group(2)) > 59 or int(m.group(4)) > 59:
                raise ValueError(f"{value!r} is not a span of hours; write e.g. \"21:00-08:00\"")
            start, end = time(int(m.group(1)), int(m.group(2))), time(int(m.group(3)), int(m.group(4)))
            if start == end:
                raise ValueError("quiet hours that start when they end would never let email through")
            return {"start": start, "end": end}
        return value

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end
