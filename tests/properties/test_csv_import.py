"""Mutated subscriber CSV files: every row becomes a subscriber the SMTP channel can send to,
or a reported `FILE:LINE: reason`; the file is never lost to one bad value."""
from __future__ import annotations

import csv
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.channels.smtp.mime import check_address
from outreach.errors import DataError
from outreach.store import make_engine, upgrade
from outreach.subscribers.csvfile import import_csv, read_csv
from tests.properties.conftest import NASTY, bounded

COLUMNS = ["email", "name", "city", "country", "timezone", "language", "tags", "status", "consent_at", "chapter"]
GOOD = ["ana@example.org", "Ana Lima", "Toronto", "CA", "America/Toronto", "en", "a;b", "confirmed",
        "2024-05-01T10:00:00Z", "toronto"]
VALUES = [v.strip('"') for v in NASTY] + ["q@bücher.de", "s@straße.de", "US", "kr", "Asia/Seoul", "pt-BR",
                                          "unsubscribed", "bounced", "'=1+2", "a\nb", "a\rb", "a\x00b"]


@st.composite
def csv_file(draw: st.DrawFn) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(COLUMNS)
    for n in range(draw(st.integers(1, 8))):
        row = [f"p{n}@example.org", *GOOD[1:]]
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(row) - 1))
            row[i] = draw(st.sampled_from(VALUES) | st.text(max_size=15))
        if draw(st.integers(0, 9)) == 0:
            row = row[:draw(st.integers(0, len(row)))]
        writer.writerow(row)
    data = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 0:  # raw damage: a byte that is not UTF-8, a stray quote
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b'"', b"\x00", b"\r", b"\xef\xbb\xbf"])) + data[at:]
    return data


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 300)))
@given(data=csv_file())
def test_every_row_is_a_sendable_subscriber_or_a_named_line(data):
    reports: list[str] = []
    with bounded(10):
        try:
            subscribers = list(read_csv(io.BytesIO(data), "subs.csv", reports.append))
        except DataError as exc:  # the header itself is damaged: the file is refused, by line
            assert str(exc).startswith("subs.csv:1:") and "\n" not in str(exc), exc
            return
    for sub in subscribers:
        check_address(sub.email)  # the importer accepts only what the sender can send to
    for line in reports:
        assert line.startswith("subs.csv:") and "\n" not in line, line
    # nothing vanishes: each line of the file is a subscriber, a report, the header or blank
    assert len(subscribers) + len(reports) <= data.count(b"\n") + 1


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'outreach.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 40)))
@given(data=csv_file())
def test_an_import_stores_what_it_read_and_counts_every_row(engine, data):
    reports: list[str] = []
    try:
        read = list(read_csv(io.BytesIO(data), "subs.csv", lambda _: None))
    except DataError:
        return
    with bounded(20):
        result = import_csv(engine, io.BytesIO(data), "subs.csv", reports.append)
    assert result.inserted + result.updated == len(read)
    # (a city it cannot place is a note: the row is imported all the same)
    assert result.skipped == len([r for r in reports if ": note: " not in r])
