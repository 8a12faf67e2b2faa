"""The database under a worker: connections cut, the server restarted, SQLite locked by
another writer for longer than the busy timeout."""
from __future__ import annotations

import secrets
import sqlite3
import time

import psycopg

from tests.reliability.harness import scale, wait_until

N = scale(1000, 5000)
HOLD = 3.0  # seconds another writer keeps SQLite's write lock: three times the workers' busy timeout


def test_database_connections_cut_under_the_workers(make_stack, pg_url):
    # given PostgreSQL, the workers' connections named so that they alone can be cut
    app = f"rel_{secrets.token_hex(4)}"
    sep = "&" if "?" in pg_url else "?"
    stack = make_stack(pg_url, worker_db_url=f"{pg_url}{sep}application_name={app}")
    stack.configure(dispatch="{batch_size: 50, lease: 10s, backoff_base: 1s, backoff_max: 4s, max_attempts: 8}")
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1)
    stack.send_now()
    stack.wait_received(N // 5)
    # when every worker connection is terminated (pg_terminate_backend), again and again
    admin_url = pg_url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
    cuts = 0
    with psycopg.connect(admin_url, autocommit=True) as admin:
        deadline = time.monotonic() + scale(4, 10)
        while time.monotonic() < deadline and stack.sink.count < N:
            cuts += admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE application_name = %s", (app,)).fetchone()[0]
            time.sleep(0.25)
    assert cuts > 0
    # then the pool replaced them, refused writes were made again, and nothing was lost
    counts = stack.finish(f"every worker connection to PostgreSQL terminated 4 times a second ({cuts} cut)",
                          "bug 1 fix: a refused write stops the feed and is made again; a failed claim is "
                          "given back")
    assert counts.sent == N and counts.unknown == 0


def test_postgresql_restarted_mid_run(make_stack, pg_cluster):
    # given a PostgreSQL cluster of this scenario's own
    stack = make_stack(pg_cluster.url.replace("postgresql://", "postgresql+psycopg://"))
    stack.configure(dispatch="{batch_size: 50, lease: 16s, backoff_base: 1s, backoff_max: 4s, max_attempts: 8}")
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1)
    stack.send_now()
    stack.wait_received(N // 3)
    # when it is restarted (fast shutdown: every connection dropped) and is down for 2 s
    stack.engine.dispose()
    pg_cluster.stop("fast")
    time.sleep(2)
    pg_cluster.start()
    # then the workers carried on: outcomes owed during the restart were written afterwards
    counts = stack.finish("PostgreSQL (a cluster of its own) stopped at a third of the run and started 2 s later",
                          "bug 1 fix: outcomes are written again until the database answers")
    assert counts.sent == N and counts.unknown == 0


def test_sqlite_locked_by_another_writer_longer_than_the_busy_timeout(make_stack, sqlite_url):
    # given SQLite, with workers that wait at most 1 s for a lock (?timeout=1)
    stack = make_stack(sqlite_url, worker_db_url=f"{sqlite_url}?timeout=1")
    stack.configure(dispatch="{batch_size: 50, lease: 10s, backoff_base: 1s, backoff_max: 4s, max_attempts: 8}")
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1)
    stack.send_now()
    stack.wait_received(N // 3)
    # when another process takes the write lock and keeps it for 3 s, twice
    path = sqlite_url.removeprefix("sqlite:///")
    for _ in range(2):
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("PRAGMA busy_timeout = 10000")
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(HOLD)
        blocker.execute("ROLLBACK")
        blocker.close()
        done = stack.sink.count
        wait_until(lambda done=done: stack.sink.count > done + 50 or stack.active() == 0, 30, "sending to resume")
    # then writes refused with "database is locked" were made again once it was free
    counts = stack.finish(f"another writer held SQLite's write lock for {HOLD:.0f} s (workers' busy timeout: "
                          "1 s), twice", "bug 1 fix: outcomes are written again until the database answers")
    assert counts.sent == N and counts.unknown == 0
