"""The campaigns a running process sends from: those that validate, re-read only when a file
under config/ or templates/ changed.

Looking for a change is one walk of those two directories (names, sizes and modification
times, no file is read), made at most once every `min_interval` seconds however often the
campaigns are asked for, so a worker's batches and the beat's ticks do not stat the tree
each time.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import Problem, ValidationFailed
from ..settings import Settings
from .audience import Filter, segments_for
from .campaigns import Campaign, campaign_files

log = logging.getLogger(__name__)
Signature = tuple[tuple[str, int, int], ...]


def tree_signature(roots: list[Path]) -> Signature:
    """(path, mtime, size) of every file under `roots`, in a stable order."""
    stamp: list[tuple[str, int, int]] = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                try:
                    st = os.stat(os.path.join(folder, name))
                except OSError:  # removed while we looked: the next look sees it gone
                    continue
                stamp.append((os.path.join(folder, name), st.st_mtime_ns, st.st_size))
    return tuple(stamp)


class Catalog:
    def __init__(self, settings: Settings, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.min_interval = min_interval
        self.generation = 0  # bumped on every reload: what was built from the old files is stale
        self._clock = clock
        self._looked_at: float | None = None
        self._signature: Signature | None = None
        self._campaigns: dict[str, Campaign] = {}
        self._segments: dict[str, Filter] = {}
        self._rejected: list[Problem] = []

    def campaigns(self) -> dict[str, Campaign]:
        """The campaigns that validate. A campaign with any problem is left out (and logged):
        nothing is sent from a campaign that does not validate."""
        self._refresh()
        return self._campaigns

    def segments(self) -> dict[str, Filter]:
        """The segments the current campaigns were validated against (read with them)."""
        self._refresh()
        return self._segments

    def rejected(self) -> list[Problem]:
        """Why the files left out were left out (what `outreach status` shows)."""
        self._refresh()
        return self._rejected

    def _refresh(self) -> None:
        now = self._clock()
        if self._looked_at is not None and now - self._looked_at < self.min_interval:
            return
        self._looked_at = now
        s = self.settings
        signature = tree_signature([s.path(s.data_dir), s.path(s.templates_dir)])
        if signature == self._signature:
            return
        from .validation import validate

        rejected: list[Problem] = []
        try:
            segments = segments_for(s)
        except ValidationFailed as exc:
            # a broken segments file leaves out the campaigns that use a segment, not all of them
            segments = {}
            rejected.extend(exc.problems)
        valid: dict[str, Campaign] = {}
        for path in campaign_files(s):
            report = validate(s, [path], segments=segments, place_samples=False)
            rejected.extend(report.problems)
            if report.ok:
                valid.update(report.campaigns.campaigns)
        for problem in rejected:
            log.error("campaign not scheduled: %s", problem)
        self._campaigns, self._segments, self._signature = valid, segments, signature
        self._rejected = list(dict.fromkeys(rejected))
        self.generation += 1
