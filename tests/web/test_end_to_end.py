"""From a sent email to a skipped one: a campaign goes through the real sender to a real SMTP
server on loopback, the List-Unsubscribe URL of a received message is POSTed as a mailbox
provider does (RFC 8058), and the campaign's next step, planned before the click, skips that
address; then a sign-up's confirmation travels the same way and its link confirms."""
from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa
from starlette.testclient import TestClient

from outreach.delivery import create_run_now, dispatch_due
from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.scheduling import now_utc
from outreach.delivery.sender import send_batch
from outreach.store import get_subscriber, run_progress
from outreach.store.schema import deliveries
from outreach.web import create_app
from tests.channels.conftest import SmtpSink, _start

from .conftest import BASE, REDIS_TEST_URL, TWO_STEPS, csrf_of, path_of, person, write_project


@pytest.fixture
def smtp():
    sink = SmtpSink()
    controller = _start(sink)
    yield sink, controller
    controller.stop()


@pytest.fixture
def world(tmp_path, db_url, engine, smtp, redis_prefix):
    sink, controller = smtp
    env = {"OUTREACH_SECRET_KEY": "e2e-secret", "OUTREACH_DATABASE_URL": db_url, "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    project = write_project(tmp_path, env, smtp_port=controller.port)
    project.write("config/campaigns/news.yaml", TWO_STEPS)
    settings = project.settings()
    redis = redis_lib.Redis.from_url(REDIS_TEST_URL)
    rt = Runtime(settings, engine=engine, redis=redis)
    rt.__dict__["limiter"] = RateLimiter(redis, key_prefix=f"{redis_prefix}:rl")
    app = create_app(settings, engine=engine, redis=redis, limiter_prefix=redis_prefix)
    yield rt, app, sink
    from outreach.channels import close_shared
    close_shared()
    redis.close()


def ids_of(engine, run_id: int) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == run_id)).scalars())


def received(sink, to: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(r.data, policy=email.policy.default) for r in sink.received if to in r.rcpt_tos]


def test_one_click_from_a_received_email_skips_the_next_step(world, engine):
    rt, app, sink = world
    person(engine, "ana@example.org")
    person(engine, "ben@example.org", name="Ben Park")
    campaign = rt.campaigns()["news"]
    now = now_utc()
    # given both steps planned now: the letter, and the follow-up whose deliveries wait
    letter = create_run_now(rt, campaign, campaign.step("letter"), now, due_at=now)
    followup = create_run_now(rt, campaign, campaign.step("followup"), now, due_at=now)
    # when the letter is sent through the real sender to the SMTP server
    report = send_batch(rt, ids_of(engine, letter))
    assert report.sent == 2
    (message,) = received(sink, "ana@example.org")
    # then its List-Unsubscribe carries the one-click URL (and the mailto), unencoded
    header = str(message["List-Unsubscribe"])
    url = re.search(r"<(https://[^>]+)>", header).group(1)
    assert url.startswith(f"{BASE}/unsubscribe/") and "<mailto:unsubscribe@example.org?subject=" in header
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert "ana" not in url  # the token reveals nothing
    # when the mailbox provider POSTs it, without cookies
    with TestClient(app, base_url=BASE) as provider:
        answer = provider.post(path_of(url), data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert answer.status_code == 200
    # then the follow-up, planned before the click, goes to Ben only and counts Ana as skipped
    report = send_batch(rt, ids_of(engine, followup))
    assert (report.sent, report.skipped) == (1, 1)
    counts = run_progress(engine, followup)
    assert (counts["sent"], counts["skipped"]) == (1, 1)
    assert len(received(sink, "ana@example.org")) == 1 and len(received(sink, "ben@example.org")) == 2


def test_a_sign_up_gets_its_confirmation_through_the_ledger_and_its_link_confirms(world, engine):
    rt, app, sink = world
    # given the same campaign's audience, and someone who signs up (pending: in no audience)
    with TestClient(app, base_url=BASE) as browser:
        form = browser.get("/subscribe")
        browser.post("/subscribe", data={"csrf": csrf_of(form.text), "email": "neo@example.org",
                                         "topics": ["supporter"]})
        assert get_subscriber(engine, "neo@example.org").status == "pending"
        campaign = rt.campaigns()["news"]
        run = create_run_now(rt, campaign, campaign.step("letter"), now_utc(), due_at=now_utc())
        assert ids_of(engine, run) == []  # unconfirmed: not planned
        # when the dispatcher's tick queues what is due and a worker sends it
        queued: list[int] = []
        dispatch_due(rt, lambda channel, ids: queued.extend(ids), now_utc() + timedelta(seconds=1))
        send_batch(rt, queued)
        # then the confirmation arrived, in the ledger as sent, with a link that only shows a button
        (message,) = received(sink, "neo@example.org")
        assert "List-Unsubscribe" in message
        text = message.get_body(("plain",)).get_content()
        confirm = re.search(r"https://outreach\.test/confirm/\S+", text).group(0)
        page = browser.get(path_of(confirm))
        assert get_subscriber(engine, "neo@example.org").status == "pending"
        # and pressing it confirms
        browser.post(path_of(confirm), data={"csrf": csrf_of(page.text)})
    assert get_subscriber(engine, "neo@example.org").status == "confirmed"
    # and a campaign email now reaches them; a second confirmation would not
    run = create_run_now(rt, campaign, campaign.step("followup"), now_utc(), due_at=now_utc())
    assert send_batch(rt, ids_of(engine, run)).sent == 1
