"""Global rate limits, shared by every worker on every host, kept in Redis.

Semantics: a limit "count/period" means **at most `count` sends in any window of length
`period`** — the strict reading, which is also what X (fixed 15-minute windows) and SMTP
providers (per-second rates) accept. From idle the whole `count` may go at once (a burst of
100 for 100/15m), then the account waits until earlier sends leave the window.

Implementation: a sliding window over B=30 buckets of width period/B, one Redis hash per
limit, all limits of an account checked and charged in ONE Lua script on the Redis server's
clock (`TIME`), so workers' clocks do not matter and no limit can be overshot. Counting whole
buckets is conservative: steady throughput is at least B/(B+1) ≈ 97% of the limit.
(GCRA with a burst of `count` was rejected: after its burst it refills at count/period, so a
window can see up to 2×count — enough to earn X 429s.)

Keys expire when their last bucket leaves the window, so nothing grows forever; losing them
only means limits start afresh (and a pause is found again by the next send it should have
stopped). Keys: `<prefix>:{<account>}:<count>/<period µs>`, `<prefix>:{<account>}:pause` and
`<prefix>:{<account>}:pause:why` (the braces keep one account's keys in one cluster slot).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, ParamSpec, Protocol, TypeVar

import redis as redis_lib

from ..errors import TransientError

__all__ = ["Pause", "Permit", "RateLimiter", "BUCKETS"]

BUCKETS = 30
P = ParamSpec("P")
T = TypeVar("T")
_SCRIPT = resources.files(__package__).joinpath("ratelimit.lua").read_text(encoding="utf-8")


class _LimitLike(Protocol):
    count: int
    period: Any  # timedelta


@dataclass(frozen=True)
class Permit:
    """granted: how many of the n asked for may be sent now (0..n).
    retry_after: seconds until at least one more could be granted (0 when all n were).
    remaining: how many more could be granted right now, after this grant.
    paused: nothing was granted because the account is paused (see RateLimiter.pause)."""

    granted: int
    retry_after: float
    remaining: int = 0
    paused: bool = False

    def __bool__(self) -> bool:
        return self.granted > 0


@dataclass(frozen=True)
class Pause:
    """An account every worker holds back until `until` (epoch seconds), and why."""

    account: str
    until: float
    why: str


class RateLimiter:
    def __init__(self, redis: redis_lib.Redis, key_prefix: str = "outreach:rl", buckets: int = BUCKETS) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.buckets = buckets
        self._script = redis.register_script(_SCRIPT)

    def acquire(self, account_key: str, limits: Iterable[_LimitLike], n: int = 1) -> Permit:
        """Take up to `n` permits under every limit at once; may grant fewer (even 0)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        limits = list(limits)
        keys = [self._pause_key(account_key)]
        args: list[Any] = ["acquire", n, self.buckets]
        for limit in limits:
            period_us = round(limit.period.total_seconds() * 1_000_000)
            if limit.count <= 0 or period_us <= 0:
                raise ValueError(f"invalid rate limit {limit}")
            keys.append(f"{self.key_prefix}:{{{account_key}}}:{limit.count}/{period_us}")
            args += [limit.count, period_us]
        granted, retry_us, remaining, *paused = self._run(keys, args)
        return Permit(int(granted), retry_us / 1_000_000, int(remaining), bool(paused and paused[0]))

    def available(self, account_key: str, limits: Iterable[_LimitLike]) -> Permit:
        """Look without taking: remaining = permits available now (for dashboards)."""
        return self.acquire(account_key, limits, 0)

    def pause(self, account_key: str, until_epoch: float, why: str = "") -> None:
        """Stop the account for every worker until `until_epoch` (e.g. X's reset time after a
        429), saying `why` to operators (`outreach status`). A later pause wins; an earlier
        one does not shorten it."""
        key = self._pause_key(account_key)
        self._run([key, key + ":why"], ["pause", round(until_epoch * 1_000_000), why])

    def resume(self, account_key: str) -> None:
        """Lift a pause now (operator action)."""
        key = self._pause_key(account_key)
        self._call(self.redis.delete, key, key + ":why")

    def why_paused(self, account_key: str) -> str:
        """Why the account is paused ('' when it is not, or nobody said)."""
        why = self._call(self.redis.get, self._pause_key(account_key) + ":why")
        return why.decode("utf-8", "replace") if isinstance(why, bytes) else (why or "")

    def pauses(self) -> list[Pause]:
        """Every account paused now, for every worker: until when, and why."""
        found = []
        pattern = f"{_glob_escape(self.key_prefix)}:{{*}}:pause"
        # scan_iter is lazy: Redis failing shows while iterating, so iterate inside _call
        for raw in self._call(lambda: list(self.redis.scan_iter(match=pattern, count=500))):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            until, why = self._call(self.redis.mget, [key, key + ":why"])
            if until is None:
                continue  # lifted or expired since the scan
            account = key[len(self.key_prefix) + 2:-len("}:pause")]
            text = why.decode("utf-8", "replace") if isinstance(why, bytes) else (why or "")
            found.append(Pause(account, int(until) / 1_000_000, text))
        return sorted(found, key=lambda p: p.account)

    def observe(self, account_key: str, remaining: int, reset_epoch: float) -> None:
        """Tighten from what the provider reported (SendResult.limit_hint): when it says
        nothing is left, pause until its reset."""
        if remaining <= 0 and reset_epoch > time.time():
            self.pause(account_key, reset_epoch)

    def reset(self, account_key: str) -> None:
        """Forget an account's state (its limits start afresh)."""
        pattern = f"{self.key_prefix}:{{{_glob_escape(account_key)}}}:*"
        keys = self._call(lambda: list(self.redis.scan_iter(match=pattern, count=500)))
        if keys:
            self._call(self.redis.delete, *keys)

    def _pause_key(self, account_key: str) -> str:
        return f"{self.key_prefix}:{{{account_key}}}:pause"

    def _run(self, keys: list[str], args: list[Any]) -> Any:
        return self._call(self._script, keys=keys, args=args)

    @staticmethod
    def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except redis_lib.RedisError as exc:
            # Without the limiter nothing may be sent: retry the batch later.
            raise TransientError(f"rate limiter unavailable (Redis): {exc}") from None


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
