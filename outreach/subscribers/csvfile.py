"""Subscribers as CSV files: streaming import and export.

Import rules (also in `outreach subscribers import --help`):
- a header row is required and must name an `email` column; known columns are those of
  `models.CSV_COLUMNS` (any case); every other column is a custom attribute, stored as text;
- rows are upserted by normalized address, compared case-insensitively, in batches: a new
  address is inserted, a known one updated (keeping the spelling first stored). An empty
  cell, or a column the file does not have, leaves the stored value as it is, so a partial
  file (e.g. `email,donor_tier`) only changes what it names. A non-empty `tags` cell
  replaces the subscriber's tags;
- `status` defaults to `confirmed` for new rows (a list you import is people who agreed to
  hear from you; put `pending` in the column otherwise). An import never changes an
  `unsubscribed` subscriber back: only the person can undo an unsubscribe;
- a status in the file never upgrades an address: a bounced, complained or unsubscribed
  subscriber keeps that status whatever the file says, and a pending one is not confirmed by
  a file (only the person confirms). A file may still mark someone unsubscribed or bounced;
- an address is accepted only when the SMTP channel can send to it: an ASCII part before the
  @ (no SMTPUTF8), a domain written the same by the sender and the validator (or stored in its
  ASCII form, xn--...);
- a bad row (invalid address, unknown country code or time zone, invalid status, language or
  date, wrong number of fields, CR/LF or NUL inside a field, invalid UTF-8, over-long value)
  is reported as `FILE:LINE: reason` and skipped; the other rows are imported. Bad rows are
  filtered out before anything is written, so a bad file never damages stored rows;
- a row with a city and a country but no region, coordinates or time zone gets them from
  the offline GeoNames data (places.py); a city that is unknown, or shared by several places
  none of which is far bigger (Portland, Springfield), is reported as `FILE:LINE: note:` and
  the row is imported without a place: add its region or its latitude and longitude;
- export writes a cell starting with =, +, -, @, tab or CR with a leading apostrophe (so no
  spreadsheet runs it as a formula); import removes that apostrophe again.
Memory stays flat whatever the file size: lines are read one at a time and written in batches.
"""
from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TextIO

from ..errors import DataError
from ..models import CSV_COLUMNS, Subscriber, SubscriberStatus
from .fields import make_subscriber

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..store import Bind
    from ..store.subscribers import ImportResult

MAX_RECORD_LINES = 50  # an unclosed quote is reported after this many lines, not the whole file
DEFAULT_IMPORT_STATUS = SubscriberStatus.CONFIRMED

@dataclass(frozen=True)
class _Line:
    number: int
    text: str
    error: str | None


def _lines(stream: BinaryIO) -> Iterator[_Line]:
    """Physical lines, decoded one at a time so one bad byte costs one row, not the file."""
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        error = None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", "replace")
            error = f"invalid UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8"
        if error is None and "\r" in text:
            error = "carriage return (CR) inside a field; fields may not contain line breaks"
        if error is None and "\x00" in text:
            error = "NUL character in the line"
        yield _Line(number, text, error)


def _records(stream: BinaryIO) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """CSV records as (first line number, fields or None, error or None). A quoted field that
    spans lines is an error; after MAX_RECORD_LINES (or at end of file) an unclosed quote is
    reported on its own line and the lines after it are parsed again on their own."""
    source = _lines(stream)
    replay: deque[_Line] = deque()
    open_record: list[_Line] = []

    def parse(lines: list[_Line]) -> list[str] | None:
        try:
            return next(csv.reader(["\n".join(line.text for line in lines)], strict=True), [])
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                return None
            raise

    def unclosed() -> tuple[int, None, str]:
        first = open_record[0]
        replay.extendleft(reversed(open_record[1:]))
        open_record.clear()
        return first.number, None, first.error or "a quoted field is not closed on this line"

    while True:
        line = replay.popleft() if replay else next(source, None)
        if line is None:
            if open_record:
                yield unclosed()
                continue
            return
        open_record.append(line)
        try:
            fields = parse(open_record)
        except csv.Error as exc:
            first = open_record[0]
            error: str | None = next((x.error for x in open_record if x.error), None) or f"not valid CSV: {exc}"
            if len(open_record) > 1:  # the error may be on a later line: give those lines another go
                replay.extendleft(reversed(open_record[1:]))
            open_record.clear()
            yield first.number, None, error
            continue
        if fields is None:
            if len(open_record) >= MAX_RECORD_LINES:
                yield unclosed()
            continue
        first, last = open_record[0], open_record[-1]
        error = next((x.error for x in open_record if x.error), None)
        open_record.clear()
        if error:
            yield first.number, None, error
        elif last is not first:
            yield first.number, None, (f"line break inside a quoted field (the row runs to line "
                                       f"{last.number}); fields may not contain line breaks")
        elif not any(f.strip() for f in fields):
            continue  # blank line
        else:
            yield first.number, fields, None


class _Header:
    def __init__(self, fields: list[str], where: str) -> None:
        self.known: dict[str, int] = {}
        self.custom: dict[str, int] = {}
        for i, raw in enumerate(fields):
            name = raw.strip()
            if not name:
                raise DataError(f"{where}: column {i + 1} of the header has no name")
            key = name.lower()
            if key in CSV_COLUMNS:
                if key in self.known:
                    raise DataError(f"{where}: column {key!r} appears twice in the header")
                self.known[key] = i
            else:
                if name in self.custom:
                    raise DataError(f"{where}: column {name!r} appears twice in the header")
                self.custom[name] = i
        if "email" not in self.known:
            raise DataError(f"{where}: the header has no 'email' column (found: {', '.join(fields)}); "
                            "the first line must name the columns, e.g. email,name,country")
        self.width = len(fields)

    def record(self, fields: list[str]) -> Subscriber:
        if len(fields) != self.width:
            raise DataError(f"expected {self.width} fields as in the header, found {len(fields)}")
        values = {k: _unguarded(fields[i]) for k, i in self.known.items()}
        attrs = {k: _unguarded(fields[i]) for k, i in self.custom.items()}
        return make_subscriber(values, attrs)


def place(sub: Subscriber) -> Subscriber:
    """The subscriber with the region, coordinates and time zone of their city filled in where
    the file left them empty (offline GeoNames data, see places.py); Unplaced when the city is
    unknown or ambiguous. What the file gives is kept: a region picks among cities of one name."""
    from ..places import locate

    if not sub.city or not sub.country or (sub.latitude is not None and sub.region and sub.timezone):
        return sub
    found = locate(sub.city, sub.country, sub.region)
    return sub.replace(region=sub.region or found.region,
                       latitude=sub.latitude if sub.latitude is not None else found.latitude,
                       longitude=sub.longitude if sub.longitude is not None else found.longitude,
                       timezone=sub.timezone or found.timezone)


def read_csv(stream: BinaryIO, filename: str, report: Callable[[str], None], *,
             note: Callable[[str], None] | None = None) -> Iterator[Subscriber]:
    """Valid records of a subscriber CSV; each bad row goes to `report` as `FILE:LINE: reason`.
    Raises DataError when the file has no usable header.

    With `note`, each row is placed (`place`): a city that cannot be placed goes to `note` as
    `FILE:LINE: note: reason` and the row is still read, without a place."""
    from ..places import Unplaced

    records = _records(stream)
    first = next(records, None)
    if first is None:
        raise DataError(f"{filename}: the file is empty; it needs a header row such as email,name,country")
    number, fields, error = first
    if error or fields is None:
        raise DataError(f"{filename}:{number}: header: {error}")
    header = _Header(fields, f"{filename}:{number}")
    for number, fields, error in records:
        if error is None:
            try:
                record = header.record(fields or [])
            except DataError as exc:
                error = str(exc)
            except Exception as exc:  # a value no check foresaw costs its row, never the file
                error = f"this row could not be read ({type(exc).__name__}: {exc})"
            else:
                if note is not None:
                    try:
                        record = place(record)
                    except Unplaced as exc:
                        note(f"{filename}:{number}: note: {exc}; imported without a place (the nearest office "
                             "and event need one)")
                yield record
                continue
        report(f"{filename}:{number}: {error}")


def import_csv(bind: Bind, stream: BinaryIO, filename: str,
               report: Callable[[str], None] = lambda _: None,
               default_status: SubscriberStatus = DEFAULT_IMPORT_STATUS,
               note: Callable[[str], None] | None = None) -> ImportResult:
    """Stream a subscriber CSV (opened in binary) into the store; see the module docstring.
    Every row is placed (region, coordinates, zone from its city when the file lacks them);
    a city that cannot be placed goes to `note` (else to `report`) without costing its row."""
    skipped = 0

    def counting(line: str) -> None:
        nonlocal skipped
        skipped += 1
        report(line)

    from ..store import subscribers as stored  # reading a file (samples, validate) needs no database

    result = stored.upsert(bind, read_csv(stream, filename, counting, note=note or report),
                           default_status=default_status)
    result.skipped = skipped
    return result


# --- CSV writing ---------------------------------------------------------------------------

def export_csv(engine: sa.Engine, out: TextIO, attributes: list[str] | None = None) -> int:
    """Write every subscriber as CSV in the import format (re-importable); return the count.
    Streams: rows are fetched and written a batch at a time."""
    from ..store import subscribers as stored

    attrs = [a for a in (stored.attribute_names(engine) if attributes is None else attributes)
             if a.lower() not in CSV_COLUMNS]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *attrs])
    count = 0
    for sub in stored.iter_subscribers(engine):
        writer.writerow([*(_cell(getattr(sub, column)) for column in CSV_COLUMNS),
                         *(_cell(sub.attrs.get(a)) for a in attrs)])
        count += 1
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):  # tags
        return _guarded(";".join(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    return _guarded(str(value))


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV
# injection": `=HYPERLINK(...)` in a name field). Export writes such a cell with a leading
# apostrophe, which spreadsheets show as text; import takes that apostrophe off again, so an
# exported file re-imports to the same values.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _guarded(text: str) -> str:
    # also a value that already starts with apostrophes before a formula character, so that
    # import (which removes exactly one) gives it back as it was
    return "'" + text if text.lstrip("'").startswith(_FORMULA_START) else text


def _unguarded(text: str) -> str:
    return text[1:] if text.startswith("'") and text.lstrip("'").startswith(_FORMULA_START) else text
