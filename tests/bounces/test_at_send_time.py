"""A hard bounce during the SMTP transaction (550 5.1.1 at RCPT) is recorded like one that
comes back later: suppressed, the subscriber `bounced`, counted in the run's rate, and the
circuit breaker pauses a run whose refusals pass its threshold."""
from __future__ import annotations

import secrets

import pytest
import redis as redis_lib

from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.sender import send_batch
from outreach.store import get_run, get_subscriber, is_suppressed, run_progress
from outreach.store.feedback import feedback_of, run_rates
from tests.channels.conftest import SmtpSink, _start
from tests.conftest import delete_keys
from tests.web.conftest import REDIS_TEST_URL, person, write_project

from .conftest import BOUNCES, TWO_STEPS, World

PEOPLE = [f"p{i}@example.org" for i in range(6)]


@pytest.fixture
def scripted(tmp_path, db_url, engine):
    redis_prefix = f"outreach-test:{secrets.token_hex(4)}"
    sink = SmtpSink()
    controller = _start(sink)
    env = {"OUTREACH_SECRET_KEY": "bounce-secret", "OUTREACH_DATABASE_URL": db_url,
           "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    project = write_project(tmp_path, env, smtp_port=controller.port)
    project.write("config/campaigns/news.yaml", TWO_STEPS)
    config = project.root / "config" / "outreach.yaml"
    config.write_text(config.read_text() + BOUNCES)
    redis = redis_lib.Redis.from_url(REDIS_TEST_URL)
    rt = Runtime(project.settings(), engine=engine, redis=redis)
    rt.__dict__["limiter"] = RateLimiter(redis, key_prefix=f"{redis_prefix}:rl")
    yield World(rt, None, project, env), sink
    from outreach.channels import close_shared
    close_shared()
    delete_keys(redis, redis_prefix)
    redis.close()
    controller.stop()


def test_refusals_at_rcpt_are_hard_bounces_and_trip_the_breaker(scripted):
    world, sink = scripted
    for address in PEOPLE:
        person(world.engine, address)
    for address in PEOPLE[:2]:
        sink.rcpt_replies[address] = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    run = world.plan("letter")
    ids = world.delivery_ids(run)
    # when the first four are sent and the server refuses two of them at RCPT
    report = send_batch(world.rt, ids[:4])
    assert (report.sent, report.failed) == (2, 2)
    # then both are suppressed and bounced, with the server's code
    for address in PEOPLE[:2]:
        assert is_suppressed(world.engine, address)
        assert get_subscriber(world.engine, address).status == "bounced"
        (row,) = feedback_of(world.engine, address)
        assert (row.source, row.kind, row.code, row.run_id) == ("smtp", "hard_bounce", "550", run)
    # and the run's rate counts them against what went out: 2 of 4, 50%: the breaker pauses it
    rates = run_rates(world.engine, [run])[run]
    assert (rates.sent, rates.hard_bounces) == (4, 2)
    row = get_run(world.engine, run)
    assert row.status == "paused" and "hard bounces reached 50.00%" in row.reason
    # and the other two wait
    assert send_batch(world.rt, ids[4:]).sent == 0
    assert run_progress(world.engine, run)["sent"] == 2
    # and the envelope senders were VERP addresses, one per delivery
    senders = {r.mail_from for r in sink.received}
    assert len(senders) == 2 and all(s.startswith("bounces+") for s in senders)
