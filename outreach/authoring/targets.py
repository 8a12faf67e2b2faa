"""Advocacy targets (config/targets/*.yaml): the offices supporters write to, the places each
serves, and which one is a given supporter's.

A target file lists offices by country, each with the words that say what it serves, as the
organization writes them ("IL, WI, MI, MN, IN, IA, MO, KS and CO", "Northern CA, OR, WA, NV
and AK", "DC, the Mid-Atlantic, the South and Texas", "Canada"), its coordinates (or a city
to place) and its contact channels; `always` lists the offices everyone writes to too (the
UN missions), and `fallback` the advice for a supporter no office serves.

Which office is a supporter's, in this order:
  1. by region: an office that names the supporter's state (TX, or Texas) wins over one that
     names part of it (Northern CA), which wins over one that serves it through a named
     region (the South); offices that tie are told apart by distance;
  2. by country: an office serving the whole country (the nearest, if several);
  3. nearest by distance among the offices in the supporter's country;
  4. else the fallback: the nearest of the `always` offices, with the fallback advice.
Nearest by distance alone would be wrong for consular districts: Dallas is nearer Chicago
than Washington, but Texas is served from Washington.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pycountry
from pydantic import Field, ValidationError, field_validator

from ..errors import Problem
from ..models import Subscriber
from ..places import Unplaced, distance_km, locate
from ..settings import Strict
from ..subscribers.fields import normalize_country
from . import yamlfile

# Regions people name in words, by country. Where a state is both named by one office and in
# a region named by another (NY is in the Mid-Atlantic), the office naming it wins.
NAMED_REGIONS: dict[str, dict[str, frozenset[str]]] = {"US": {
    "new england": frozenset({"CT", "ME", "MA", "NH", "RI", "VT"}),
    "mid atlantic": frozenset({"NY", "NJ", "PA", "DE", "MD", "DC"}),
    "the south": frozenset({"DE", "MD", "DC", "VA", "WV", "NC", "SC", "GA", "FL", "KY", "TN", "MS", "AL", "OK",
                            "TX", "AR", "LA"}),
    "midwest": frozenset({"IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"}),
    "the west": frozenset({"AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"}),
    "pacific northwest": frozenset({"WA", "OR", "ID"}),
}}
_QUALIFIERS = ("northern", "southern", "eastern", "western", "central", "upstate", "downstate")
_SPLIT = re.compile(r",\s*|\s+and\s+|\s*;\s*")


class Contact(Strict):
    label: str
    city: str
    serves: str = ""
    email: str | None = None
    x: str | None = None           # handle without @
    phone: str | None = None
    web_form: str | None = None
    salutation: str | None = None  # overrides the file's
    region: str | None = None      # of the office's city, when the city name is ambiguous
    coordinates: tuple[float, float] | None = None  # latitude, longitude; placed from the city otherwise

    @field_validator("coordinates")
    @classmethod
    def _on_earth(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-90 <= v[0] <= 90 and -180 <= v[1] <= 180):
            raise ValueError("coordinates are [latitude, longitude] in degrees, e.g. [38.9, -77.04]")
        return v

    @field_validator("x")
    @classmethod
    def _handle(cls, v: str | None) -> str | None:
        return v.lstrip("@") if v else v


class CountryOffices(Strict):
    name: str
    contacts: list[Contact] = Field(min_length=1)


class Fallback(Strict):
    advice: str
    search_phrase: str | None = None


class TargetFile(Strict):
    salutation: str | None = None
    countries: dict[str, CountryOffices] = Field(default_factory=dict)
    always: list[Contact] = Field(default_factory=list)
    fallback: Fallback | None = None


@dataclass(frozen=True)
class Jurisdiction:
    whole_country: bool = False
    regions: frozenset[str] = frozenset()   # named one by one (TX, Texas)
    partial: frozenset[str] = frozenset()   # part of it (Northern CA)
    grouped: frozenset[str] = frozenset()   # through a named region (the South)

    def rank(self, region: str | None) -> int | None:
        """How directly this serves `region` (0 best), None when it does not."""
        if region is None:
            return None
        for rank, group in enumerate((self.regions, self.partial, self.grouped)):
            if region in group:
                return rank
        return None


@dataclass(frozen=True)
class Target:
    """One office as templates read it (`target`)."""

    key: str
    label: str
    city: str
    country: str
    country_name: str
    serves: str
    email: str | None
    x: str | None
    phone: str | None
    web_form: str | None
    salutation: str | None
    latitude: float
    longitude: float
    jurisdiction: Jurisdiction = field(default_factory=Jurisdiction, compare=False)

    @property
    def view(self) -> MappingProxyType[str, Any]:
        return MappingProxyType({k: getattr(self, k) for k in TARGET_FIELDS
                                 if k not in ("matched", "advice", "search_phrase")})


TARGET_FIELDS = ("key", "label", "city", "country", "country_name", "serves", "email", "x", "phone", "web_form",
                 "salutation", "latitude", "longitude", "matched", "advice", "search_phrase")


@dataclass(frozen=True)
class Resolution:
    target: Target
    matched: str            # region, country, nearest or fallback
    advice: str | None      # the fallback's advice when matched == fallback
    search_phrase: str | None = None

    @property
    def view(self) -> MappingProxyType[str, Any]:
        return MappingProxyType({**self.target.view, "matched": self.matched, "advice": self.advice,
                                 "search_phrase": self.search_phrase})


def _subdivision(country: str, word: str) -> str | None:
    """'TX' or 'Texas' → 'TX' for country US; None when it is neither."""
    subs: Any = pycountry.subdivisions.get(country_code=country) or []  # type: ignore[no-untyped-call]
    folded = word.casefold()
    for s in subs:
        code = str(s.code).split("-", 1)[1]
        if folded in (code.casefold(), str(s.name).casefold()):
            return code
    return None


def _country_words(country: str, given: str) -> set[str]:
    found = pycountry.countries.get(alpha_2=country)
    names = {given, getattr(found, "name", ""), getattr(found, "common_name", ""), getattr(found, "official_name", "")}
    return {_bare(n) for n in names if n}


def _bare(words: str) -> str:
    text = " ".join(words.replace("-", " ").split()).casefold()
    return text[4:] if text.startswith("the ") else text


def parse_serves(country: str, country_name: str, text: str) -> Jurisdiction:
    """The jurisdiction the words `text` describe; ValueError naming the words it cannot read."""
    whole = False
    regions: set[str] = set()
    partial: set[str] = set()
    grouped: set[str] = set()
    unread: list[str] = []
    named = NAMED_REGIONS.get(country, {})
    for raw in (p.strip() for p in _SPLIT.split(text.strip())):
        if not raw:
            continue
        bare = _bare(raw)
        if bare in _country_words(country, country_name):
            whole = True
            continue
        code = _subdivision(country, raw)
        if code:
            regions.add(code)
            continue
        first, _, rest = raw.partition(" ")
        if first.casefold() in _QUALIFIERS and (code := _subdivision(country, rest.strip())):
            partial.add(code)
            continue
        group = named.get(bare) or named.get("the " + bare) or named.get(bare.removeprefix("the "))
        if group:
            grouped.update(group)
            continue
        unread.append(raw)
    if unread:
        known = ", ".join(sorted(named)) if named else "none for this country"
        raise ValueError(f"cannot read {', '.join(repr(u) for u in unread)} in `serves`: write state or province "
                         f"codes or names (TX, Texas), a part of one (Northern CA), a named region ({known}), "
                         f"or the country's name")
    if not (whole or regions or partial or grouped):
        raise ValueError("`serves` is empty: say which states, regions or country the office serves")
    return Jurisdiction(whole, frozenset(regions), frozenset(partial), frozenset(grouped))


class TargetSet:
    """The offices of one target file, placed and parsed, ready to resolve subscribers."""

    def __init__(self, source: str, salutation: str | None, offices: list[Target], always: list[Target],
                 fallback: Fallback | None) -> None:
        self.source = source
        self.salutation = salutation
        self.offices = offices
        self.always = always
        self.fallback = fallback

    def _nearest(self, candidates: list[Target], who: Subscriber) -> Target:
        if who.latitude is None or who.longitude is None or len(candidates) == 1:
            return candidates[0]  # the file's order: its first office of those that tie
        lat, lon = who.latitude, who.longitude
        return min(candidates, key=lambda t: distance_km(t.latitude, t.longitude, lat, lon))

    def resolve(self, who: Subscriber) -> Resolution | None:
        """The office `who` writes to, and how it was found; None when the file has neither an
        office for them nor an `always` office to fall back on."""
        here = [t for t in self.offices if who.country and t.country == who.country]
        region = (who.region or "").upper() or None
        ranked = [(r, t) for t in here if (r := t.jurisdiction.rank(region)) is not None]
        if ranked:
            best = min(r for r, _ in ranked)
            return Resolution(self._nearest([t for r, t in ranked if r == best], who), "region", None)
        whole = [t for t in here if t.jurisdiction.whole_country]
        if whole:
            return Resolution(self._nearest(whole, who), "country", None)
        if here and (who.latitude is not None or len(here) == 1):
            return Resolution(self._nearest(here, who), "nearest", None)
        if self.always:
            fb = self.fallback
            return Resolution(self._nearest(self.always, who), "fallback", fb.advice if fb else None,
                              fb.search_phrase if fb else None)
        return None

    def view(self, who: Subscriber) -> MappingProxyType[str, Any] | None:
        found = self.resolve(who)
        return found.view if found is not None else None


def _place(contact: Contact, country: str, after_comma_is_region: bool) -> tuple[float, float]:
    if contact.coordinates is not None:
        return contact.coordinates
    city, _, rest = contact.city.partition(",")
    place = locate(city.strip(), country, contact.region or (rest.strip() if after_comma_is_region else None) or None)
    return place.latitude, place.longitude


def load_targets(path: Path, problems: list[Problem]) -> TargetSet | None:
    """A target file, every office placed and its `serves` read; each problem (an office that
    cannot be placed, words that cannot be read) is added to `problems` with its line."""
    display = os.path.relpath(path)
    try:
        doc = yamlfile.load(path, display)
    except yamlfile.YamlSyntaxError as exc:
        problems.append(exc.problem)
        return None
    try:
        spec = TargetFile.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        problems.extend(yamlfile.problems_from(exc, doc, TargetFile))
        return None
    offices: list[Target] = []
    always: list[Target] = []
    before = len(problems)
    for loc, country, country_name, contact in _contacts(spec, problems, doc):
        try:
            lat, lon = _place(contact, country, loc[0] == "countries")
        except Unplaced as exc:
            problems.append(doc.problem((*loc, "city"), f"cannot place this office: {exc}",
                                        "add `coordinates: [latitude, longitude]`"))
            continue
        jurisdiction = Jurisdiction()
        if loc[0] == "countries":
            try:
                jurisdiction = parse_serves(country, country_name, contact.serves)
            except ValueError as exc:
                problems.append(doc.problem((*loc, "serves"), str(exc)))
                continue
        target = Target(f"{country}/{contact.label}/{contact.city}", contact.label, contact.city, country,
                        country_name, contact.serves, contact.email, contact.x, contact.phone, contact.web_form,
                        contact.salutation or spec.salutation, lat, lon, jurisdiction)
        (offices if loc[0] == "countries" else always).append(target)
    if len(problems) > before:
        return None
    return TargetSet(display, spec.salutation, offices, always, spec.fallback)


def _contacts(spec: TargetFile, problems: list[Problem], doc: yamlfile.Located
              ) -> Iterator[tuple[yamlfile.Loc, str, str, Contact]]:
    for code, block in spec.countries.items():
        try:
            country = normalize_country(code)
        except Exception:
            problems.append(doc.problem(("countries", code), f"unknown country code {code!r}",
                                        "use ISO 3166 alpha-2 codes such as US, GB, KR"))
            continue
        for i, contact in enumerate(block.contacts):
            yield ("countries", code, "contacts", i), country, block.name, contact
    for i, contact in enumerate(spec.always):
        city, _, rest = contact.city.partition(",")
        # an `always` office says its country after the city ("Geneva, CH"), or is placed by coordinates
        country = rest.strip().upper() if len(rest.strip()) == 2 else ""
        if contact.coordinates is None and not country:
            problems.append(doc.problem(("always", i, "city"), "cannot place this office without its country",
                                        "write the city as \"Geneva, CH\" or add `coordinates: [lat, lon]`"))
            continue
        yield ("always", i), country, "", contact
