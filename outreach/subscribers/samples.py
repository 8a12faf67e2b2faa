"""Sample subscribers for validate and preview, from config/subscribers.csv when present.

The file is read with the importer's own parser (subscribers/csvfile.py), so a sample row is
validated exactly like an imported one; bad rows are left out here (`outreach subscribers
import` names them).
"""
from __future__ import annotations

from pathlib import Path

from ..models import Subscriber
from ..settings import Settings
from .csvfile import read_csv

SAMPLE_FILE = "subscribers.csv"

FALLBACK = Subscriber(email="sample@example.org", name="Sam Sample", city="Toronto", region="ON", country="CA",
                      timezone="America/Toronto", language="en", tags=("supporter",))


def sample_file(settings: Settings) -> Path:
    return settings.path(settings.data_dir) / SAMPLE_FILE


def sample_subscribers(settings: Settings) -> list[Subscriber]:
    path = sample_file(settings)
    if not path.is_file():
        return [FALLBACK]
    with path.open("rb") as fh:
        # an empty tags cell means "not given" to an import; to a template it is "no tags"
        out = [s.replace(tags=s.tags or ()) for s in read_csv(fh, str(path), lambda _line: None)]
    return out or [FALLBACK]
