"""Placing cities with the offline GeoNames data: what a person writes, placed or refused
with a reason, never guessed."""
from __future__ import annotations

import pytest

from outreach.places import Unplaced, distance_km, fold, locate


def test_a_city_gets_its_state_coordinates_and_zone():
    dallas = locate("Dallas", "US")
    assert (dallas.region, dallas.timezone) == ("TX", "America/Chicago")
    assert dallas.latitude == pytest.approx(32.78, abs=0.05) and dallas.longitude == pytest.approx(-96.81, abs=0.05)


def test_canadian_provinces_are_written_as_people_write_them():
    assert locate("Toronto", "CA").region == "ON"


def test_spelling_accents_case_and_other_names():
    assert locate("sao paulo", "BR").name == "São Paulo"
    assert locate("New York", "US").region == "NY"      # GeoNames calls it New York City
    assert fold("St. Louis") == fold("st louis") == "st louis"


def test_a_shared_name_with_one_far_bigger_city_is_that_city():
    assert locate("Washington", "US").region == "DC"


def test_an_ambiguous_name_is_refused_with_the_candidates_and_the_fix():
    with pytest.raises(Unplaced) as exc:
        locate("Portland", "US")
    assert "ambiguous" in str(exc.value) and "OR" in str(exc.value) and "ME" in str(exc.value)
    assert "region" in str(exc.value)
    # the region picks one
    assert locate("Portland", "US", "ME").region == "ME"


def test_an_unknown_city_or_a_wrong_region_is_refused():
    with pytest.raises(Unplaced, match="unknown city"):
        locate("Atlantis", "US")
    with pytest.raises(Unplaced, match="no city 'Dallas' in NY"):
        locate("Dallas", "US", "NY")


def test_distances_are_great_circle_kilometres():
    # Dallas–Chicago is about 1,290 km, Dallas–Washington about 1,900 km
    d, c, w = locate("Dallas", "US"), locate("Chicago", "US"), locate("Washington", "US")
    assert distance_km(d.latitude, d.longitude, c.latitude, c.longitude) == pytest.approx(1290, rel=0.03)
    assert distance_km(d.latitude, d.longitude, w.latitude, w.longitude) == pytest.approx(1900, rel=0.03)
    assert distance_km(10, 20, 10, 20) == 0
