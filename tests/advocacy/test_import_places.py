"""The importer places subscribers from their city and country; a city it cannot place is
reported with its line and the row is still imported."""
from __future__ import annotations

import io

import pytest

from outreach.store import get_subscriber
from outreach.subscribers.csvfile import import_csv


@pytest.fixture
def imported(engine):
    def run(text: str) -> tuple[list[str], list[str]]:
        errors: list[str] = []
        notes: list[str] = []
        import_csv(engine, io.BytesIO(text.encode()), "people.csv", errors.append, note=notes.append)
        return errors, notes
    return run


def test_region_coordinates_and_zone_come_from_the_city(imported, engine):
    errors, notes = imported("email,city,country\n"
                             "a@example.org,Dallas,US\n"
                             "b@example.org,Toronto,CA\n")
    assert errors == notes == []
    a = get_subscriber(engine, "a@example.org")
    assert (a.region, a.timezone) == ("TX", "America/Chicago")
    assert a.latitude == pytest.approx(32.78, abs=0.05) and a.longitude == pytest.approx(-96.81, abs=0.05)
    assert get_subscriber(engine, "b@example.org").region == "ON"


def test_what_the_file_gives_is_kept_and_a_region_picks_the_city(imported, engine):
    imported("email,city,region,country,timezone,latitude,longitude\n"
             "c@example.org,Portland,ME,US,,,\n"
             "d@example.org,Dallas,,US,America/New_York,10.5,20.25\n")
    c = get_subscriber(engine, "c@example.org")
    assert c.region == "ME" and c.latitude == pytest.approx(43.66, abs=0.05)
    d = get_subscriber(engine, "d@example.org")
    assert (d.timezone, d.latitude, d.longitude, d.region) == ("America/New_York", 10.5, 20.25, "TX")


def test_ambiguous_and_unknown_cities_are_reported_with_their_line_and_imported(imported, engine):
    errors, notes = imported("email,city,country\n"
                             "e@example.org,Springfield,US\n"
                             "f@example.org,Atlantis,US\n")
    assert errors == []
    assert notes[0].startswith("people.csv:2: note: ambiguous city 'Springfield'")
    assert notes[1].startswith("people.csv:3: note: unknown city 'Atlantis'")
    assert get_subscriber(engine, "e@example.org").latitude is None
    assert get_subscriber(engine, "f@example.org") is not None


def test_bad_coordinates_cost_their_row(imported, engine):
    errors, _ = imported("email,latitude,longitude\n"
                         "g@example.org,91,0\n"
                         "h@example.org,45,\n"
                         "i@example.org,abc,1\n")
    assert [e.split(": ", 1)[0] for e in errors] == ["people.csv:2", "people.csv:3", "people.csv:4"]
    assert "between -90 and 90" in errors[0] and "both latitude and longitude" in errors[1]
    assert get_subscriber(engine, "g@example.org") is None
