"""Workers seen, and when last: each worker process leaves a heartbeat in Redis as it works.

A sorted set (member: the worker's id, `host:pid`; score: when it was last seen, epoch
seconds) and one small JSON value per worker (its host, pid and queues). Celery's own
`inspect ping` broadcasts and waits a second for answers, and says nothing of a worker that
died; this is one ZRANGE, and a dead worker shows how long ago it was last seen until it is
forgotten after FORGET_AFTER. Losing the keys loses nothing: the next batch writes them again.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

KEY = "outreach:workers"
FORGET_AFTER = 24 * 3600.0   # seconds: a worker not seen for this long is dropped from the list
BEAT_EVERY = 5.0             # seconds: a busy process writes at most this often

_last: dict[str, float] = {}


@dataclass(frozen=True)
class WorkerSeen:
    worker: str          # host:pid, as `claimed_by` in the ledger says it
    host: str
    pid: int
    queues: tuple[str, ...]
    last_seen: float     # epoch seconds
    age: float           # seconds since, when the snapshot was taken


def heartbeat(redis: redis_lib.Redis, worker: str, queues: Sequence[str], *, force: bool = False,
              now: float | None = None) -> bool:
    """Record that `worker` is alive (at most every BEAT_EVERY seconds unless `force`); True
    when written. Redis failing is not the worker's problem: it says nothing and goes on."""
    now = time.time() if now is None else now
    if not force and now - _last.get(worker, 0.0) < BEAT_EVERY:
        return False
    host, _, pid = worker.rpartition(":")
    info = json.dumps({"host": host, "pid": int(pid) if pid.isdigit() else 0, "queues": list(queues)})
    try:
        with redis.pipeline(transaction=False) as pipe:
            pipe.zadd(KEY, {worker: now})
            pipe.set(f"{KEY}:{worker}", info, ex=int(FORGET_AFTER))
            pipe.zremrangebyscore(KEY, "-inf", now - FORGET_AFTER)
            pipe.execute()
    except redis_lib.RedisError:
        return False
    _last[worker] = now
    return True


def workers_seen(redis: redis_lib.Redis, now: float | None = None) -> list[WorkerSeen]:
    """Every worker seen in the last FORGET_AFTER seconds, the most recently seen first."""
    now = time.time() if now is None else now
    members: list[tuple[bytes | str, float]] = list(
        redis.zrangebyscore(KEY, now - FORGET_AFTER, "+inf", withscores=True))  # type: ignore[arg-type]
    if not members:
        return []
    names = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in members]
    infos: list[Any] = list(redis.mget([f"{KEY}:{name}" for name in names]))
    found = []
    for name, (_, score), raw in zip(names, members, infos, strict=True):
        try:
            info = json.loads(raw) if raw else {}
        except ValueError:
            info = {}
        host = name.rpartition(":")[0]
        found.append(WorkerSeen(name, str(info.get("host", host)), int(info.get("pid", 0) or 0),
                                tuple(info.get("queues", ())), float(score), max(now - float(score), 0.0)))
    return sorted(found, key=lambda w: w.age)
