from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from outreach.authoring.audience import Audience, Filter, TagFilter, load_segments
from outreach.errors import ConfigurationError, ValidationFailed
from outreach.store import set_status, suppress, unsuppress
from outreach.store.audience import audience_count, audience_select
from tests.store.helpers import people

REPO_SEGMENTS = Path(__file__).resolve().parents[2] / "config" / "segments.yaml"

EVERYONE = [
    ("olivia@example.org", ["supporter", "advocacy"], {"country": "US", "city": "Dallas", "timezone": "America/Chicago",
                                                        "language": "en"}),
    ("caleb@example.com", ["supporter"], {"country": "US", "city": "Waco", "attrs": {"donor_tier": "one-time"}}),
    ("priya@example.net", ["advocacy", "donor"], {"country": "US", "city": "Madison",
                                                   "attrs": {"donor_tier": "monthly", "volunteer": "Yes"}}),
    ("staff@example.org", ["advocacy", "staff"], {"country": "US", "city": "Dallas"}),
    ("minji@example.kr", ["supporter"], {"country": "KR", "city": "Seoul", "language": "ko",
                                         "timezone": "Asia/Seoul"}),
    ("ben@example.co.uk", ["donor"], {"country": "GB", "city": "London", "attrs": {"donor_tier": "major"}}),
]


def emails(engine, audience: Audience | None, segments=None) -> set[str]:
    with engine.connect() as conn:
        return {r.email for r in conn.execute(audience_select(audience, segments or {}))}


@pytest.fixture
def crowd(engine):
    return people(engine, *EVERYONE)


def seg(name: str) -> Audience:
    return Audience(segment=name)


def test_filters_by_country_city_language_timezone(engine, crowd):
    assert emails(engine, Audience(filter=Filter(country="kr"))) == {"minji@example.kr"}
    assert emails(engine, Audience(filter=Filter(country=["GB", "KR"]))) == {"minji@example.kr", "ben@example.co.uk"}
    assert emails(engine, Audience(filter=Filter(city=["Dallas", "Waco"], country="US"))) == {
        "olivia@example.org", "caleb@example.com", "staff@example.org"}
    assert emails(engine, Audience(filter=Filter(language="ko"))) == {"minji@example.kr"}
    assert emails(engine, Audience(filter=Filter(timezone="America/Chicago"))) == {"olivia@example.org"}


def test_filters_by_tags(engine, crowd):
    # a list means any of
    assert emails(engine, Audience(filter=Filter(tags=["donor"]))) == {"priya@example.net", "ben@example.co.uk"}
    # any + none
    assert emails(engine, Audience(filter=Filter(tags=TagFilter(any=["advocacy"], none=["staff"])))) == {
        "olivia@example.org", "priya@example.net"}
    # all
    assert emails(engine, Audience(filter=Filter(tags=TagFilter(all=["advocacy", "donor"])))) == {"priya@example.net"}


def test_filters_by_custom_attributes(engine, crowd):
    assert emails(engine, Audience(filter=Filter(attrs={"donor_tier": "monthly"}))) == {"priya@example.net"}
    assert emails(engine, Audience(filter=Filter(attrs={"donor_tier": ["major", "monthly"]}))) == {
        "priya@example.net", "ben@example.co.uk"}
    assert emails(engine, Audience(filter=Filter(attrs={"volunteer": True}))) == {"priya@example.net"}
    assert emails(engine, Audience(filter=Filter(attrs={"donor_tier": "monthly", "volunteer": False}))) == set()


def test_segment_and_filter_are_anded(engine, crowd):
    segments = load_segments(REPO_SEGMENTS)
    assert emails(engine, seg("advocates"), segments) == {"olivia@example.org", "priya@example.net"}
    assert emails(engine, Audience(segment="supporters", filter=Filter(country="KR")), segments) == {"minji@example.kr"}


def test_unsubscribed_bounced_and_pending_are_always_excluded(engine, crowd):
    # given three of the supporters who are no longer confirmed
    set_status(engine, "olivia@example.org", "unsubscribed")
    set_status(engine, "caleb@example.com", "bounced")
    set_status(engine, "minji@example.kr", "pending")
    # when selecting with no filter at all, or a filter naming them
    everyone = emails(engine, None)
    named = emails(engine, Audience(filter=Filter(country=["US", "KR"], tags=["supporter"])))
    # then none of them is selected
    assert everyone == {"priya@example.net", "staff@example.org", "ben@example.co.uk"}
    assert named == set()


def test_a_suppressed_address_is_in_no_audience_whatever_the_segment(engine, crowd):
    # given a confirmed subscriber, suppressed under a different spelling of her address
    segments = load_segments(REPO_SEGMENTS)
    assert "priya@example.net" in emails(engine, None)
    suppress(engine, "PRIYA@Example.NET", reason="complaint")
    # when selecting with every segment, every filter that matches her, and no filter
    audiences = [None, Audience()] + [seg(name) for name in segments] + [
        Audience(filter=Filter(tags=["donor"])), Audience(filter=Filter(attrs={"donor_tier": "monthly"})),
        Audience(segment="donors", filter=Filter(country="US", city="Madison")),
    ]
    # then she is never selected
    for audience in audiences:
        assert "priya@example.net" not in emails(engine, audience, segments), audience
    # and she is back once unsuppressed (the exclusion is the suppression, not something else)
    unsuppress(engine, "priya@example.net")
    assert "priya@example.net" in emails(engine, seg("donors"), segments)


def test_count_matches_the_select(engine, crowd):
    select = audience_select(Audience(filter=Filter(country="US")), {})
    assert audience_count(engine, select) == 4


def test_unknown_segment_says_which_exist(engine):
    with pytest.raises(ConfigurationError, match="unknown segment 'nope'.*defined: a"):
        audience_select(Audience(segment="nope"), {"a": Filter()})


def test_bad_country_code_is_named():
    with pytest.raises(ValidationError, match="unknown country codes 'XX', 'ZZ'"):
        Filter(country=["US", "XX", "ZZ"])
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Base'"):
        Filter(timezone="Mars/Base")
    with pytest.raises(ValidationError):
        Filter(colour="red")


def test_segments_file_errors_point_at_file_and_line(tmp_path):
    # given a segments file with an unknown country on line 5 and a misspelt key on line 7
    path = tmp_path / "segments.yaml"
    path.write_text("ok:\n  country: US\n\nbad:\n  country: [US, XX]\nworse:\n  tagz: [a]\n")
    # when loading it
    with pytest.raises(ValidationFailed) as err:
        load_segments(path, "config/segments.yaml")
    # then each problem names file:line and what to fix
    text = str(err.value)
    assert "config/segments.yaml:5: [bad.country] unknown country code 'XX'" in text
    assert "config/segments.yaml:7: [worse.tagz] unknown key 'tagz'" in text
    assert "did you mean 'tags'" in text


def test_repository_segments_load():
    segments = load_segments(REPO_SEGMENTS)
    assert {"supporters", "advocates", "donors"} <= set(segments)
    assert load_segments(REPO_SEGMENTS.parent / "does-not-exist.yaml") == {}


def test_audience_columns_for_planning(engine, crowd):
    # the planner needs id, email and timezone
    with engine.connect() as conn:
        row = conn.execute(audience_select(Audience(filter=Filter(country="KR")), {})).one()
    assert (row.email, row.timezone) == ("minji@example.kr", "Asia/Seoul") and isinstance(row.id, int)
    assert isinstance(audience_select(None, {}), sa.Select)
