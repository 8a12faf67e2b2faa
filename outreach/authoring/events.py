"""A campaign's events placed on the map and in time: each stop's coordinates (given, or its
city placed with the offline GeoNames data), its zone (given, or the placed city's) and its
start as an instant; and which stop is a subscriber's (the nearest within the radius).

The same rule decides who is in a step's audience (store/audience.py compiles it to SQL) and
which stop a template shows (content/advocacy.py), so the two cannot disagree: distance is
measured the same way in both (an equirectangular approximation about the stop, within 0.5%
of the great circle for any radius a tour uses, and written with + - * only so SQLite and
PostgreSQL compute it alike), and ties go to the stop listed first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ..errors import Problem
from ..models import Subscriber
from ..places import EARTH_RADIUS_KM, Unplaced, locate
from ..subscribers.fields import normalize_country
from . import yamlfile
from .advocacy import Event, Events

KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180


@dataclass(frozen=True)
class PlacedEvent:
    event: Event
    index: int
    latitude: float
    longitude: float
    zone: ZoneInfo
    start: datetime          # aware UTC

    @property
    def lon_scale(self) -> float:
        """Kilometres per degree of longitude at the stop's latitude."""
        return KM_PER_DEGREE * math.cos(math.radians(self.latitude))

    def distance2(self, latitude: float, longitude: float) -> float:
        """Squared distance in km² (the approximation the SQL uses)."""
        dy = (latitude - self.latitude) * KM_PER_DEGREE
        dx = (longitude - self.longitude) * self.lon_scale
        return dy * dy + dx * dx


@dataclass(frozen=True)
class PlacedEvents:
    radius_km: float
    stops: tuple[PlacedEvent, ...]

    def nearest(self, who: Subscriber) -> tuple[PlacedEvent, float] | None:
        """The subscriber's stop and its distance in km: the nearest within the radius (the
        first listed of those that tie), or None (no coordinates, or beyond every stop)."""
        if who.latitude is None or who.longitude is None:
            return None
        lat, lon = who.latitude, who.longitude
        best = min(self.stops, key=lambda s: (s.distance2(lat, lon), s.index))
        d2 = best.distance2(lat, lon)
        return (best, math.sqrt(d2)) if d2 <= self.radius_km ** 2 else None

    def by_start(self, start: datetime) -> PlacedEvent | None:
        return next((s for s in self.stops if s.start == start), None)


def outside_step(campaign: object, step: object, who: Subscriber) -> str | None:
    """Why `who` is not in the step's audience by distance (for preview and validate, which
    render sample subscribers without asking the database), or None."""
    events: PlacedEvents | None = getattr(campaign, "placed_events", None)
    audience = getattr(step, "audience", None)
    near = audience.near_event if audience is not None else None
    if getattr(step.schedule, "before_event", None) is not None:  # type: ignore[attr-defined]
        near = True
    if events is None or near is None:
        return None
    found = events.nearest(who)
    if near and found is None:
        return f"not within {events.radius_km:g} km of any stop (or not placed)"
    if near is False and found is not None:
        return f"within {events.radius_km:g} km of the {found[0].event.id} stop"
    return None


def place_events(events: Events, doc: yamlfile.Located, problems: list[Problem]) -> PlacedEvents | None:
    placed: list[PlacedEvent] = []
    before = len(problems)
    for i, ev in enumerate(events.stops):
        loc = ("events", "stops", i)
        try:
            country = normalize_country(ev.country)
        except Exception:
            problems.append(doc.problem((*loc, "country"), f"unknown country code {ev.country!r}",
                                        "use ISO 3166 alpha-2 codes such as US"))
            continue
        lat_lon = ev.coordinates
        zone_name = ev.timezone
        if lat_lon is None or zone_name is None:
            try:
                place = locate(ev.city, country, ev.region)
            except Unplaced as exc:
                problems.append(doc.problem((*loc, "city"), f"cannot place event {ev.id!r}: {exc}",
                                            "add `coordinates: [latitude, longitude]` and `timezone:`"))
                continue
            lat_lon = lat_lon or (place.latitude, place.longitude)
            zone_name = zone_name or place.timezone
        if zone_name is None:
            problems.append(doc.problem((*loc, "timezone"), f"event {ev.id!r} has no time zone",
                                        "add `timezone:` (an IANA name such as America/Chicago)"))
            continue
        zone = ZoneInfo(zone_name)
        # the one rule for wall times in DST gaps and folds, as schedules use it (imported here:
        # delivery.scheduling imports the campaigns that import this module)
        from ..delivery.scheduling import resolve_wall_time

        start = resolve_wall_time(ev.start, zone).astimezone(UTC)
        placed.append(PlacedEvent(ev, i, lat_lon[0], lat_lon[1], zone, start))
    if len(problems) > before:
        return None
    return PlacedEvents(events.radius, tuple(placed))
