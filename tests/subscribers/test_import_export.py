from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from outreach.errors import DataError
from outreach.store import get_subscriber, get_tags, set_status
from outreach.store.schema import subscribers
from outreach.subscribers.csvfile import export_csv
from outreach.subscribers.fields import normalize_email
from tests.store.helpers import csv_import

HEADER = "email,name,city,country,timezone,language,tags,status,consent_source,consent_at,chapter\n"
GOOD = [
    "Ann@Example.COM,Ann Lee,Dallas,us,America/Chicago,en,supporter;advocacy,,signup-form,2024-05-01T10:00:00Z,SMU\n",
    "bo@bücher.de,Bo,Berlin,DE,Europe/Berlin,de,donor,pending,,,\n",
]
BAD = {  # line content → the reason that must be named
    "not-an-address,X,,US,,,,,,,\n": "invalid email address",
    "c@example.org,C,,XX,,,,,,,\n": "unknown country code 'XX'",
    "d@example.org,D,,US,Mars/Olympus,,,,,,\n": "unknown time zone 'Mars/Olympus'",
    "e@example.org,E,,US,,,,maybe,,,\n": "invalid status 'maybe'",
    "f@example.org,F,,US\n": "expected 11 fields",
    "g@example.org,G,,US,,,,,,yesterday,\n": "invalid date 'yesterday'",
    "h@example.org,\"H\nsecond line\",,US,,,,,,,\n": "line break inside a quoted field",
    "i@example.org,I\r,,US,,,,,,,\n": "carriage return (CR)",
    "j@example.org,\"J,,US,,,,,,,\n": "quoted field is not closed",
    "k@example.org,K,,US,,english!,,,,,\n": "invalid language",
}


def _file_with_every_bad_kind() -> tuple[bytes, dict[int, str]]:
    """Good and bad rows alternating; returns the file and {line number: expected reason}."""
    chunks = [HEADER.encode()]
    expected: dict[int, str] = {}

    def add(chunk: bytes, reason: str | None = None) -> None:
        line = sum(c.count(b"\n") for c in chunks) + 1
        if reason:
            expected[line] = reason
        chunks.append(chunk)

    for good, (bad, reason) in zip(GOOD * 5, BAD.items(), strict=False):
        add(good.encode())
        add(bad.encode(), reason)
    add(b"l@example.org,L\xff\xfe,,US,,,,,,,\n", "invalid UTF-8")
    add(b"m@example.org,Last good,,GB,Europe/London,,,,,,\n")
    return b"".join(chunks), expected


def test_mixed_file_imports_exactly_the_good_rows_and_names_every_bad_line(engine):
    # given a file where every kind of bad row sits between good rows
    data, expected = _file_with_every_bad_kind()
    # when it is imported
    result, problems = csv_import(engine, data)
    # then each bad line is reported as FILE:LINE: reason, once, with the right reason
    assert len(problems) == len(expected), problems
    for problem in problems:
        file, line, reason = problem.split(":", 2)
        assert file == "subs.csv"
        assert expected[int(line)] in reason, (problem, expected[int(line)])
    # and exactly the good rows are stored
    with engine.connect() as conn:
        emails = set(conn.execute(sa.select(subscribers.c.email)).scalars())
    assert emails == {"Ann@example.com", "bo@bücher.de", "m@example.org"}
    # (the two good addresses recur, so later rows update earlier ones)
    assert (result.inserted, result.updated, result.skipped) == (3, 8, len(expected))


def test_imported_values_are_normalized(engine):
    # given one row with a mixed-case domain, a lower-case country and custom columns
    csv_import(engine, HEADER + GOOD[0])
    # when reading it back
    row = get_subscriber(engine, "ann@EXAMPLE.com")
    # then the address, country, time, tags and attributes are in their stored forms
    assert row.email == "Ann@example.com"
    assert row.country == "US" and row.timezone == "America/Chicago" and row.status == "confirmed"
    assert row.consent_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert row.attrs == {"chapter": "SMU"}
    assert get_tags(engine, row.id) == ["advocacy", "supporter"]


def test_reimport_updates_instead_of_duplicating(engine):
    # given an imported file
    csv_import(engine, HEADER + "".join(GOOD))
    # when a later file changes one row (different spelling of the domain) and adds one
    result, problems = csv_import(engine, "email,name,tags,donor_tier\n"
                                          "ann@EXAMPLE.com,Ann Lee-Park,donor,monthly\n"
                                          "new@example.org,New,,\n")
    # then it is one update and one insert, not a duplicate
    assert problems == []
    assert (result.inserted, result.updated, result.skipped) == (1, 1, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar() == 3
    row = get_subscriber(engine, "Ann@example.com")
    # and named columns changed, others kept, tags replaced, attributes merged
    assert row.name == "Ann Lee-Park" and row.city == "Dallas" and row.country == "US"
    assert get_tags(engine, row.id) == ["donor"]
    assert row.attrs == {"chapter": "SMU", "donor_tier": "monthly"}


def test_same_address_twice_in_one_file_keeps_the_last(engine):
    result, _ = csv_import(engine, "email,name\na@example.org,First\nA@EXAMPLE.ORG,Second\n")
    assert (result.inserted, result.updated) == (1, 1)
    with engine.connect() as conn:
        names = conn.execute(sa.select(subscribers.c.email, subscribers.c.name)).all()
    assert [tuple(n) for n in names] == [("a@example.org", "Second")]


def test_import_never_resubscribes_an_unsubscribed_person(engine):
    # given a subscriber who unsubscribed
    csv_import(engine, "email\nu@example.org\n")
    set_status(engine, "u@example.org", "unsubscribed")
    # when an old list saying "confirmed" is imported again
    csv_import(engine, "email,status,name\nu@example.org,confirmed,U\n")
    # then they stay unsubscribed (the name is still updated)
    row = get_subscriber(engine, "u@example.org")
    assert row.status == "unsubscribed" and row.name == "U"


def test_existing_rows_survive_a_bad_file(engine):
    # given stored subscribers
    csv_import(engine, HEADER + "".join(GOOD))
    with engine.connect() as conn:
        before = conn.execute(sa.select(subscribers).order_by(subscribers.c.id)).all()
    # when a file with only bad rows, and a file with no usable header, are imported
    result, problems = csv_import(engine, "email,country,status\n"
                                          "Ann@example.com,XX,confirmed\nbo@bücher.de,US,nope\n")
    with pytest.raises(DataError, match="no 'email' column"):
        csv_import(engine, "name,country\nAnn,US\n")
    with pytest.raises(DataError, match="empty"):
        csv_import(engine, "")
    # then nothing was written and every bad row was named
    assert result.inserted == result.updated == 0 and len(problems) == 2
    with engine.connect() as conn:
        after = conn.execute(sa.select(subscribers).order_by(subscribers.c.id)).all()
    assert after == before


def test_header_problems_are_file_errors(engine):
    with pytest.raises(DataError, match="appears twice"):
        csv_import(engine, "email,Email\na@example.org,a@example.org\n")
    with pytest.raises(DataError, match="subs.csv:1: header: invalid UTF-8"):
        csv_import(engine, b"email,n\xffame\n")


def test_export_streams_the_import_format_and_round_trips(engine):
    # given imported subscribers with tags and attributes
    csv_import(engine, HEADER + "".join(GOOD))
    # when exported and imported into an empty table
    out = io.StringIO()
    assert export_csv(engine, out) == 2
    text = out.getvalue()
    assert text.splitlines()[0] == ("email,name,city,region,country,timezone,language,tags,status,consent_source,"
                                    "consent_at,latitude,longitude,chapter")
    with engine.connect() as conn:
        before = {r.email: r._asdict() for r in conn.execute(sa.select(subscribers))}
    with engine.begin() as conn:
        conn.execute(sa.delete(subscribers))
    result, problems = csv_import(engine, text, "export.csv")
    # then every value comes back
    assert problems == [] and result.inserted == 2
    with engine.connect() as conn:
        after = {r.email: r._asdict() for r in conn.execute(sa.select(subscribers))}
    strip = lambda d: {k: v for k, v in d.items() if k not in ("id", "created_at", "updated_at", "link_id")}  # noqa: E731
    assert {k: strip(v) for k, v in after.items()} == {k: strip(v) for k, v in before.items()}


def test_normalize_email():
    assert normalize_email("  Foo@Bücher.DE ") == "Foo@bücher.de"
    with pytest.raises(DataError, match="invalid email address 'a@b'"):
        normalize_email("a@b")


def test_fast_path_agrees_with_email_validator():
    # given addresses of many shapes, valid and not
    from email_validator import EmailNotValidError, validate_email

    from outreach.channels.smtp.mime import check_address

    samples = [
        "a@example.org", "A.B@Example.ORG", "a..b@example.org", ".a@example.org", "a.@example.org",
        "a+tag@sub.example.co.uk", "x@localhost", "x@example", "x@-bad.org", "x@bad-.org",
        "x@exa_mple.org", "x@123.123.123.123", "x@[1.2.3.4]", "user%x@example.org", "q@bücher.de",
        "q@XN--BCHER-KVA.DE", "a" * 64 + "@example.org", "a" * 65 + "@example.org",
        "x@" + "a" * 250 + ".org", "x@example..org", "x@.example.org", "x@example.org.",
        "x@invalid", "x@example.local", "x@example.test", "x@example.arpa", "a-b_c@ex-ample.io",
    ]
    for address in samples:
        try:
            expected = validate_email(address, check_deliverability=False).normalized
            check_address(expected)  # and the sender can send to it (email_validator allows 65+ local parts)
        except (EmailNotValidError, ValueError):
            expected = None
        # when normalized through outreach, then the verdict and result are the same
        try:
            got = normalize_email(address)
        except DataError:
            got = None
        assert got == expected, address
