"""`outreach send --now` end to end: the real CLI queues, a real worker sends, the beat's
tick queues the delayed tweet."""
from __future__ import annotations

import email
import email.policy

from outreach import store
from tests.worker.conftest import (
    add_people,
    run_ids,
    states,
    wait_for_workers,
    wait_until,
)


def test_send_now_reaches_every_eligible_subscriber_once_and_posts_one_thread(
        project, engine, sink, x_api, procs, celery_app):
    # given 30 advocates, plus an unsubscribed one, a suppressed one and one without the tag
    # (a lease far longer than the test: what `send` does not queue is not sent in time)
    project.configure(sink.port, x_api.base, dispatch="{batch_size: 10, lease: 5m}")
    eligible = add_people(engine, 30)
    add_people(engine, 2, start=100)
    store.set_status(engine, "person100@example.org", "unsubscribed")
    store.suppress(engine, "person101@example.org", "asked by phone")
    add_people(engine, 1, start=200, tags="donor")
    # and a worker on every queue
    procs.worker("email,social,control", 2, name="worker")
    wait_for_workers(celery_app, procs)

    # when an operator sends the campaign now with the real CLI
    result = procs.run("send", "alert", "--now", name="send")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queued now: {'email': 30}" in result.stdout, result.stdout
    # and the beat, ticking every second, starts only now: running before, its tick could find
    # the new run's deliveries due and queue them first (they would still go, once, but
    # `send` would not be what queued them)
    procs.beat()

    # then, once the tweet's 2 s delay has passed and the beat queued it, everything is sent
    runs = run_ids(engine)
    wait_until(lambda: states(engine, runs["mail"]) == {"sent": 30} and states(engine, runs["post"]) == {"sent": 1}
               and len(x_api.posts()) >= 2, 20, "the run to finish", procs,
               detail=lambda: (states(engine), sink.count, len(x_api.posts())))
    # and each eligible subscriber got exactly one message, nobody else got any
    assert sink.per_recipient() == dict.fromkeys(eligible, 1)
    msg = email.message_from_bytes(sink.received[0].data, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # and exactly one thread (two parts, the second replying to the first) was posted
    posts = x_api.posts()
    assert [p["text"] for p in posts] == ["Urgent alert: part one", "Urgent alert: part two"]
    assert posts[1]["reply"]["in_reply_to_tweet_id"]
    # and the ledger agrees, and both runs are done
    assert states(engine, runs["mail"]) == {"sent": 30}
    assert states(engine, runs["post"]) == {"sent": 1}
    wait_until(lambda: all(store.get_run(engine, r).status == "done" for r in runs.values()), 5, "runs done")
