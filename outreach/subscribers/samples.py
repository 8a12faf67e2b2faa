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
                      timezone="America/Toronto", language="en", tags=("supporter",), latitude=43.70643,
                      longitude=-79.39864)


def sample_file(settings: Settings) -> Path:
    return settings.path(settings.data_dir) / SAMPLE_FILE


def sample_subscribers(settings: Settings, place: bool = True) -> list[Subscriber]:
    """The sample subscribers, placed as an import would place them (`place`: the catalog of a
    running worker skips it, so no worker loads the GeoNames data for its checks)."""
    path = sample_file(settings)
    if not path.is_file():
        return [FALLBACK]
    with path.open("rb") as fh:
        # an empty tags cell means "not given" to an import; to a template it is "no tags"
        rows = read_csv(fh, str(path), lambda _line: None, note=(lambda _line: None) if place else None)
        out = [s.replace(tags=s.tags or ()) for s in rows]
    return out or [FALLBACK]
