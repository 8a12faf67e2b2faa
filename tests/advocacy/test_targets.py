"""Targets as data: the jurisdictions the organization writes in words, and each supporter's
office by region, country, nearest, fallback."""
from __future__ import annotations

from pathlib import Path

import pytest

from outreach.authoring.targets import load_targets, parse_serves
from outreach.models import Subscriber
from outreach.places import distance_km, locate

ROOT = Path(__file__).resolve().parents[2]
MISSIONS = ROOT / "config" / "targets" / "chinese-missions.yaml"


@pytest.fixture(scope="module")
def missions():
    problems: list = []
    found = load_targets(MISSIONS, problems)
    assert problems == [] and found is not None
    return found


def supporter(city: str, country: str, **extra) -> Subscriber:
    place = locate(city, country, extra.pop("region", None))
    return Subscriber(email="s@example.org", city=city, country=country, region=place.region,
                      latitude=place.latitude, longitude=place.longitude, **extra)


def test_the_words_of_the_config_are_read():
    chicago = parse_serves("US", "the United States", "IL, WI, MI, MN, IN, IA, MO, KS and CO")
    assert chicago.regions == {"IL", "WI", "MI", "MN", "IN", "IA", "MO", "KS", "CO"}
    dc = parse_serves("US", "the United States", "DC, the Mid-Atlantic, the South and Texas")
    assert "TX" in dc.regions and "DC" in dc.regions and {"VA", "GA", "MD"} <= dc.grouped
    sf = parse_serves("US", "the United States", "Northern CA, OR, WA, NV and AK")
    assert sf.partial == {"CA"} and "WA" in sf.regions
    assert parse_serves("CA", "Canada", "Canada").whole_country
    assert parse_serves("GB", "the United Kingdom", "the United Kingdom").whole_country


def test_words_that_cannot_be_read_are_named():
    with pytest.raises(ValueError, match="'Gondor'.*named region"):
        parse_serves("US", "the United States", "TX and Gondor")


def test_dallas_resolves_to_washington_not_the_nearer_chicago(missions):
    dallas = supporter("Dallas", "US")
    office = missions.resolve(dallas)
    assert office.target.city == "Washington, DC" and office.matched == "region"
    # nearest by distance alone would have said Chicago
    chicago = next(t for t in missions.offices if t.city == "Chicago")
    assert distance_km(chicago.latitude, chicago.longitude, dallas.latitude, dallas.longitude) < \
        distance_km(office.target.latitude, office.target.longitude, dallas.latitude, dallas.longitude)


@pytest.mark.parametrize("city, country, office, matched", [
    ("Denver", "US", "Chicago", "region"),
    ("Seattle", "US", "San Francisco", "region"),
    ("Sacramento", "US", "San Francisco", "region"),   # Northern CA: told apart by distance
    ("San Diego", "US", "Los Angeles", "region"),      # Southern CA
    ("Boston", "US", "New York", "region"),            # New England
    ("Atlanta", "US", "Washington, DC", "region"),     # the South
    ("New York", "US", "New York", "region"),          # named beats the Mid-Atlantic
    ("Boise", "US", "San Francisco", "nearest"),       # Idaho is nobody's: the nearest US office
    ("Toronto", "CA", "Ottawa", "country"),
    ("Lyon", "FR", "Paris", "country"),
    ("Osaka", "JP", "Tokyo", "country"),
])
def test_each_supporter_gets_the_office_that_serves_them(missions, city, country, office, matched):
    found = missions.resolve(supporter(city, country))
    assert (found.target.city, found.matched) == (office, matched)


def test_a_country_with_no_office_falls_back_to_the_nearest_un_mission_with_advice(missions):
    found = missions.resolve(supporter("Nairobi", "KE"))
    assert found.matched == "fallback" and found.target.city == "Geneva, CH"
    assert "Search for the email address" in (found.advice or "")


def test_a_supporter_without_coordinates_still_gets_their_state_office(missions):
    found = missions.resolve(Subscriber(email="s@example.org", country="US", region="TX"))
    assert found.target.city == "Washington, DC"
    # and nobody is sent to an office of another country
    nowhere = missions.resolve(Subscriber(email="s@example.org"))
    assert nowhere.matched == "fallback"


def test_a_target_file_with_problems_names_each_with_its_line(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("countries:\n"
                    "  US:\n"
                    "    name: the United States\n"
                    "    contacts:\n"
                    "      - label: Office\n"
                    "        city: Portland\n"
                    "        serves: OR\n"
                    "      - label: Other\n"
                    "        city: Chicago\n"
                    "        serves: IL and Narnia\n"
                    "always:\n"
                    "  - label: UN\n"
                    "    city: Geneva\n", encoding="utf-8")
    problems: list = []
    assert load_targets(path, problems) is None
    text = "\n".join(str(p) for p in problems)
    assert "t.yaml:6:" in text and "ambiguous city 'Portland'" in text
    assert "t.yaml:10:" in text and "'Narnia'" in text
    assert "t.yaml:13:" in text and "without its country" in text
