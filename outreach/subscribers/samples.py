"""Sample recipients for validate and preview, from config/subscribers.csv when present.

The file is read with the importer's own parser (store/subscribers.py), so a sample row is
validated exactly like an imported one; bad rows are left out here (`outreach subscribers
import` names them).
"""
from __future__ import annotations

from pathlib import Path

from ..settings import Settings
from ..store.subscribers import read_csv
from ..content.templating import Recipient

SAMPLE_FILE = "subscribers.csv"

FALLBACK = Recipient(email="sample@example.org", name="Sam Sample", city="Toronto", country="CA",
                     timezone="America/Toronto", language="en", tags=("supporter",))


def sample_file(settings: Settings) -> Path:
    return settings.path(settings.data_dir) / SAMPLE_FILE


def sample_recipients(settings: Settings) -> list[Recipient]:
    path = sample_file(settings)
    if not path.is_file():
        return [FALLBACK]
    with path.open("rb") as fh:
        out = [Recipient(email=r.email, name=r.name, city=r.city, country=r.country, timezone=r.timezone,
                         language=r.language, tags=tuple(r.tags or ()), attrs=dict(r.attrs))
               for r in read_csv(fh, str(path), lambda _line: None)]
    return out or [FALLBACK]
