"""One look at the whole system: `take` gathers it, `Snapshot` holds it, `to_json` serves scripts.

    runs      progress of every open run and the newest others (or of one run / one campaign)
    backlog   active deliveries by channel and state; the oldest due one (scheduler lag)
    queues    messages waiting in each Celery queue, and those workers hold unacknowledged
    workers   each worker process seen, and how long ago
    accounts  per sending account: its limits, permits left now, paused until when and why
    errors    the newest error events grouped by reason
    not_scheduled  what the scheduler's last tick left out (campaigns that do not validate)
    actions   what supporters recorded ("I sent it"), per campaign, action and target

The database part is a handful of indexed aggregate queries (store/overview.py); the Redis
part a few pipelined commands. Either side failing is reported in `problems` and the rest is
still shown: an operator looks most when something is down.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis as redis_lib
import sqlalchemy as sa

from ..channels import CHANNELS
from ..delivery.ratelimit import RateLimiter
from ..errors import TransientError
from ..models import FINAL_STATES, DeliveryState
from ..settings import Settings
from ..store import overview, scheduler_state
from ..store.actions import ActionCount, action_counts
from ..store.feedback import Rates, account_rates, run_rates
from ..store.overview import Backlog, ErrorGroup
from .unscheduled import NotScheduled, recorded
from .workers import WorkerSeen, workers_seen

ERRORS_SINCE = timedelta(hours=24)
RATES_SINCE = timedelta(days=30)
# kombu's Redis transport keeps a queue's messages of priority p under "<queue>\x06\x16<p>"
# (p in its default steps; the bare name holds the default priority)
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@dataclass(frozen=True)
class RunView:
    id: int
    campaign: str
    step: str
    occurrence: datetime
    status: str
    reason: str | None        # why an operator paused or cancelled it
    note: str | None
    created_at: datetime
    finished_at: datetime | None
    planned_count: int
    counts: dict[str, int]    # deliveries by state, every state present

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return sum(n for state, n in self.counts.items() if state not in FINAL_STATES)


@dataclass(frozen=True)
class QueueDepth:
    name: str
    depth: int


@dataclass(frozen=True)
class AccountState:
    channel: str
    account: str
    key: str                        # the rate limiter's key (channel:account)
    limits: tuple[str, ...]         # "14/1s", ...
    permits_left: int | None        # sends allowed right now; None when Redis did not answer
    paused_until: datetime | None
    why: str                        # why it is paused ('' when it is not)


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    runs: list[RunView]
    backlog: list[Backlog]
    queues: list[QueueDepth]
    unacked: int | None             # tasks workers took and have not acknowledged yet
    workers: list[WorkerSeen]
    accounts: list[AccountState]
    errors: list[ErrorGroup]
    last_tick: datetime | None      # up to when the beat has created runs
    problems: list[str] = field(default_factory=list)  # what could not be read, and why
    # bounces and complaints against what was sent: per run shown, and per sending account
    # over RATES_SINCE (what mailbox providers judge a sender by)
    rates: dict[int, Rates] = field(default_factory=dict)
    account_rates: dict[str, Rates] = field(default_factory=dict)
    # the circuit breaker's settings: min_sent, hard_bounce_rate, complaint_rate
    breaker: dict[str, float] = field(default_factory=dict)
    # what supporters recorded ("I sent it"), per campaign, action and target (store/actions.py)
    actions: list[ActionCount] = field(default_factory=list)
    # what the scheduler's last tick left out; None when no tick recorded it lately
    not_scheduled: NotScheduled | None = None

    def run(self, run_id: int) -> RunView | None:
        return next((r for r in self.runs if r.id == run_id), None)

    def sent_rates(self, earlier: Snapshot) -> dict[int, float]:
        """Messages sent per second by each run between `earlier` and this snapshot."""
        seconds = (self.taken_at - earlier.taken_at).total_seconds()
        if seconds <= 0:
            return {}
        before = {r.id: r.counts[DeliveryState.SENT] for r in earlier.runs}
        return {r.id: max(r.counts[DeliveryState.SENT] - before[r.id], 0) / seconds
                for r in self.runs if r.id in before}

    def scheduler_lag(self) -> float:
        """Seconds since the oldest pending delivery came due (0 when none is late)."""
        due = [b.oldest_due for b in self.backlog if b.oldest_due is not None]
        return max((self.taken_at - min(due)).total_seconds(), 0.0) if due else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for view, run in zip(data["runs"], self.runs, strict=True):
            view["total"], view["remaining"] = run.total, run.remaining
        data["scheduler_lag"] = self.scheduler_lag()
        for key, rates in [*(("rates", r) for r in self.rates.items()),
                           *(("account_rates", a) for a in self.account_rates.items())]:
            data[key][rates[0]].update(hard_bounce_rate=rates[1].hard_bounce_rate,
                                       complaint_rate=rates[1].complaint_rate)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_value, sort_keys=True)


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def take(settings: Settings, engine: sa.Engine, redis: redis_lib.Redis, *, broker: redis_lib.Redis | None = None,
         limiter: RateLimiter | None = None, run_id: int | None = None, campaign: str | None = None,
         limit: int = 20, now: datetime | None = None) -> Snapshot:
    """Look at everything once. `broker`: the Redis of the Celery queues when it is not
    `redis` (OUTREACH_BROKER_URL); `limiter`: the workers' rate limiter when it is not the
    default one on `redis`. `run_id` or `campaign` narrow the runs (and the errors) shown;
    one run is always counted afresh."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    rows = overview.runs_to_show(engine, limit=limit, run_id=run_id, campaign=campaign)
    counts = overview.progress(engine, rows, fresh=run_id is not None)
    runs = [RunView(r.id, r.campaign, r.step, r.occurrence, r.status, r.reason, r.note, r.created_at, r.finished_at,
                    r.planned_count, counts[r.id]) for r in rows]
    narrowed = [r.id for r in rows] if run_id is not None or campaign is not None else None
    errors = overview.recent_errors(engine, now - ERRORS_SINCE, run_ids=narrowed)
    backlog = overview.backlog(engine, sorted(CHANNELS))
    last_tick = scheduler_state.get_cursor(engine, "tick")
    queues, unacked = _queues(broker or redis, problems)
    try:
        workers = workers_seen(redis, now.timestamp())
        left_out = recorded(redis, engine)
    except redis_lib.RedisError as exc:
        workers, left_out = [], None
        problems.append(f"workers: Redis did not answer ({exc})")
    accounts = _accounts(settings, limiter or RateLimiter(redis), problems)
    rates = run_rates(engine, [r.id for r in runs], sent={r.id: r.counts[DeliveryState.SENT] for r in runs})
    per_account = account_rates(engine, now - RATES_SINCE)
    actions = action_counts(engine, campaign) if run_id is None else []
    return Snapshot(now, runs, backlog, queues, unacked, workers, accounts, errors, last_tick, problems,
                    rates=rates, account_rates=per_account, breaker=settings.bounces.breaker.model_dump(),
                    actions=actions, not_scheduled=left_out)


def _queues(broker: redis_lib.Redis, problems: list[str]) -> tuple[list[QueueDepth], int | None]:
    from ..worker.app import QUEUES

    try:
        with broker.pipeline(transaction=False) as pipe:
            for name in QUEUES:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(name + suffix)
            pipe.hlen("unacked")
            lengths = pipe.execute()
    except redis_lib.RedisError as exc:
        problems.append(f"queues: the broker did not answer ({exc})")
        return [], None
    n = len(_PRIORITY_SUFFIXES)
    depths = [QueueDepth(name, sum(int(x) for x in lengths[i * n:(i + 1) * n])) for i, name in enumerate(QUEUES)]
    return depths, int(lengths[-1])


def _accounts(settings: Settings, limiter: RateLimiter, problems: list[str]) -> list[AccountState]:
    """Every configured account of every channel, with what the shared limiter says of it."""
    try:
        pauses = {p.account: p for p in limiter.pauses()}
    except TransientError as exc:
        problems.append(f"rate limits: {exc}")
        pauses = None
    found = []
    for name, cls in sorted(CHANNELS.items()):
        section = getattr(settings, name, None)
        for account in getattr(section, "accounts", {}).values():
            key = cls.limit_key_of(account)
            limits = cls.limits_of(account)
            left: int | None = None
            if pauses is not None and limits:
                try:
                    left = limiter.available(key, limits).remaining
                except TransientError:
                    left = None
            pause = (pauses or {}).get(key)
            until = datetime.fromtimestamp(pause.until, UTC) if pause else None
            found.append(AccountState(name, account.name or key, key, tuple(str(limit) for limit in limits),
                                      0 if pause else left, until, pause.why if pause else ""))
    return found
