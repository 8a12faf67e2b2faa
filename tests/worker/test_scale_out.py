"""Scale-out: more workers on more hosts against one Redis and one PostgreSQL is how outreach
gets faster. Three worker processes, each started from its own copy of the project as if on
its own host, each consuming a different set of queues (only email is common), and one beat:
one campaign goes out with every delivery sent exactly once, the account's limit held across
all three, and each worker doing a share. The operator's snapshot sees the three."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from outreach import delivery
from outreach.observe import take
from outreach.store.schema import deliveries
from tests.worker.conftest import REPO, active, add_people, states, wait_for_workers, wait_until

LIMIT = 60          # messages a second, for the account, across every worker
N = 360
QUEUES = {"host-a": "email,control", "host-b": "email,social", "host-c": "email"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_three_hosts_one_campaign_exactly_once_within_the_limit(project, engine, sink, x_api, procs, celery_app,
                                                                 tmp_path):
    # given an account limited to 60 a second, batches of 10, and 360 recipients in PostgreSQL
    project.configure(sink.port, x_api.base, limits=f'["{LIMIT}/1s"]',
                      dispatch="{batch_size: 10, lease: 30s, backoff_base: 1s}")
    emails = add_people(engine, N)
    # and three "hosts": each its own copy of the project (config and templates), its own worker
    # process on its own queues, all against the same Redis and PostgreSQL
    for host, queues in QUEUES.items():
        root = tmp_path / host
        shutil.copytree(project.root, root)
        log = (procs.logs / f"{host}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "outreach", "--root", str(root), "worker", "-Q", queues,
                                 "-c", "1", "-l", "warning"], env=project.env, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        proc.name = host  # type: ignore[attr-defined]
        procs.started.append(proc)
    procs.beat()  # the one clock: its tick runs on host-a (the control queue) and queues what is due
    wait_for_workers(celery_app, procs)

    # when the campaign's email step is sent now (the beat's ticks dispatch it to the email queue)
    rt = project.runtime(engine)
    campaign = rt.campaigns()["alert"]
    started = datetime.now(UTC)
    run_id = delivery.create_run_now(rt, campaign, campaign.step("mail"))
    wait_until(lambda: sink.count >= N and active(engine) == 0, 60, "every message", procs,
               detail=lambda: (states(engine), sink.count))

    # then every recipient got exactly one message, and the ledger says sent for each
    assert sink.per_recipient() == dict.fromkeys(emails, 1)
    assert states(engine, run_id) == {"sent": N}
    # and each of the three worker processes did a share
    with engine.connect() as conn:
        shares = Counter(dict(conn.execute(sa.select(deliveries.c.claimed_by, sa.func.count())
                                           .where(deliveries.c.run_id == run_id)
                                           .group_by(deliveries.c.claimed_by)).all()))
    by_worker = dict(shares)  # host:pid of each worker's pool process
    print(f"\nshares by worker: {by_worker}")
    assert len(by_worker) == 3, by_worker
    assert all(n >= N * 0.1 for n in by_worker.values()), by_worker
    # and, measured at the SMTP server, the limit held across all three: after the first
    # window's burst, at most LIMIT a second (+10% for the edges of the measurement)
    times = sorted(t for t, _ in sink.arrivals)
    span = times[-1] - times[0]
    steady = (N - LIMIT) / span
    print(f"{N} messages in {span:.2f} s: steady {steady:.1f}/s, limit {LIMIT}/s, "
          f"since the run: {(datetime.now(UTC) - started).total_seconds():.1f} s")
    assert steady <= LIMIT * 1.10, f"{steady:.1f}/s exceeds the limit of {LIMIT}/s"
    # and the operator's snapshot sees the three workers alive, each with the queues it was
    # started on, whatever task it did last (host-a's last may be a tick on control)
    snap = take(rt.settings, engine, rt.redis)
    seen = sorted(tuple(w.queues) for w in snap.workers if w.age < 60 and w.worker in by_worker)
    assert seen == sorted(tuple(sorted(q.split(","))) for q in QUEUES.values()), seen
