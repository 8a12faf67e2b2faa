"""The broker hands the same batch to two workers: the ledger's claim lets one send it."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from outreach import delivery
from outreach.store.schema import delivery_events
from tests.worker.conftest import add_people, states, wait_for_workers, wait_until


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_same_task_sent_twice_to_two_workers_sends_each_message_once(project, engine, sink, x_api, procs,
                                                                     celery_app, broker):
    # given 20 recipients in two batches, and a server slow enough that both copies of a task overlap
    project.configure(sink.port, x_api.base, dispatch="{batch_size: 10, lease: 60s}")
    emails = add_people(engine, 20)
    sink.delay = 0.02
    rt = project.runtime(engine)
    campaign = rt.campaigns()["alert"]
    run_id = delivery.create_run_now(rt, campaign, campaign.step("mail"))
    batches: list[list[int]] = []
    delivery.dispatch_due(rt, lambda channel, ids: batches.append(ids), datetime.now(UTC))
    assert len(batches) == 2
    # and two workers
    procs.worker("email", 1, name="worker-1")
    procs.worker("email", 1, name="worker-2")
    wait_for_workers(celery_app, procs)

    # when each batch's task reaches the broker twice (as after a redelivery)
    for ids in batches:
        for _ in range(2):
            celery_app.send_task("outreach.send_batch", args=[ids], queue="email")

    # then once all four tasks ran (and were acknowledged) ...
    wait_until(lambda: broker.llen("email") == 0 and broker.hlen("unacked") == 0
               and states(engine, run_id) == {"sent": 20}, 30, "all four tasks", procs,
               detail=lambda: (states(engine, run_id), sink.count, broker.llen("email"), broker.hlen("unacked")))
    # ... each recipient got exactly one message
    assert sink.per_recipient() == dict.fromkeys(emails, 1)
    # and the ledger recorded one claim and one send per delivery
    with engine.connect() as conn:
        sent = conn.execute(sa.select(sa.func.count()).where(delivery_events.c.kind == "sent")).scalar_one()
    assert sent == 20
