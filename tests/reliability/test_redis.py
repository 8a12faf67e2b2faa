"""Redis (the broker and the rate limiter's state) lost or unreachable in the middle of a run."""
from __future__ import annotations

import time

from tests.reliability.harness import scale

N = scale(1000, 5000)
OUTAGE = scale(6, 30)  # seconds Redis is unreachable


def test_redis_restarted_with_its_data_lost_mid_run(stack):
    # given a run under way
    stack.configure()
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1)
    stack.supervise()
    stack.send_now()
    stack.wait_received(N // 3)
    # when Redis dies and comes back empty: the queued batches and the limiter's state are gone
    stack.redis.stop(keep_data=False)
    stack.redis.start()
    # then the rows of the lost batches are queued again once their lease runs out; batches
    # whose limiter call failed were given back; nothing is unknown, nobody gets two
    counts = stack.finish("Redis killed at a third of the run and restarted empty (queues and limiter state lost)",
                          "lease expiry requeues lost batches; bug 1 fix gives back batches whose limiter call failed")
    assert counts.sent == N and counts.unknown == 0


def test_redis_unreachable_for_a_while_then_back(stack):
    # given a run under way
    stack.configure()
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1)
    stack.supervise()
    stack.send_now()
    stack.wait_received(N // 3)
    # when Redis is unreachable (stopped, keeping its data) and comes back later
    stack.redis.stop(keep_data=True)
    time.sleep(OUTAGE)
    stack.redis.start()
    # then what was claimed during the outage went back unsent (the limiter could not be asked)
    # instead of waiting for its lease to run out as `unknown`: every recipient gets one
    counts = stack.finish(f"Redis unreachable for {OUTAGE} s at a third of the run, then back with its data",
                          "bug 1 fix: a batch whose limiter call fails is given back, not left to become unknown")
    assert counts.sent == N and counts.unknown == 0


def test_the_rate_limiters_redis_unreachable_while_the_broker_works(stack):
    # given the limiter's state in a Redis of its own (OUTREACH_REDIS_URL), apart from the broker
    limiter = stack.extra_redis("limiter")
    stack.project.env["OUTREACH_REDIS_URL"] = limiter.url
    stack.configure()
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1)
    stack.supervise()
    stack.send_now()
    stack.wait_received(N // 3)
    # when that Redis is unreachable for a while: batches keep arriving and every one of them
    # fails to ask the limiter
    limiter.stop(keep_data=True)
    time.sleep(OUTAGE)
    limiter.start()
    # then each such batch was given back unsent, attempt not counted, and went out later
    counts = stack.finish(f"the rate limiter's Redis (apart from the broker) unreachable for {OUTAGE} s",
                          "bug 1 fix: before it, every batch claimed during the outage became unknown")
    assert counts.sent == N and counts.unknown == 0
    assert max(stack.attempts()) <= 1 + 0  # giving back does not count an attempt
