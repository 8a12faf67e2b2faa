"""A worker SIGKILLed in the middle of a run: nothing is lost, nothing is sent twice."""
from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from outreach import delivery
from outreach.store.schema import deliveries
from tests.worker.conftest import (
    active,
    add_people,
    states,
    wait_for_workers,
    wait_until,
)

N = 2000


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_worker_killed_halfway_loses_nothing_and_sends_nothing_twice(project, engine, sink, x_api, procs,
                                                                     celery_app):
    # given generous limits, a short lease, and a server that takes a moment per message
    project.configure(sink.port, x_api.base, limits='["100000/1s"]', dispatch="{lease: 5s, batch_size: 50}")
    sink.delay = 0.002
    # and worker A (two processes), a control worker and the beat ticking every second
    worker_a = procs.worker("email", 2, name="worker-a")
    procs.worker("control", 1, name="control")
    procs.beat()
    # and 2,000 recipients, all queued at once
    emails = add_people(engine, N)
    wait_for_workers(celery_app, procs)
    rt = project.runtime(engine)
    campaign = rt.campaigns()["alert"]
    delivery.create_run_now(rt, campaign, campaign.step("mail"))
    delivery.dispatch_due(rt, lambda channel, ids: celery_app.send_task("outreach.send_batch", args=[ids],
                                                                         queue="email"),
                          datetime.now(UTC))

    # when worker A is killed outright (SIGKILL, its pool too) once about half have arrived
    wait_until(lambda: sink.count >= N // 2, 60, "half of the messages", procs,
               detail=lambda: (states(engine), sink.count), interval=0.01)
    worker_a.expected_exit = True
    procs.kill(worker_a)
    at_kill = sink.count
    # and worker B takes over while the beat keeps ticking
    procs.worker("email", 2, name="worker-b")
    wait_until(lambda: active(engine) == 0, 60, "no delivery pending, queued, sending or retrying", procs,
               detail=lambda: (states(engine), sink.count))

    # then every recipient is accounted for: sent, or `unknown` (the lease of A's batch in hand ran
    # out while sending: the message may or may not have left, so it is not sent again)
    counts = states(engine)
    with engine.connect() as conn:
        state_of = dict(conn.execute(sa.select(deliveries.c.recipient, deliveries.c.state)).all())
    received = sink.per_recipient()
    duplicates = {r: n for r, n in received.items() if n > 1}
    unknown = {r for r, s in state_of.items() if s == "unknown"}
    print(f"\nkilled worker A at {at_kill} received; ledger: {counts}; received {sum(received.values())} "
          f"messages for {len(received)} recipients; duplicates: {len(duplicates)}; "
          f"unknown that did arrive: {len(unknown & set(received))}")
    assert set(counts) <= {"sent", "unknown"}, counts
    assert counts.get("sent", 0) + counts.get("unknown", 0) == N
    assert set(state_of) == set(emails)
    # and each recipient the ledger calls sent got it exactly once
    assert all(received[r] == 1 for r, s in state_of.items() if s == "sent"), \
        Counter(received[r] for r, s in state_of.items() if s == "sent")
    # and nobody got a message twice (a duplicate could only ever be one of the `unknown` ones)
    assert set(duplicates) <= unknown
    assert duplicates == {}
    # and the unknown are few: at most the batches A's two processes held when it died
    assert len(unknown) <= 2 * 50
    # and nothing arrived for anyone outside the run
    assert set(received) <= set(emails)
