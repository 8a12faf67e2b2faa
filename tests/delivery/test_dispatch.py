"""Planning and sending through the real path (ledger, Redis limiter, SMTP and X servers on
loopback), called in-process the way Celery tasks call it."""
from __future__ import annotations

import email
import email.policy
import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from outreach import delivery, store
from outreach.channels import SmtpChannel
from outreach.delivery.runtime import Runtime
from outreach.store.schema import deliveries, runs, subscribers
from tests.delivery.conftest import add_people

UTC = UTC


def collect():
    queued: list[tuple[str, list[int]]] = []
    return queued, lambda channel, ids: queued.append((channel, list(ids)))


def drain(rt: Runtime, now: datetime, rounds: int = 10):
    """Queue what is due and send it, like beat + workers, until nothing is due."""
    for _ in range(rounds):
        queued, enqueue = collect()
        delivery.dispatch_due(rt, enqueue, now)
        if not queued:
            return
        for _, ids in queued:
            delivery.send_batch(rt, ids, now=now)


def states(engine, run_id: int) -> dict[str, int]:
    return {k: v for k, v in store.run_progress(engine, run_id).items() if v}


def mail_run(rt: Runtime, now: datetime) -> int:
    """`send --now` of the alert campaign's email step."""
    campaign = rt.campaigns()["alert"]
    return delivery.create_run_now(rt, campaign, campaign.step("mail"), now)


def received_by(sink) -> list[str]:
    return [r for m in sink.received for r in m.rcpt_tos]


def test_send_now_delivers_one_email_per_eligible_subscriber_and_one_thread(runtime, engine, smtp_server, x_api):
    sink, _ = smtp_server
    # given 12 advocates, one unsubscribed, one suppressed, one without the tag
    emails = add_people(engine, 12)
    store.set_status(engine, emails[0], "unsubscribed")
    store.suppress(engine, emails[1], "asked by phone")
    store.add_subscriber(engine, "other@example.org", status="confirmed", tags=["donor"])
    campaign = runtime.campaigns()["alert"]
    now = datetime.now(UTC)
    # when the campaign is sent now and the tweet's delay has passed
    mail_id = delivery.create_run_now(runtime, campaign, campaign.step("mail"), now)
    post_run = delivery.create_run_now(runtime, campaign, campaign.step("post"), now)
    drain(runtime, now + timedelta(minutes=6))
    # then exactly the 10 eligible subscribers got one email each
    got = sorted(received_by(sink))
    assert got == sorted(emails[2:])
    msg = email.message_from_bytes(sink.received[0].data, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # and the thread was posted once, part two replying to part one
    posts = x_api.posts()
    assert [p["text"] for p in posts] == ["Urgent alert: part one", "Urgent alert: part two"]
    assert posts[1]["reply"]["in_reply_to_tweet_id"]
    # and the ledger says so
    assert states(engine, mail_id) == {"sent": 10}
    assert states(engine, post_run) == {"sent": 1}
    assert store.get_run(engine, mail_id).status == "done"


def test_same_batch_delivered_twice_sends_once(runtime, engine, smtp_server):
    sink, _ = smtp_server
    add_people(engine, 10)
    campaign = runtime.campaigns()["alert"]
    now = datetime.now(UTC)
    delivery.create_run_now(runtime, campaign, campaign.step("mail"), now)
    queued, enqueue = collect()
    delivery.dispatch_due(runtime, enqueue, now)
    (_, ids), = queued
    # when the same task runs twice at once (broker redelivery) and once more afterwards
    threads = [threading.Thread(target=delivery.send_batch, args=(runtime, ids), kwargs={"now": now})
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    delivery.send_batch(runtime, ids, now=now)
    # then each recipient got exactly one message
    got = received_by(sink)
    assert len(got) == 10 and len(set(got)) == 10


def test_421_is_retried_with_backoff_and_then_sent(runtime, engine, smtp_server):
    sink, _ = smtp_server
    add_people(engine, 1)
    now = datetime.now(UTC)
    run_id = mail_run(runtime, now)
    sink.next_data.append("421 4.3.2 Service shutting down, try later")
    # when the first attempt is refused with 421
    drain(runtime, now, rounds=1)
    row = _one_delivery(engine, run_id)
    # then the delivery waits for a retry, later than now (backoff), and nothing was received
    assert row.state == "retry" and row.due_at > now and "421" in row.last_error
    assert sink.received == []
    # and when the retry comes due it is sent
    drain(runtime, row.due_at + timedelta(seconds=1))
    assert states(engine, run_id) == {"sent": 1}
    assert len(sink.received) == 1


def test_550_user_unknown_fails_without_retry_and_suppresses(runtime, engine, smtp_server):
    sink, _ = smtp_server
    emails = add_people(engine, 2)
    sink.rcpt_replies[emails[0]] = "550 5.1.1 No such user"
    now = datetime.now(UTC)
    run_id = mail_run(runtime, now)
    drain(runtime, now + timedelta(hours=3))
    assert states(engine, run_id) == {"sent": 1, "failed": 1}
    assert store.is_suppressed(engine, emails[0])
    assert received_by(sink) == [emails[1]]


def test_smtp_slow_down_mid_batch_stops_the_batch_and_pauses_the_account(runtime, engine, smtp_server):
    # given six recipients, the server asking to slow down at the third
    sink, _ = smtp_server
    emails = add_people(engine, 6)
    sink.rcpt_replies[emails[2]] = "452 4.3.2 Too many messages, slow down"
    now = datetime.now(UTC)
    run_id = mail_run(runtime, now)
    # when the batch is sent
    drain(runtime, now, rounds=1)
    # then what went before it was sent; with PIPELINING the message already composed behind
    # it goes out too (nothing is taken back once handed to the channel); the rest waits
    sent_to = received_by(sink)
    assert sent_to == ([emails[0], emails[1], emails[3]] if sink.pipelining else emails[:2])
    assert states(engine, run_id) == {"sent": len(sent_to), "retry": 6 - len(sent_to)}
    with engine.connect() as conn:
        waiting = conn.execute(sa.select(deliveries.c.due_at, deliveries.c.attempts)
                               .where(deliveries.c.run_id == run_id, deliveries.c.state == "retry")).all()
    assert all(due > now + timedelta(seconds=50) for due, _ in waiting)
    # and every worker sees the account paused
    channel = runtime.channel(runtime.campaigns()["alert"].step("mail"))
    assert runtime.limiter.acquire(channel.limit_key, channel.limits).granted == 0


def test_connection_lost_before_the_reply_is_unknown_and_never_resent(runtime, engine, smtp_server):
    # given a server that keeps one message and hangs up before confirming it
    sink, _ = smtp_server
    emails = add_people(engine, 4)
    sink.drop_after_data.add(emails[1])
    now = datetime.now(UTC)
    run_id = mail_run(runtime, now)
    # when everything due is sent, and again hours later
    drain(runtime, now)
    drain(runtime, now + timedelta(hours=6))
    # then that delivery is `unknown` (it may have arrived), the others sent, and nobody got two
    assert states(engine, run_id) == {"sent": 3, "unknown": 1}
    got = received_by(sink)
    assert sorted(got) == sorted(emails)
    with engine.connect() as conn:
        state = conn.execute(sa.select(deliveries.c.state).where(deliveries.c.recipient == emails[1])).scalar_one()
    assert state == "unknown"


def test_an_idempotent_channel_sends_an_unknown_outcome_again(runtime, engine, smtp_server, monkeypatch):
    # given the same dropped confirmation, on a channel whose resends are harmless (a provider
    # that deduplicates by message id)
    monkeypatch.setattr(SmtpChannel, "idempotent", True)
    sink, _ = smtp_server
    emails = add_people(engine, 4)
    sink.drop_after_data.add(emails[1])
    now = datetime.now(UTC)
    run_id = mail_run(runtime, now)
    # when everything due is sent, the server behaves again, and the retry comes due
    drain(runtime, now)
    sink.drop_after_data.clear()
    drain(runtime, now + timedelta(hours=6))
    # then that delivery was simply sent again, and is `sent`
    assert states(engine, run_id) == {"sent": 4}
    assert sorted(received_by(sink)) == sorted(emails + [emails[1]])


def test_x_429_reschedules_at_reset_and_pauses_the_account(runtime, engine, x_api):
    campaign = runtime.campaigns()["alert"]
    now = datetime.now(UTC)
    reset = int(now.timestamp()) + 120
    x_api.script.append((429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"},
                         {"title": "Too Many Requests", "status": 429}))
    run_id = delivery.create_run_now(runtime, campaign, campaign.step("post"), now - timedelta(minutes=5))
    drain(runtime, now, rounds=1)
    row = _one_delivery(engine, run_id)
    # then the post waits until X's reset, and every worker sees the account paused
    assert row.state == "retry"
    assert abs(row.due_at.timestamp() - reset) < 2
    channel = runtime.channel(runtime.campaigns()["alert"].step("post"))
    permit = runtime.limiter.acquire(channel.limit_key, channel.limits)
    assert permit.granted == 0 and permit.retry_after > 100
    assert len(x_api.posts()) == 1


def test_throttled_batch_is_deferred_not_slept(runtime, engine, smtp_server, project):
    sink, _ = smtp_server
    project.write("config/outreach.yaml", (project.root / "config/outreach.yaml").read_text()
                  .replace('limits: ["1000/1s"]', 'limits: ["4/1m"]'))
    rt = Runtime(project.settings(), engine=engine, redis=runtime.redis)
    rt.__dict__["limiter"] = runtime.limiter
    add_people(engine, 10)
    campaign = rt.campaigns()["alert"]
    now = datetime.now(UTC)
    run_id = delivery.create_run_now(rt, campaign, campaign.step("mail"), now)
    queued, enqueue = collect()
    delivery.dispatch_due(rt, enqueue, now)
    report = delivery.send_batch(rt, queued[0][1], now=now)
    # then 4 went out and the other 6 wait in the database for permits
    assert report.sent == 4 and report.deferred == 6
    assert states(engine, run_id) == {"sent": 4, "retry": 6}
    assert len(sink.received) == 4


def test_unsubscribed_after_planning_is_skipped(runtime, engine, smtp_server):
    sink, _ = smtp_server
    emails = add_people(engine, 3)
    now = datetime.now(UTC)
    run_id = mail_run(runtime, now)
    store.set_status(engine, emails[0], "unsubscribed")
    store.suppress(engine, emails[1], "complaint")
    drain(runtime, now)
    assert states(engine, run_id) == {"sent": 1, "skipped": 2}
    assert received_by(sink) == [emails[2]]


def test_two_concurrent_ticks_create_each_run_once(runtime, engine, project, redis_client):
    # given a step due a minute ago and two beats ticking at the same moment
    project.write("config/campaigns/alert.yaml", (project.root / "config/campaigns/alert.yaml").read_text()
                  .replace("at: 2030-01-15 09:00", f"at: {datetime.now(UTC):%Y-%m-%d %H:%M}")
                  .replace("Europe/Paris", "UTC"))
    add_people(engine, 3)
    now = datetime.now(UTC) + timedelta(minutes=6)
    rts = [Runtime(project.settings(), engine=engine, redis=redis_client) for _ in range(4)]
    barrier = threading.Barrier(len(rts))
    reports = []

    def beat(rt):
        barrier.wait()
        reports.append(delivery.schedule_runs(rt, now))
    threads = [threading.Thread(target=beat, args=(rt,)) for rt in rts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then one run per step exists, created by exactly one of them, with one delivery each
    with engine.connect() as conn:
        made = conn.execute(sa.select(runs.c.step, sa.func.count()).group_by(runs.c.step)).all()
        n_deliveries = conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar()
    assert dict(made) == {"mail": 1, "post": 1}
    assert sum(len(r.created) for r in reports) == 2
    assert n_deliveries == 4


def test_missed_occurrence_older_than_expires_is_skipped(runtime, engine, project, redis_client):
    occ = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    project.write("config/campaigns/alert.yaml", (project.root / "config/campaigns/alert.yaml").read_text()
                  .replace("at: 2030-01-15 09:00", f"at: {occ:%Y-%m-%d %H:%M}")
                  .replace("Europe/Paris", "UTC")
                  .replace("    template: alert\n    schedule:\n      at:",
                           "    template: alert\n    expires: 1h\n    schedule:\n      at:"))
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    # given the beat was down since before the occurrence
    from outreach.delivery import planner
    from outreach.store import scheduler_state
    scheduler_state.advance_cursor(engine, planner.CURSOR, occ - timedelta(hours=1))
    report = delivery.schedule_runs(rt, datetime.now(UTC))
    with engine.connect() as conn:
        got = dict(conn.execute(sa.select(runs.c.step, runs.c.status)).all())
    # then the email (expires 1h) was skipped and the tweet (no expiry) still runs
    assert got == {"mail": "skipped", "post": "planned"}
    assert len(report.skipped) == 1


def test_local_time_step_gets_each_recipients_own_due_time(runtime, engine, project, redis_client):
    project.write("config/campaigns/alert.yaml", (project.root / "config/campaigns/alert.yaml").read_text()
                  .replace("      timezone: Europe/Paris\n", "      timezone: Europe/Paris\n      local_time: true\n"))
    store.add_subscriber(engine, "tokyo@example.org", status="confirmed", tags=["advocacy"], timezone="Asia/Tokyo")
    store.add_subscriber(engine, "ny@example.org", status="confirmed", tags=["advocacy"], timezone="America/New_York")
    store.add_subscriber(engine, "nozone@example.org", status="confirmed", tags=["advocacy"])
    # and one whose zone was stored before zones were checked: `Asia` is a folder of zones
    store.add_subscriber(engine, "asia@example.org", status="confirmed", tags=["advocacy"])
    with engine.begin() as conn:
        conn.execute(sa.update(subscribers).where(subscribers.c.email == "asia@example.org").values(timezone="Asia"))
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    occ = datetime(2030, 1, 15, 8, 0, tzinfo=UTC)  # 09:00 in Paris
    run_id = store.create_run(engine, "alert", "mail", occ)
    delivery.plan_run(rt, run_id)
    with engine.connect() as conn:
        due = dict(conn.execute(sa.select(deliveries.c.recipient, deliveries.c.due_at)).all())
    assert due["tokyo@example.org"] == datetime(2030, 1, 15, 0, 0, tzinfo=UTC)    # 09:00 JST
    assert due["ny@example.org"] == datetime(2030, 1, 15, 14, 0, tzinfo=UTC)      # 09:00 EST
    assert due["nozone@example.org"] == due["asia@example.org"] == occ            # schedule's zone


def _one_delivery(engine, run_id):
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(deliveries).where(deliveries.c.run_id == run_id)).all()
    return row
