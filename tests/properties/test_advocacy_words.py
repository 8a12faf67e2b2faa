"""What advocacy files let people write: the words of a target's `serves`, quiet hours,
distances and city names. Anything ends in a value or one clean ValueError."""
from __future__ import annotations

import os
from datetime import time

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.authoring.advocacy import QuietHours, parse_distance
from outreach.authoring.targets import parse_serves
from outreach.places import Unplaced, fold, gazetteer

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", 40))
WORDS = st.sampled_from(["TX", "Texas", "Northern CA", "the South", "New England", "Canada", "the Mid-Atlantic",
                         "CO", "and", ",", "the", "Gondor", "", " ", "DC", "southern", "ca", "the United States"])
SERVES = st.one_of(st.lists(WORDS, max_size=8).map(" ".join), st.text(max_size=60))


@settings(max_examples=EXAMPLES)
@given(SERVES, st.sampled_from(["US", "CA", "KE"]))
def test_serves_reads_or_says_which_words_it_cannot(text, country):
    try:
        found = parse_serves(country, "the United States" if country == "US" else "Canada", text)
    except ValueError as exc:
        assert "\n" not in str(exc) and ("cannot read" in str(exc) or "empty" in str(exc))
        return
    assert found.whole_country or found.regions or found.partial or found.grouped


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.text(max_size=15), st.builds("{:02d}:{:02d}-{:02d}:{:02d}".format, *(st.integers(0, 99),) * 4)))
def test_quiet_hours_are_a_span_or_a_clean_error(text):
    try:
        parsed = QuietHours.parse(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    hours = QuietHours(**parsed)
    assert hours.start != hours.end
    # a time is quiet or not, never both
    assert hours.contains(hours.start) and not hours.contains(hours.end)
    assert isinstance(hours.contains(time(12, 0)), bool)


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=True),
                 st.builds("{} {}".format, st.floats(allow_nan=True, allow_infinity=True),
                           st.sampled_from(["km", "mi"]))))
def test_a_distance_is_positive_kilometres_or_a_clean_error(value):
    try:
        km = parse_distance(value)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert 0 < km < float("inf")


@settings(max_examples=EXAMPLES)
@given(st.text(max_size=40), st.sampled_from(["US", "CA", "FR", "ZZ"]), st.one_of(st.none(), st.text(max_size=4)))
def test_any_city_name_is_placed_or_refused_with_a_reason(city, country, region):
    gazetteer()  # loaded once: the bound is on each lookup
    try:
        place = gazetteer().locate(city, country, region)
    except Unplaced as exc:
        assert "\n" not in str(exc)
        return
    assert fold(place.name) == fold(city) or place.country == country
