"""RateLimiter against a real Redis (DB 13); every test uses its own random key prefix."""
from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from datetime import timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from outreach.delivery.ratelimit import RateLimiter
from outreach.errors import TransientError
from outreach.settings import Limit
from tests.conftest import delete_keys

REDIS_URL = os.environ.get("OUTREACH_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client):
    prefix = f"test-outreach-rl-{uuid.uuid4().hex}"
    yield prefix
    delete_keys(redis_client, prefix)


@pytest.fixture
def limiter(redis_client, prefix):
    return RateLimiter(redis_client, prefix)


def per(count: int, seconds: float) -> Limit:
    return Limit(count=count, period=timedelta(seconds=seconds))


def test_grants_exactly_up_to_the_limit(limiter):
    # given 10 per hour
    limits = [per(10, 3600)]
    # when batches of 4 are asked for
    grants = [limiter.acquire("acct", limits, 4) for _ in range(4)]
    # then 4 + 4 + 2, then nothing, with a wait of about the period
    assert [g.granted for g in grants] == [4, 4, 2, 0]
    assert grants[0].retry_after == 0 and grants[0].remaining == 6
    assert 3500 < grants[3].retry_after <= 3600 * 31 / 30 + 1
    assert not grants[3]


def test_single_permits_stop_at_the_limit(limiter):
    limits = [per(7, 60)]
    granted = sum(limiter.acquire("acct", limits).granted for _ in range(20))
    assert granted == 7


def test_accounts_are_independent(limiter):
    limits = [per(2, 60)]
    assert limiter.acquire("a", limits, 5).granted == 2
    assert limiter.acquire("b", limits, 5).granted == 2


def test_every_limit_is_enforced_at_once(limiter):
    # given 5 per second AND 8 per hour for one account
    limits = [per(5, 1), per(8, 3600)]
    # when asking for 10: the per-second limit binds
    first = limiter.acquire("acct", limits, 10)
    assert first.granted == 5 and 0 < first.retry_after <= 1.04
    # and after sleeping the advised time, the hourly limit binds at 8 in total
    time.sleep(first.retry_after)
    second = limiter.acquire("acct", limits, 10)
    assert second.granted == 3 and second.retry_after > 3000
    assert limiter.acquire("acct", limits, 1).granted == 0


def test_retry_after_is_when_a_permit_frees(limiter):
    limits = [per(3, 0.5)]
    assert limiter.acquire("acct", limits, 3).granted == 3
    refused = limiter.acquire("acct", limits)
    assert refused.granted == 0
    time.sleep(refused.retry_after + 0.005)
    assert limiter.acquire("acct", limits).granted == 1


def test_no_window_ever_holds_more_than_count(limiter):
    # given 20 per 0.5 s, asked greedily for 1.6 s
    limits = [per(20, 0.5)]
    stamps: list[float] = []
    end = time.monotonic() + 1.6
    while time.monotonic() < end:
        permit = limiter.acquire("acct", limits, 3)
        now = time.monotonic()
        stamps += [now] * permit.granted
        if not permit:
            time.sleep(min(permit.retry_after, 0.05))
    # then any 0.5 s window (less some client-side timing jitter) held at most 20
    assert max(sum(1 for t in stamps if s <= t < s + 0.45) for s in stamps) <= 20
    assert len(stamps) >= 60  # and the limit was used: bursts at ~0, ~0.52, ~1.03, ~1.55 s


def test_pause_holds_every_caller_until_it_ends(limiter):
    limits = [per(100, 1)]
    limiter.pause("acct", time.time() + 0.6)
    refused = limiter.acquire("acct", limits, 5)
    assert refused.granted == 0 and 0.4 < refused.retry_after <= 0.6
    # a shorter pause does not shorten it
    limiter.pause("acct", time.time() + 0.1)
    assert limiter.acquire("acct", limits).granted == 0
    time.sleep(refused.retry_after + 0.01)
    assert limiter.acquire("acct", limits, 5).granted == 5


def test_pause_applies_with_no_limits_and_resume_lifts_it(limiter):
    limiter.pause("acct", time.time() + 60)
    assert limiter.acquire("acct", [], 3).granted == 0
    limiter.resume("acct")
    assert limiter.acquire("acct", [], 3).granted == 3


def test_provider_saying_zero_remaining_pauses_until_its_reset(limiter):
    limiter.observe("acct", remaining=5, reset_epoch=time.time() + 60)
    assert limiter.acquire("acct", [per(10, 60)]).granted == 1
    limiter.observe("acct", remaining=0, reset_epoch=time.time() + 60)
    assert 55 < limiter.acquire("acct", [per(10, 60)]).retry_after <= 60


def test_every_key_expires(limiter, redis_client, prefix):
    limiter.acquire("acct", [per(14, 1), per(50000, 86400)], 3)
    limiter.pause("acct", time.time() + 30, "X refused the credentials")
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    assert len(keys) == 4  # two limits, the pause and why
    assert all(redis_client.pttl(k) > 0 for k in keys)


def test_a_pause_says_why_to_every_reader_and_the_later_pause_keeps_its_reason(limiter):
    # given an account paused for a minute because its credentials were refused
    until = time.time() + 60
    limiter.pause("x:main", until, "X refused the credentials (401)")
    # when a shorter pause with another reason comes in, and someone asks for permits
    limiter.pause("x:main", time.time() + 5, "rate limited")
    permit = limiter.acquire("x:main", [per(100, 900)], 1)
    # then nothing is granted, the permit says it is a pause, and the first reason stands
    assert permit.granted == 0 and permit.paused and permit.retry_after > 50
    (pause,) = limiter.pauses()
    assert pause.account == "x:main" and pause.why == "X refused the credentials (401)"
    assert abs(pause.until - until) < 1
    # and a limit that is merely full is not a pause
    limiter.acquire("email:news", [per(1, 60)], 1)
    assert not limiter.acquire("email:news", [per(1, 60)], 1).paused
    # and lifting the pause forgets the reason too
    limiter.resume("x:main")
    assert limiter.pauses() == []


def test_available_looks_without_taking(limiter):
    limits = [per(5, 60)]
    limiter.acquire("acct", limits, 2)
    assert limiter.available("acct", limits).remaining == 3
    assert limiter.available("acct", limits).remaining == 3


def test_redis_down_is_a_transient_error():
    client = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(client, "x")
    with pytest.raises(TransientError):
        limiter.acquire("acct", [per(1, 1)])


# --- several processes share one limit ---------------------------------------------------------

RATE = 50        # per second
DURATION = 3.0   # seconds each process hammers


def _hammer(prefix: str, start_at: float, queue) -> None:
    limiter = RateLimiter(redis.Redis.from_url(REDIS_URL), prefix)
    limits = [per(RATE, 1)]
    stamps = []
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < start_at + DURATION:
        before = time.time()
        permit = limiter.acquire("shared", limits, 1)
        if permit.granted:
            stamps.append((before, time.time()))  # the grant happened somewhere in between
        else:
            time.sleep(min(permit.retry_after, start_at + DURATION - time.time()) if permit.retry_after else 0.001)
    queue.put(stamps)


def test_three_processes_share_one_global_limit(prefix):
    # given three OS processes asking for permits on the same account as fast as allowed
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_hammer, args=(prefix, start_at, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=DURATION + 10) for _ in procs]
    for p in procs:
        p.join(5)
    stamps = sorted(t for r in results for t in r)
    # then together they got the limit's rate (a per-process limiter would give 3x), ±10%
    assert abs(len(stamps) - RATE * DURATION) <= 0.1 * RATE * DURATION, len(stamps)
    assert all(results), "every process got some permits"
    # and no one-second window held more than the limit: counted over grants known to lie
    # inside the window (asked after it opened, answered before it closed), so a process
    # that the scheduler paused after its grant cannot make a window look fuller than it was
    fullest = max(sum(1 for b, a in stamps if start <= b and a < start + 1.0) for start, _ in stamps)
    assert fullest <= RATE, fullest
