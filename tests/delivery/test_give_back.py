"""Whatever fails between the claim and the hand-off to the channel, the claimed rows go back
unsent, with the attempt not counted; only a row handed to a provider may become `unknown`.
Real Redis, databases and servers on loopback; the failures are real ones (a closed port, a
missing variable, a broken file, a writer holding SQLite's lock)."""
from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from outreach import delivery, store
from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.errors import ConfigurationError, TransientError
from outreach.store.schema import deliveries
from tests.channels.conftest import free_port
from tests.delivery.conftest import add_people
from tests.delivery.test_dispatch import collect, drain, received_by, states


def _queue(rt: Runtime, now: datetime) -> list[int]:
    campaign = rt.campaigns()["alert"]
    delivery.create_run_now(rt, campaign, campaign.step("mail"), now)
    queued, enqueue = collect()
    delivery.dispatch_due(rt, enqueue, now)
    return [i for _, ids in queued for i in ids]


def _rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(deliveries).order_by(deliveries.c.id)).all()


def _given_back(engine, n: int, now: datetime) -> None:
    """Every row is `retry`, due soon, with no attempt spent and nothing unknown."""
    rows = _rows(engine)
    assert len(rows) == n
    assert {r.state for r in rows} == {"retry"}, [(r.state, r.last_error) for r in rows]
    assert {r.attempts for r in rows} == {0}
    assert all(now < r.due_at < now + timedelta(minutes=6) for r in rows)
    assert all(r.leased_until is None for r in rows)


@pytest.mark.parametrize("smtp_server", [False], indirect=True, ids=["plain"])
def test_redis_unreachable_when_the_limiter_is_asked_gives_the_batch_back(runtime, engine, smtp_server, project):
    # given a batch of 10 queued, and a limiter whose Redis does not answer (a closed port)
    sink, _ = smtp_server
    add_people(engine, 10)
    now = datetime.now(UTC)
    ids = _queue(runtime, now)
    dead = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    rt = Runtime(project.settings(), engine=engine, redis=dead)
    rt.__dict__["limiter"] = RateLimiter(dead, key_prefix="never-reached")
    # when a worker sends it
    with pytest.raises(TransientError, match="rate limiter unavailable"):
        delivery.send_batch(rt, ids, now=now)
    # then nothing went out, and every row is back, its attempt not counted
    assert sink.received == []
    _given_back(engine, 10, now)
    assert all("rate limiter unavailable" in r.last_error for r in _rows(engine))
    # and hours later (long past any lease) nothing became `unknown`: with Redis back, all go once
    drain(runtime, now + timedelta(hours=1))
    assert states(engine, _rows(engine)[0].run_id) == {"sent": 10}
    assert sorted(received_by(sink)) == sorted(f"person{i}@example.org" for i in range(10))


@pytest.mark.parametrize("smtp_server", [False], indirect=True, ids=["plain"])
def test_a_worker_without_the_secret_key_gives_the_batch_back(runtime, engine, smtp_server, project):
    # given a batch queued, and a worker started without OUTREACH_SECRET_KEY
    sink, _ = smtp_server
    add_people(engine, 10)
    now = datetime.now(UTC)
    ids = _queue(runtime, now)
    env = {k: v for k, v in project.env.items() if k != "OUTREACH_SECRET_KEY"}
    from outreach.settings import load_settings

    keyless = Runtime(load_settings(project.root, environ=env), engine=engine, redis=runtime.redis)
    keyless.__dict__["limiter"] = runtime.limiter
    # when it sends the batch
    with pytest.raises(ConfigurationError, match="OUTREACH_SECRET_KEY"):
        delivery.send_batch(keyless, ids, now=now)
    # then nothing went out and every row is back for a worker that can sign links
    assert sink.received == []
    _given_back(engine, 10, now)
    drain(runtime, now + timedelta(hours=1))
    assert states(engine, _rows(engine)[0].run_id) == {"sent": 10}
    assert len(sink.received) == 10


@pytest.mark.parametrize("smtp_server", [False], indirect=True, ids=["plain"])
def test_a_campaign_that_no_longer_loads_holds_its_rows_without_spending_attempts(runtime, engine, smtp_server,
                                                                                  project):
    # given a batch queued, and then the campaign's file broken by an edit
    sink, _ = smtp_server
    add_people(engine, 5)
    now = datetime.now(UTC)
    ids = _queue(runtime, now)
    project.write("config/campaigns/alert.yaml", "name: alert\nsteps: [oops\n")
    rt = Runtime(project.settings(), engine=engine, redis=runtime.redis)
    rt.__dict__["limiter"] = runtime.limiter
    # when a worker sends the batch
    report = delivery.send_batch(rt, ids, now=now)
    # then nothing went out, and the rows wait with their attempts intact and the reason given
    assert report.given_back == 5 and sink.received == []
    _given_back(engine, 5, now)
    assert all("does not validate" in r.last_error for r in _rows(engine))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_database_that_refuses_writes_mid_batch_loses_no_outcome(runtime, engine, smtp_server, project, db_url):
    # given 120 recipients in one batch, and a worker whose SQLite waits 0.3 s for a lock
    sink, _ = smtp_server
    add_people(engine, 120)
    now = datetime.now(UTC)
    batch = _queue(runtime, now)  # all 120 ids, sent as one batch
    rt = Runtime(project.settings(), engine=store.make_engine(db_url + "?timeout=0.3"), redis=runtime.redis)
    rt.__dict__["limiter"] = runtime.limiter
    # and another writer that takes the database's write lock when the 70th message arrives,
    # and keeps it for 1.5 s: longer than the worker's busy timeout
    path = db_url.removeprefix("sqlite:///")
    locked, released = threading.Event(), threading.Event()
    original = sink.handle_DATA

    async def take_lock_at_70th(server, session, envelope):
        reply = await original(server, session, envelope)
        if len(sink.received) == 70 and not locked.is_set():
            blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            blocker.execute("BEGIN IMMEDIATE")
            locked.set()

            def release() -> None:
                blocker.execute("ROLLBACK")
                blocker.close()
                released.set()
            threading.Timer(1.5, release).start()
        return reply

    sink.handle_DATA = take_lock_at_70th
    # when the batch is sent
    report = delivery.send_batch(rt, batch, now=now)
    assert locked.is_set() and released.wait(5)
    # then the refused write stopped the feed: what went out is recorded sent, the rest went
    # back unsent (attempt not counted), nothing is `unknown` or left `sending`
    rows = _rows(engine)
    by_state: dict[str, list] = {}
    for r in rows:
        by_state.setdefault(r.state, []).append(r)
    got = received_by(sink)
    assert set(by_state) <= {"sent", "retry"}, {s: len(v) for s, v in by_state.items()}
    assert {r.recipient for r in by_state["sent"]} == set(got) and len(got) == len(set(got))
    assert len(got) < 120 and report.sent == len(got)
    assert {r.attempts for r in by_state.get("retry", [])} <= {0}
    # and once they come due, each of the rest goes out once
    rt.engine.dispose()
    drain(runtime, now + timedelta(minutes=5))
    assert sorted(received_by(sink)) == sorted(r.recipient for r in rows)
    assert states(engine, rows[0].run_id) == {"sent": 120}


@pytest.mark.parametrize("smtp_server", [False], indirect=True, ids=["plain"])
def test_x_refusing_the_credentials_pauses_the_account_and_spends_no_attempt(runtime, engine, x_api, project):
    # given a tweet due, and X answering 401 to this account's credentials
    campaign = runtime.campaigns()["alert"]
    now = datetime.now(UTC)
    run_id = delivery.create_run_now(runtime, campaign, campaign.step("post"), now - timedelta(minutes=5))
    for _ in range(3):
        x_api.script.append((401, {}, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401}))
    # when it is sent, and sent again (twice) as soon as it is due
    for _ in range(3):
        drain(runtime, datetime.now(UTC) + timedelta(minutes=2), rounds=1)
    # then X was asked once: the account is paused for every worker, with the reason
    assert len(x_api.requests) == 1
    (pause,) = runtime.limiter.pauses()
    assert pause.account == "x:org" and "refused the credentials" in pause.why and "401" in pause.why
    # and the post waits, its attempts all handed back
    (row,) = _rows(engine)
    assert row.run_id == run_id and row.state == "retry" and row.attempts == 0
    assert "401" in row.last_error
    # and `outreach status` says why
    from outreach.observe import take

    snap = take(runtime.settings, engine, runtime.redis, limiter=runtime.limiter)
    (account,) = [a for a in snap.accounts if a.key == "x:org"]
    assert account.paused_until is not None and account.permits_left == 0
    assert "refused the credentials" in account.why
