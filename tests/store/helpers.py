"""Small builders shared by the store tests."""
from __future__ import annotations

import io
from datetime import UTC, datetime

import sqlalchemy as sa

from outreach.store import add_subscriber
from outreach.subscribers.csvfile import import_csv

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def csv_import(engine: sa.Engine, text: str | bytes, name: str = "subs.csv") -> tuple[object, list[str]]:
    problems: list[str] = []
    data = text.encode() if isinstance(text, str) else text
    result = import_csv(engine, io.BytesIO(data), name, problems.append)
    return result, problems


def people(engine: sa.Engine, *specs: tuple) -> dict[str, int]:
    """(email, tags, fields...) tuples → ids."""
    ids = {}
    for email, tags, *rest in specs:
        fields = rest[0] if rest else {}
        ids[email] = add_subscriber(engine, email, tags=tags, **fields)
    return ids
