"""Counters of the send path, kept where every web process can read them: Redis.

Workers run on many hosts and Prometheus scrapes the web process, so a worker's counts
cannot stay in its own memory (prometheus_client's multiprocess mode shares a directory,
not a network). Each process adds to an in-memory `Tally` as it sends (a few dictionary
additions per message, no I/O), and `flush` writes the whole tally once per batch: one
pipelined round trip to Redis, HINCRBY into one hash. /metrics (web/metrics.py) reads the
hash and serves it as Prometheus counters and a histogram.

A leaf module (it imports nothing of ours) so that channels/ may count without importing
the store or Redis. Losing the hash resets the counters, which Prometheus' rate() treats as
a counter reset; losing a flush (Redis down) loses that batch's counts, never a message.

    deliveries_total      {channel, outcome}   sent, retried, failed, skipped, unknown, deferred, ...
    send_seconds          {channel}            the provider round trip, as a histogram
    provider_errors_total {channel, error, code}
    ratelimit_waits_total {account}            deliveries held back by the shared limiter
    ratelimit_pauses_total{account}            pauses of an account (provider limit, bad setting)
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

KEY = "outreach:metrics"
SEP = "\x1f"
# upper bounds of the round-trip buckets, seconds (SMTP on a LAN: ms; a provider far away: s)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MAX_SERIES = 5000  # a bound on what one process keeps between flushes, whatever the labels
_SEND_KEYS: dict[tuple[str, int], tuple[str, str, str]] = {}


def field(name: str, **labels: str) -> str:
    """The hash field of one series: name, then label=value pairs in a fixed order."""
    return SEP.join([name, *(f"{k}={_clean(v)}" for k, v in sorted(labels.items()))])


def parse_field(text: str) -> tuple[str, dict[str, str]]:
    name, *pairs = text.split(SEP)
    labels = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    return name, labels


def _clean(value: str) -> str:
    return str(value).replace(SEP, " ").replace("=", ":")[:120]


class Tally:
    """What this process counted since its last flush (thread-safe: a pool may use threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._sums: dict[str, float] = {}

    def _add(self, key: str, n: float = 1, sums: bool = False) -> None:
        with self._lock:
            target = self._sums if sums else self._counts
            if key in target or len(self._counts) + len(self._sums) < _MAX_SERIES:
                target[key] = target.get(key, 0) + n

    def send(self, channel: str, seconds: float, error: BaseException | None = None) -> None:
        """One message's round trip, and the error it met, if any. On the send path: the
        series' names are made once per channel and bucket, and the lock taken once."""
        bucket = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
        keys = _SEND_KEYS.get((channel, bucket))
        if keys is None:
            le = repr(BUCKETS[bucket]) if bucket < len(BUCKETS) else "+Inf"
            keys = _SEND_KEYS[(channel, bucket)] = (field("send_seconds_bucket", channel=channel, le=le),
                                                    field("send_seconds_count", channel=channel),
                                                    field("send_seconds_sum", channel=channel))
        bucket_key, count_key, sum_key = keys
        with self._lock:
            counts, sums = self._counts, self._sums
            if bucket_key in counts or len(counts) + len(sums) < _MAX_SERIES - 3:
                counts[bucket_key] = counts.get(bucket_key, 0) + 1
                counts[count_key] = counts.get(count_key, 0) + 1
                sums[sum_key] = sums.get(sum_key, 0.0) + seconds
        if error is not None:
            self._add(field("provider_errors_total", channel=channel, error=type(error).__name__,
                            code=error_code(error)))

    def outcomes(self, channel: str, counts: Mapping[str, int]) -> None:
        for outcome, n in counts.items():
            if n:
                self._add(field("deliveries_total", channel=channel, outcome=outcome), n)

    def wait(self, account: str, n: int) -> None:
        if n > 0:
            self._add(field("ratelimit_waits_total", account=account), n)

    def pause(self, account: str) -> None:
        self._add(field("ratelimit_pauses_total", account=account))

    def take(self) -> tuple[dict[str, int], dict[str, float]]:
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = {}, {}
        return {k: int(v) for k, v in counts.items()}, sums

    def give_back(self, counts: Mapping[str, int], sums: Mapping[str, float]) -> None:
        """A flush failed: keep the counts for the next one."""
        with self._lock:
            for target, more in ((self._counts, counts), (self._sums, sums)):
                for k, v in more.items():
                    target[k] = target.get(k, 0) + v


def error_code(error: BaseException) -> str:
    """The provider's code for an error when it gave one (SMTP reply code, HTTP status)."""
    context: Mapping[str, Any] = getattr(error, "context", None) or {}
    for key in ("smtp_code", "code", "http_status", "status"):
        value = context.get(key)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return str(value)
    return ""


TALLY = Tally()


def flush(redis: Any, tally: Tally = TALLY, key: str | None = None) -> bool:
    """Write what `tally` counted to Redis in one round trip; False (counts kept) when Redis
    does not answer. Never raises: metrics must not cost a message."""
    key = key or KEY  # read now: tests give each run a key of its own
    counts, sums = tally.take()
    if not counts and not sums:
        return True
    try:
        with redis.pipeline(transaction=False) as pipe:
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
            for name, x in sums.items():
                pipe.hincrbyfloat(key, name, x)
            pipe.execute()
        return True
    except Exception:
        tally.give_back(counts, sums)
        return False


def read(redis: Any, key: str | None = None) -> Iterable[tuple[str, dict[str, str], float]]:
    """Every series counted so far: (name, labels, value)."""
    for raw_name, raw_value in (redis.hgetall(key or KEY) or {}).items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        value = float(raw_value)
        metric, labels = parse_field(name)
        yield metric, labels, value
