"""Subscribers: address normalization, validation, and streaming CSV import/export.

CSV import rules (also in `outreach subscribers import --help`):
- a header row is required and must name an `email` column; known columns are `email, name,
  city, country, timezone, language, tags, status, consent_source, consent_at` (any case);
  every other column is a custom attribute, stored as text in `attrs`;
- rows are upserted by normalized address, compared case-insensitively, in batches: a new
  address is inserted, a known one updated (keeping the spelling first stored). An empty cell, or a column the file does not have, leaves the stored value as it
  is, so a partial file (e.g. `email,donor_tier`) only changes what it names. A non-empty
  `tags` cell replaces the subscriber's tags;
- `status` defaults to `confirmed` for new rows (a list you import is people who agreed to
  hear from you; put `pending` in the column otherwise). An import never changes an
  `unsubscribed` subscriber back: only the person can undo an unsubscribe;
- a bad row (invalid address, unknown country code or time zone, invalid status, language or
  date, wrong number of fields, CR/LF or NUL inside a field, invalid UTF-8, over-long value)
  is reported as `FILE:LINE: reason` and skipped; the other rows are imported. Bad rows are
  filtered out before anything is written, so a bad file never damages stored rows.
Memory stays flat whatever the file size: lines are read one at a time and written in batches.
"""
from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import BinaryIO, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from ..errors import DataError
from .db import dialect_insert
from .schema import SUBSCRIBER_STATUSES, subscriber_tags, subscribers, utcnow

Bind = Engine | sa.Connection

KNOWN_COLUMNS = ("email", "name", "city", "country", "timezone", "language", "tags", "status",
                 "consent_source", "consent_at")
DEFAULT_IMPORT_STATUS = "confirmed"
BATCH_SIZE = 1000
MAX_RECORD_LINES = 50  # an unclosed quote is reported after this many lines, not the whole file
_LIMITS = {"name": 200, "city": 200, "consent_source": 200}
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


# --- single values -------------------------------------------------------------------------

# Plain ASCII dot-atom local parts, the overwhelming majority: for these, email_validator's
# answer depends only on the domain, which repeats across a list, so its verdict on the domain
# is cached (importing a million rows spent most of its time re-validating gmail.com).
_SIMPLE_LOCAL = re.compile(r"^[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*$")


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    return validate_email(f"x@{domain}", check_deliverability=False).domain


def normalize_email(address: str) -> str:
    """The stored form of an address: domain lower-cased and IDN-decoded, local part as written
    (email_validator's `normalized`). Raises DataError naming what is wrong."""
    text = (address or "").strip()
    if not text:
        raise DataError("email address is empty")
    try:
        local, at, domain = text.rpartition("@")
        if at and len(text) <= 254 and len(local) <= 64 and _SIMPLE_LOCAL.match(local):
            return f"{local}@{_domain(domain)}"
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        # re-validate the whole address so the message is the one for this address
        try:
            validate_email(text, check_deliverability=False)
        except EmailNotValidError as full:
            exc = full
        raise DataError(f"invalid email address {text!r}: {exc}") from None


@lru_cache(maxsize=None)
def _country_ok(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


def normalize_country(code: str) -> str:
    value = code.strip().upper()
    if len(value) != 2 or not value.isalpha() or not _country_ok(value):
        raise DataError(f"unknown country code {code!r}; use an ISO 3166 alpha-2 code such as US, GB or KR")
    return value


@lru_cache(maxsize=None)
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def normalize_timezone(name: str) -> str:
    value = name.strip()
    if not value or len(value) > 64 or not _zone_ok(value):
        raise DataError(f"unknown time zone {name!r}; use an IANA name such as America/New_York")
    return value


def normalize_language(tag: str) -> str:
    value = tag.strip()
    if not _LANGUAGE.match(value) or len(value) > 35:
        raise DataError(f"invalid language {tag!r}; use a code such as en, ko or pt-BR")
    return value


def normalize_status(status: str) -> str:
    value = status.strip().lower()
    if value not in SUBSCRIBER_STATUSES:
        raise DataError(f"invalid status {status!r}; use one of {', '.join(SUBSCRIBER_STATUSES)}")
    return value


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 date or date-time; a time without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"invalid date {text!r}; use ISO 8601 such as 2024-05-01 or "
                        "2024-05-01T09:30:00+02:00") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys(t.strip() for t in text.split(";") if t.strip()))
    for t in tags:
        if len(t) > 100:
            raise DataError(f"tag {t[:20]!r}... is longer than 100 characters")
    return tags


# --- records -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubscriberRecord:
    """One validated subscriber; None means "not given" (keeps the stored value on update)."""

    email: str
    name: str | None = None
    city: str | None = None
    country: str | None = None
    timezone: str | None = None
    language: str | None = None
    status: str | None = None
    consent_source: str | None = None
    consent_at: datetime | None = None
    tags: tuple[str, ...] | None = None
    attrs: dict[str, str] = field(default_factory=dict)


def make_record(values: dict[str, str | None], attrs: dict[str, str] | None = None) -> SubscriberRecord:
    """Validate raw text values into a record; raise DataError listing every problem."""
    problems: list[str] = []
    out: dict[str, object] = {}

    def take(key: str, fn: Callable[[str], object]) -> None:
        raw = values.get(key)
        if raw is None or not str(raw).strip():
            return
        try:
            out[key] = fn(str(raw))
        except DataError as exc:
            problems.append(str(exc))

    def text(key: str) -> Callable[[str], str]:
        def check(raw: str) -> str:
            value = raw.strip()
            if len(value) > _LIMITS[key]:
                raise DataError(f"{key} is longer than {_LIMITS[key]} characters")
            return value
        return check

    if not (values.get("email") or "").strip():
        problems.append("email address is empty")
    take("email", normalize_email)
    take("name", text("name"))
    take("city", text("city"))
    take("country", normalize_country)
    take("timezone", normalize_timezone)
    take("language", normalize_language)
    take("status", normalize_status)
    take("consent_source", text("consent_source"))
    take("consent_at", parse_timestamp)
    take("tags", _tags)
    if problems:
        raise DataError("; ".join(problems))
    clean_attrs = {k: v.strip() for k, v in (attrs or {}).items() if v is not None and v.strip()}
    return SubscriberRecord(attrs=clean_attrs, **out)  # type: ignore[arg-type]


# --- writing -------------------------------------------------------------------------------

@dataclass
class ImportResult:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        return f"{self.inserted} new, {self.updated} updated, {self.skipped} skipped"


def upsert_records(bind: Bind, records: Iterable[SubscriberRecord],
                   default_status: str = DEFAULT_IMPORT_STATUS) -> ImportResult:
    """Insert or update `records` (one transaction per batch of BATCH_SIZE)."""
    result = ImportResult()
    batch: dict[str, SubscriberRecord] = {}
    for rec in records:
        key = rec.email.lower()
        if key in batch:  # a later row for the same address wins, as if applied in order
            result.updated += 1
            rec = replace(rec, email=batch[key].email)  # ... so the first spelling stays
        batch[key] = rec
        if len(batch) >= BATCH_SIZE:
            _write(bind, batch, default_status, result)
            batch = {}
    if batch:
        _write(bind, batch, default_status, result)
    return result


def _write(bind: Bind, batch: dict[str, SubscriberRecord], default_status: str, result: ImportResult) -> None:
    if isinstance(bind, sa.Connection):
        _write_batch(bind, batch, default_status, result)
    else:
        with bind.begin() as conn:
            _write_batch(conn, batch, default_status, result)


def _write_batch(conn: sa.Connection, batch: dict[str, SubscriberRecord], default_status: str,
                 result: ImportResult) -> None:
    s = subscribers
    lower = sa.func.lower(s.c.email)
    pg = conn.dialect.name == "postgresql"
    if not pg:  # SQLite cannot say whether an upsert inserted; ask first (IN uses the index)
        existing = conn.execute(sa.select(sa.func.count()).where(lower.in_(list(batch)))).scalar_one()
    now = utcnow()
    ins = dialect_insert(conn, s)
    ex = ins.excluded
    attrs = s.c.attrs.op("||")(ex.attrs) if pg else sa.func.json_patch(s.c.attrs, ex.attrs)
    keep = {c: sa.func.coalesce(ex[c], s.c[c])
            for c in ("name", "city", "country", "timezone", "language", "consent_source", "consent_at")}
    # xmax = 0 only on a row version this statement inserted: PostgreSQL's way to tell insert
    # from update in one round trip (a pre-SELECT of 1,000 addresses chose a seq scan).
    inserted = sa.literal_column("(xmax = 0)") if pg else sa.null()
    ids: dict[str, int] = {}
    # Two statements: rows whose file gave a status, and rows that keep the stored one. Neither
    # turns an `unsubscribed` subscriber back (only the person can undo an unsubscribe).
    for given in (True, False):
        group = [rec for rec in batch.values() if (rec.status is not None) == given]
        if not group:
            continue
        status = (sa.case((s.c.status == "unsubscribed", s.c.status), else_=ex.status) if given
                  else s.c.status)
        stmt = ins.on_conflict_do_update(
            index_elements=[lower],
            set_={**keep, "status": status, "attrs": attrs, "updated_at": ex.updated_at},
        ).returning(s.c.id, s.c.email, inserted)
        rows = [{"email": rec.email, "name": rec.name, "city": rec.city, "country": rec.country,
                 "timezone": rec.timezone, "language": rec.language,
                 "status": rec.status or default_status, "consent_source": rec.consent_source,
                 "consent_at": rec.consent_at, "attrs": rec.attrs, "created_at": now, "updated_at": now}
                for rec in group]
        for sid, email, new in conn.execute(stmt, rows).all():
            ids[email.lower()] = sid
            if pg:
                result.inserted += bool(new)
                result.updated += not new
    if not pg:
        result.updated += existing
        result.inserted += len(batch) - existing

    tagged = [(ids[key], rec.tags) for key, rec in batch.items() if rec.tags is not None]
    if tagged:
        conn.execute(sa.delete(subscriber_tags).where(
            subscriber_tags.c.subscriber_id.in_([sid for sid, _ in tagged])))
        tag_rows = [{"subscriber_id": sid, "tag": t} for sid, tags in tagged for t in tags]
        if tag_rows:
            conn.execute(sa.insert(subscriber_tags), tag_rows)


def add_subscriber(bind: Bind, email: str, *, status: str = DEFAULT_IMPORT_STATUS,
                   tags: Iterable[str] | None = None, attrs: dict[str, str] | None = None,
                   **fields: str | None) -> int:
    """Insert or update one subscriber (validated like a CSV row); return its id."""
    values: dict[str, str | None] = {"email": email, "status": status, **fields}
    if tags is not None:
        values["tags"] = ";".join(tags)
    rec = make_record(values, attrs)
    upsert_records(bind, [rec], default_status=status)
    found = get_subscriber(bind, rec.email)
    assert found is not None
    return found.id


def _by_address(email: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(subscribers.c.email) == normalize_email(email).lower()


def get_subscriber(bind: Bind, email: str) -> sa.Row | None:
    stmt = sa.select(subscribers).where(_by_address(email))
    if isinstance(bind, sa.Connection):
        return bind.execute(stmt).first()
    with bind.connect() as conn:
        return conn.execute(stmt).first()


def get_tags(bind: Bind, subscriber_id: int) -> list[str]:
    stmt = (sa.select(subscriber_tags.c.tag).where(subscriber_tags.c.subscriber_id == subscriber_id)
            .order_by(subscriber_tags.c.tag))
    if isinstance(bind, sa.Connection):
        return list(bind.execute(stmt).scalars())
    with bind.connect() as conn:
        return list(conn.execute(stmt).scalars())


def set_status(bind: Bind, email: str, status: str) -> bool:
    """Change one subscriber's status (e.g. `unsubscribed` from the unsubscribe link)."""
    stmt = (sa.update(subscribers).where(_by_address(email))
            .values(status=normalize_status(status), updated_at=utcnow()))
    if isinstance(bind, sa.Connection):
        return bind.execute(stmt).rowcount > 0
    with bind.begin() as conn:
        return conn.execute(stmt).rowcount > 0


# --- CSV reading ---------------------------------------------------------------------------

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
            error = next((x.error for x in open_record if x.error), None) or f"not valid CSV: {exc}"
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
            if key in KNOWN_COLUMNS:
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

    def record(self, fields: list[str]) -> SubscriberRecord:
        if len(fields) != self.width:
            raise DataError(f"expected {self.width} fields as in the header, found {len(fields)}")
        values = {k: fields[i] for k, i in self.known.items()}
        attrs = {k: fields[i] for k, i in self.custom.items()}
        return make_record(values, attrs)


def read_csv(stream: BinaryIO, filename: str,
             report: Callable[[str], None]) -> Iterator[SubscriberRecord]:
    """Valid records of a subscriber CSV; each bad row goes to `report` as `FILE:LINE: reason`.
    Raises DataError when the file has no usable header."""
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
                yield header.record(fields or [])
                continue
            except DataError as exc:
                error = str(exc)
        report(f"{filename}:{number}: {error}")


def import_csv(bind: Bind, stream: BinaryIO, filename: str,
               report: Callable[[str], None] = lambda _: None,
               default_status: str = DEFAULT_IMPORT_STATUS) -> ImportResult:
    """Stream a subscriber CSV (opened in binary) into the store; see the module docstring."""
    skipped = 0

    def counting(line: str) -> None:
        nonlocal skipped
        skipped += 1
        report(line)

    result = upsert_records(bind, read_csv(stream, filename, counting), default_status=default_status)
    result.skipped = skipped
    return result


# --- CSV writing ---------------------------------------------------------------------------

def attribute_names(bind: Bind) -> list[str]:
    """Every custom attribute key in use, sorted."""
    if bind.dialect.name == "postgresql":
        q = "SELECT DISTINCT jsonb_object_keys(attrs) AS k FROM subscribers ORDER BY 1"
    else:
        q = "SELECT DISTINCT j.key AS k FROM subscribers, json_each(subscribers.attrs) AS j ORDER BY 1"
    if isinstance(bind, sa.Connection):
        return list(bind.execute(sa.text(q)).scalars())
    with bind.connect() as conn:
        return list(conn.execute(sa.text(q)).scalars())


def export_csv(engine: Engine, out: TextIO, attributes: list[str] | None = None) -> int:
    """Write every subscriber as CSV in the import format (re-importable); return the count.
    Streams: rows are fetched and written a batch at a time."""
    attrs = [a for a in (attribute_names(engine) if attributes is None else attributes)
             if a.lower() not in KNOWN_COLUMNS]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*KNOWN_COLUMNS, *attrs])
    s, t = subscribers, subscriber_tags
    count = 0
    with engine.connect() as conn, engine.connect() as tag_conn:
        result = conn.execution_options(stream_results=True, yield_per=BATCH_SIZE).execute(
            sa.select(s).order_by(s.c.id))
        for part in result.partitions():
            tags: dict[int, list[str]] = {}
            for sid, tag in tag_conn.execute(sa.select(t.c.subscriber_id, t.c.tag)
                                             .where(t.c.subscriber_id.in_([r.id for r in part]))
                                             .order_by(t.c.subscriber_id, t.c.tag)):
                tags.setdefault(sid, []).append(tag)
            for r in part:
                row_attrs = r.attrs or {}
                writer.writerow([
                    r.email, r.name or "", r.city or "", r.country or "", r.timezone or "",
                    r.language or "", ";".join(tags.get(r.id, [])), r.status, r.consent_source or "",
                    r.consent_at.isoformat() if r.consent_at else "",
                    *(_cell(row_attrs.get(a)) for a in attrs),
                ])
                count += 1
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
