"""Send rates, ETAs and the small chart: how each open run's `sent` count moves over time.

The ledger says how many were sent, not when at a glance (counting by `sent_at` would read
every sent row of a big run). So whoever looks (a dashboard page, a Prometheus scrape)
leaves a sample in Redis, at most one every SAMPLE_EVERY seconds per run across every web
process: a short list per run of (time, sent). The rate is the change over the last minute,
the chart the change between samples over the last ten. Nothing is lost with the keys but
the chart's past; they expire an hour after the last look.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis as redis_lib

from ...models import DeliveryState, RunStatus
from ...observe import RunView, Snapshot

log = logging.getLogger(__name__)

SAMPLE_EVERY = 4.0      # seconds between samples of one run
KEEP = 160              # samples kept per run: ten minutes at one per 4 s
RATE_OVER = 60.0        # seconds the rate is measured over
CHART_OVER = 600.0      # seconds the chart shows
EXPIRE = 3600           # seconds after the last look
_OPEN = (RunStatus.PLANNING, RunStatus.PLANNED, RunStatus.PAUSED)


@dataclass(frozen=True)
class Pace:
    """How fast a run goes: per second over the last minute, when the rest would be sent at
    that pace, and the chart's points (seconds ago, per second), oldest first."""

    rate: float | None
    eta_seconds: float | None
    points: tuple[tuple[float, float], ...]


NO_PACE = Pace(None, None, ())


class Progress:
    def __init__(self, redis: redis_lib.Redis, prefix: str = "outreach:progress") -> None:
        self.redis, self.prefix = redis, prefix

    def _key(self, run_id: int) -> str:
        return f"{self.prefix}:{run_id}"

    def look(self, snapshot: Snapshot) -> dict[int, Pace]:
        """Record this snapshot's counts of the open runs and return each one's pace. Redis
        failing costs the rates, never the page."""
        runs = [r for r in snapshot.runs if r.status in _OPEN]
        if not runs:
            return {}
        now = snapshot.taken_at.timestamp()
        try:
            samples = self._record(runs, now)
        except redis_lib.RedisError as exc:
            log.warning("send rates unavailable: %s", exc)
            return {}
        return {run.id: pace(samples.get(run.id, []), run, now) for run in runs}

    def _record(self, runs: Sequence[RunView], now: float) -> dict[int, list[tuple[float, int]]]:
        with self.redis.pipeline(transaction=False) as pipe:
            for run in runs:
                # one sampler per SAMPLE_EVERY for each run, whichever web process looks first
                pipe.set(self._key(run.id) + ":lock", 1, nx=True, px=int(SAMPLE_EVERY * 1000))
            won = pipe.execute()
            for run, first in zip(runs, won, strict=True):
                key = self._key(run.id)
                if first:
                    pipe.lpush(key, json.dumps([round(now, 3), run.counts[DeliveryState.SENT]]))
                    pipe.ltrim(key, 0, KEEP - 1)
                    pipe.expire(key, EXPIRE)
                pipe.lrange(key, 0, KEEP - 1)
            replies = pipe.execute()
        lists = [r for r in replies if isinstance(r, list)]
        return {run.id: _parse(raw) for run, raw in zip(runs, lists, strict=True)}


def _parse(raw: Iterable[bytes | str]) -> list[tuple[float, int]]:
    found = []
    for item in raw:
        try:
            t, sent = json.loads(item)
            found.append((float(t), int(sent)))
        except (ValueError, TypeError):
            continue
    return sorted(found)


def pace(samples: list[tuple[float, int]], run: RunView, now: float) -> Pace:
    """The pace from `samples` (time, sent), oldest first, and the run's counts now."""
    sent = run.counts[DeliveryState.SENT]
    samples = [s for s in samples if s[0] <= now] + [(now, sent)]
    recent = [s for s in samples if now - s[0] <= RATE_OVER + SAMPLE_EVERY]
    rate = None
    if len(recent) >= 2 and recent[-1][0] - recent[0][0] >= SAMPLE_EVERY / 2:
        rate = max(recent[-1][1] - recent[0][1], 0) / (recent[-1][0] - recent[0][0])
    eta = None
    if rate and run.status != RunStatus.PAUSED:
        eta = run.remaining / rate
    charted = [s for s in samples if now - s[0] <= CHART_OVER]
    points = tuple((round(now - b[0], 1), max(b[1] - a[1], 0) / (b[0] - a[0]))
                   for a, b in zip(charted, charted[1:], strict=False) if b[0] - a[0] >= 1.0)
    return Pace(rate, eta, points)


def chart(points: Sequence[tuple[float, float]], width: int = 240, height: int = 60) -> str:
    """The `points` attribute of an SVG polyline over CHART_OVER seconds (now at the right)."""
    if not points:
        return ""
    top = max(max(r for _, r in points), 1e-9)
    return " ".join(f"{width * (1 - ago / CHART_OVER):.1f},{height - 2 - (height - 4) * r / top:.1f}"
                    for ago, r in points)
