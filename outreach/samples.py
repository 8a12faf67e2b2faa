"""Sample recipients for validate and preview, from config/subscribers.csv when present."""
from __future__ import annotations

import csv
from pathlib import Path

from .settings import Settings
from .templating import Recipient

SAMPLE_FILE = "subscribers.csv"
_KNOWN = {"email", "name", "city", "country", "timezone", "language", "tags", "status",
          "consent_source", "consent_at"}

FALLBACK = Recipient(email="sample@example.org", name="Sam Sample", city="Toronto", country="CA",
                     timezone="America/Toronto", language="en", tags=("supporter",))


def sample_file(settings: Settings) -> Path:
    return settings.path(settings.data_dir) / SAMPLE_FILE


def sample_recipients(settings: Settings) -> list[Recipient]:
    path = sample_file(settings)
    if not path.is_file():
        return [FALLBACK]
    out: list[Recipient] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row.get("email"):
                continue
            out.append(recipient_from_row(row))
    return out or [FALLBACK]


def recipient_from_row(row: dict[str, str | None]) -> Recipient:
    def get(key: str) -> str | None:
        value = (row.get(key) or "").strip()
        return value or None

    tags = tuple(t.strip() for t in (row.get("tags") or "").split(";") if t.strip())
    attrs = {k: v for k, v in row.items() if k not in _KNOWN and k is not None and v not in (None, "")}
    return Recipient(email=(row.get("email") or "").strip(), name=get("name"), city=get("city"),
                     country=(get("country") or "").upper() or None, timezone=get("timezone"),
                     language=get("language"), tags=tags, attrs=attrs)
