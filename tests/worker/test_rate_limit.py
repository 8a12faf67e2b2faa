"""The account's rate limit holds across worker processes: it lives in Redis, not in Celery."""
from __future__ import annotations

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

LIMIT, PER_SECONDS = 20, 1.0
N = 160


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_three_workers_together_stay_within_the_accounts_limit(project, engine, sink, x_api, procs, celery_app):
    # given an account limited to 20 messages a second, small batches, and 160 recipients
    project.configure(sink.port, x_api.base, limits=f'["{LIMIT}/1s"]',
                      dispatch="{batch_size: 10, lease: 30s, backoff_base: 1s}")
    emails = add_people(engine, N)
    # and three worker processes on the email queue (one slot each), a control worker and the beat
    for i in range(3):
        procs.worker("email", 1, name=f"email-{i}")
    procs.worker("control", 1, name="control")
    procs.beat()
    wait_for_workers(celery_app, procs)

    # when the mail step is sent now: all 160 are queued at once, in 16 batches
    rt = project.runtime(engine)
    campaign = rt.campaigns()["alert"]
    delivery.create_run_now(rt, campaign, campaign.step("mail"))
    batches: list[list[int]] = []
    delivery.dispatch_due(rt, lambda channel, ids: batches.append(ids), datetime.now(UTC))
    assert len(batches) == N // 10
    for ids in batches:
        celery_app.send_task("outreach.send_batch", args=[ids], queue="email")
    # (a throttled batch asks again when permits free up; the beat's tick queues any row it lost)
    wait_until(lambda: sink.count >= N and active(engine) == 0, 40, "all messages", procs,
               detail=lambda: (states(engine), sink.count))

    # then every recipient got exactly one message
    assert sink.per_recipient() == dict.fromkeys(emails, 1)
    assert states(engine) == {"sent": N}
    # and the three workers shared the work
    with engine.connect() as conn:
        claimants = set(conn.execute(sa.select(deliveries.c.claimed_by).distinct()).scalars())
    assert len(claimants) == 3, claimants
    # and, measured at the server, the limit held. From idle a whole window's worth may go at
    # once; after that at most LIMIT a second: the messages after the first LIMIT, over the time
    # from the first arrival to the last, measure the steady rate (a perfect limiter: <= LIMIT).
    times = sorted(t for t, _ in sink.arrivals)
    span = times[-1] - times[0]
    rate = (N - LIMIT) / span
    busiest = max(sum(1 for u in times[i:] if u - t < PER_SECONDS) for i, t in enumerate(times))
    print(f"\n{N} messages in {span:.2f}s: steady rate {rate:.1f}/s ({(N - 1) / span:.1f}/s first to last, "
          f"busiest 1 s of arrivals {busiest}), limit {LIMIT}/s")
    assert rate <= LIMIT * 1.10, f"{rate:.1f}/s exceeds the limit of {LIMIT}/s"
    # and throttled batches come back when permits free up, so the limit is nearly reached
    assert rate >= LIMIT * 0.75, f"{rate:.1f}/s: far below the limit of {LIMIT}/s"
