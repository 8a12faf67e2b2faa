"""CSV files from elsewhere: a bad value costs its row (named by line), never the file; a
status in a file never upgrades an address; the importer accepts only what the sender can
send to; an export opened in a spreadsheet runs no formula, and re-imports to the same values."""
from __future__ import annotations

import csv
import io

import pytest

from outreach.channels.smtp.mime import check_address
from outreach.store import add_subscriber, get_subscriber, set_status
from outreach.subscribers.csvfile import export_csv
from tests.store.helpers import csv_import


@pytest.mark.parametrize("zone", ["Asia", "America", "../../etc/passwd", "/etc/localtime", "UTC\x00"])
def test_a_zone_folder_costs_its_row_not_the_file(engine, zone):
    # given a file whose middle row names a folder of zones (ZoneInfo raises IsADirectoryError)
    text = f"email,timezone\na@example.org,Europe/Paris\nb@example.org,{zone}\nc@example.org,Asia/Seoul\n"
    result, problems = csv_import(engine, text)
    # then the good rows are in and the bad one is named by its line
    assert (result.inserted, result.skipped) == (2, 1), problems
    assert len(problems) == 1 and problems[0].startswith("subs.csv:3:"), problems
    assert "unknown time zone" in problems[0] or "NUL" in problems[0]


@pytest.mark.parametrize("address", ["ünicode@exämple.org", "josé@example.org", "a" * 65 + "@example.org"])
def test_an_address_the_sender_cannot_send_to_is_refused_at_import(engine, address):
    # given addresses email_validator may accept but the SMTP channel (no SMTPUTF8) cannot send to
    result, problems = csv_import(engine, f"email\n{address}\nok@example.org\n")
    assert (result.inserted, result.skipped) == (1, 1)
    assert problems[0].startswith("subs.csv:2: invalid email address"), problems


@pytest.mark.parametrize(("address", "stored"), [
    ("q@bücher.de", "q@bücher.de"),
    ("q@XN--BCHER-KVA.DE", "q@bücher.de"),
    ("s@straße.de", "s@xn--strae-oqa.de"),  # IDNA 2003 would send it to strasse.de
])
def test_every_imported_address_is_sent_to_the_domain_that_was_validated(engine, address, stored):
    csv_import(engine, f"email\n{address}\n")
    sub = get_subscriber(engine, stored)
    assert sub is not None and sub.email == stored
    # the sender writes it as the validator does
    from email_validator import validate_email
    assert check_address(sub.email) == validate_email(address, check_deliverability=False).ascii_email


@pytest.mark.parametrize("stored", ["bounced", "complained", "unsubscribed", "pending"])
def test_a_status_in_a_file_never_upgrades_an_address(engine, stored):
    # given a subscriber whose status an import must not undo
    csv_import(engine, "email\nx@example.org\n")
    set_status(engine, "x@example.org", stored)
    # when an old list saying "confirmed" is imported again
    csv_import(engine, "email,status,city\nx@example.org,confirmed,Lyon\n")
    # then the status stays (the other values are still updated)
    sub = get_subscriber(engine, "x@example.org")
    assert (sub.status, sub.city) == (stored, "Lyon")


def test_a_file_may_still_mark_someone_unsubscribed_or_bounced(engine):
    csv_import(engine, "email\np@example.org\nc@example.org\n")
    set_status(engine, "p@example.org", "pending")
    csv_import(engine, "email,status\np@example.org,unsubscribed\nc@example.org,bounced\n")
    assert get_subscriber(engine, "p@example.org").status == "unsubscribed"
    assert get_subscriber(engine, "c@example.org").status == "bounced"


def test_a_lone_surrogate_costs_its_row(engine):
    from outreach.errors import DataError
    from outreach.subscribers.fields import make_subscriber

    # a CSV cannot hold one (it is not UTF-8), but a form or an API call can
    with pytest.raises(DataError, match="name is not text"):
        make_subscriber({"email": "a@example.org", "name": "x\ud800"})
    with pytest.raises(DataError, match="chapter is not text"):
        make_subscriber({"email": "a@example.org"}, {"chapter": "\udcff"})


# (a leading tab is trimmed like any whitespace around a value, so it never reaches an export)
FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1 555 0100", "-5", "@SUM(A1)", "'=quoted"]


def test_export_neutralizes_formulas_and_reimports_the_same_values(engine):
    # given subscribers whose names and attributes start like spreadsheet formulas (stored as
    # given, as the sign-up form does)
    for i, value in enumerate(FORMULAS):
        add_subscriber(engine, f"f{i}@example.org", name=value, attrs={"note": value})
    # when exported
    out = io.StringIO()
    export_csv(engine, out)
    text = out.getvalue()
    # then no cell starts with a formula character
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "''=quoted" in text
    # and importing the export gives back exactly the same values
    _, problems = csv_import(engine, text)
    assert problems == []
    subs = [get_subscriber(engine, f"f{i}@example.org") for i in range(len(FORMULAS))]
    assert [s.name for s in subs] == FORMULAS and [s.attrs["note"] for s in subs] == FORMULAS


def test_an_imported_guard_apostrophe_is_removed(engine):
    # given a file written by a spreadsheet-safe exporter
    csv_import(engine, "email,name\ng@example.org,'=1+2\nh@example.org,'plain\n")
    assert get_subscriber(engine, "g@example.org").name == "=1+2"
    assert get_subscriber(engine, "h@example.org").name == "'plain"  # not a guard: kept
