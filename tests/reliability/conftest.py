"""One scenario = one `Stack`: its own redis-server, its own database, an SMTP server and an
X stand-in on loopback, a project, and real `python -m outreach` worker and beat processes.

The default sizes keep the whole suite to a few minutes on two cores; set
OUTREACH_RELIABILITY_FULL=1 for the heavier variants (more deliveries, 30 s outages, the
20,000-delivery load). Each scenario's counts go to var/reliability/results.json (or
$OUTREACH_RELIABILITY_RESULTS), from which docs/reliability.md is refreshed:
`python scripts/reliability_doc.py`.
"""
from __future__ import annotations

import io
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach.models import ACTIVE_STATES
from outreach.store.schema import deliveries
from tests.reliability.harness import (
    MAIL_CAMPAIGN,
    RESULTS,
    X_CAMPAIGN,
    Counts,
    FaultySink,
    FaultyX,
    PgCluster,
    Procs,
    Project,
    RedisServer,
    check,
    count,
    save_results,
    start_x,
    wait_until,
)
from tests.worker.conftest import _start


class Stack:
    """Everything one scenario runs against, and what it ends with."""

    def __init__(self, tmp: Path, db_url: str, name: str, worker_db_url: str | None = None) -> None:
        self.name = name
        self.tmp = tmp
        self.started = time.monotonic()
        self.redis = RedisServer(tmp / "redis")
        self.redis.start()
        self.sink = FaultySink()
        self.sink.pipelining = True  # like Postfix; a scenario may turn it off
        self._smtp = _start(self.sink)
        self.sink.port = self._smtp.port
        self.x = FaultyX()
        self._stop_x = start_x(self.x)
        self.db_url = db_url
        from outreach.store import make_engine, upgrade

        self.engine = make_engine(db_url)
        upgrade(self.engine)
        self.x_account = "org"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH")}
        env.update({
            "OUTREACH_SECRET_KEY": "reliability-secret",
            "OUTREACH_DATABASE_URL": worker_db_url or db_url,
            "OUTREACH_REDIS_URL": self.redis.url,
            "OUTREACH_BROKER_URL": self.redis.url,
            "OUTREACH__DISPATCH__TICK_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            **{f"OUTREACH_X_ORG_{k}": "x" for k in ("CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
                                                   "ACCESS_TOKEN_SECRET")},
        })
        root = tmp / "project"
        root.mkdir()
        self.project = Project(root, env)
        self.procs = Procs(self.project, tmp / "logs")  # type: ignore[arg-type]
        self.people: list[str] = []
        self._extra: list[RedisServer] = []
        self.restarts: list[str] = []
        self._supervisor: threading.Thread | None = None
        self._closing = threading.Event()

    # --- the project -------------------------------------------------------------------

    def configure(self, *, limits: str = '["100000/1s"]', x_limits: str = '["100000/1s"]',
                  dispatch: str = "{batch_size: 50, lease: 8s, backoff_base: 1s, backoff_max: 4s, max_attempts: 8}",
                  smtp: str = "timeout: 10", x_timeout: float = 10, x_posts: int = 0,
                  campaigns: dict[str, str] | None = None) -> None:
        self.project.write("config/outreach.yaml", f"""\
            organization: {{name: Test Org, postal_address: "1 Test St"}}
            base_url: https://outreach.test
            email:
              accounts:
                news:
                  from: "Test Org <news@example.org>"
                  host: 127.0.0.1
                  port: {self.sink.port}
                  {smtp}
                  limits: {limits}
            x:
              accounts:
                {self.x_account}: {{handle: testorg, api_base: "{self.x.base}", timeout: {x_timeout},
                                    limits: {x_limits}}}
            dispatch: {dispatch}
            """)
        for name, text in (campaigns or {"alert": MAIL_CAMPAIGN}).items():
            self.project.write(f"config/campaigns/{name}.yaml", text)
        self.project.write("templates/email/alert/subject.txt", "Act now, {{ subscriber.first_name or 'friend' }}")
        self.project.write("templates/email/alert/body.html", "<p>Dear {{ subscriber.name or 'friend' }},</p>"
                           "<p>Please write to your representative today.</p>"
                           '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>')
        self.project.write("templates/x/post.txt", "{{ campaign.title }}: part one\n---\n"
                           "{{ campaign.title }}: part two")
        for n in range(1, x_posts + 1):
            self.project.write(f"config/campaigns/post{n:02d}.yaml", X_CAMPAIGN.format(n=n))

    def add_people(self, n: int) -> list[str]:
        from outreach.subscribers.csvfile import import_csv

        start = len(self.people)
        emails = [f"person{i}@example.org" for i in range(start, start + n)]
        lines = ["email,name,tags,status"] + [f"{e},Person {i},advocacy,confirmed" for i, e in enumerate(emails, start)]
        assert import_csv(self.engine, io.BytesIO("\n".join(lines).encode()), "people.csv").inserted == n
        self.people += emails
        return emails

    def runtime(self, **env: str):
        from outreach.delivery.runtime import Runtime
        from outreach.settings import load_settings

        settings = load_settings(self.project.root, environ={**self.project.env, **env})
        return Runtime(settings, engine=self.engine, redis=self.redis.client())

    def send_now(self) -> list[int]:
        """Every campaign's runs, created now (as `outreach send NAME --now` does); the beat's
        tick queues them."""
        from outreach import delivery

        rt = self.runtime()
        made = []
        for campaign in rt.campaigns().values():
            for step in campaign.steps:
                run_id = delivery.create_run_now(rt, campaign, step)
                assert run_id is not None
                made.append(run_id)
        rt.redis.close()
        return made

    # --- processes ---------------------------------------------------------------------

    def worker(self, name: str, queues: str = "email,social", concurrency: int = 2, env: dict | None = None,
               celery: bool = False):
        """An `outreach worker` (or, with `celery`, one started by Celery's own command)."""
        start = self.procs.celery_worker if celery else self.procs.worker
        if env is not None:
            saved, self.project.env = self.project.env, env
            try:
                return start(queues, concurrency, name=name)
            finally:
                self.project.env = saved
        return start(queues, concurrency, name=name)

    def services(self, workers: int = 1, concurrency: int = 2, separate_control: bool = False) -> None:
        """The beat, and `workers` workers on email and social; the ticks run on the first of
        them, or on a control worker of their own (when workers are to be killed)."""
        self.procs.beat()
        if separate_control:
            self.procs.worker("control", 1, name="control")
        for i in range(workers):
            queues = "email,social" if separate_control or i else "control,email,social"
            self.worker(f"worker-{i}", queues=queues, concurrency=concurrency)

    def fast_forward(self) -> None:
        """The clock moves on: deliveries waiting for a later time are due now (instead of
        waiting out a provider's 15-minute window, or a pause lifted early)."""
        from outreach.store import utcnow

        # first the workers write what they gave back (a batch writes its outcomes when it
        # ends): moved before that, a row would still be due at the old, later time
        deadline = time.monotonic() + 30
        while self.states().get("sending", 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        with self.engine.begin() as conn:
            conn.execute(sa.update(deliveries).where(deliveries.c.state.in_(("retry", "pending")))
                         .values(due_at=utcnow()))

    def cli(self, *args: str, name: str, timeout: float = 60):
        return self.procs.run(*args, name=name, timeout=timeout)

    def pause_of(self, account: str):
        """The pause every worker sees on `account` (the limiter's default keys), or None."""
        from outreach.delivery.ratelimit import RateLimiter

        client = self.redis.client()
        try:
            return next((p for p in RateLimiter(client).pauses() if p.account == account), None)
        finally:
            client.close()

    def resume(self, account: str) -> None:
        """What an operator does once the cause is fixed: lift the account's pause."""
        from outreach.delivery.ratelimit import RateLimiter

        client = self.redis.client()
        RateLimiter(client).resume(account)
        client.close()

    def attempts(self) -> dict[int, int]:
        """How many deliveries ended with each number of attempts."""
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(deliveries.c.attempts, sa.func.count())
                                     .group_by(deliveries.c.attempts)).all())

    def supervise(self) -> None:
        """Restart a worker or beat that exits by itself, as production's supervisor does
        (docker-compose: `restart: unless-stopped`). Celery 5.7 / kombu 5.7 can end a worker
        whose broker connection drops ("Unrecoverable error: AttributeError: 'NoneType' object
        has no attribute 'hostname'" while restoring unacked messages); each restart is counted."""
        def loop() -> None:
            while not self._closing.wait(0.2):
                for proc in list(self.procs.started):
                    if proc.poll() is None or getattr(proc, "expected_exit", False):
                        continue
                    proc.expected_exit = True
                    self.restarts.append(proc.name)
                    args = proc.args[proc.args.index("--root") + 2:]
                    self.procs.outreach(*args, name=f"{proc.name}-restart{len(self.restarts)}")
        self._supervisor = threading.Thread(target=loop, daemon=True)
        self._supervisor.start()

    @property
    def watched(self) -> Procs | None:
        """What wait_until checks for processes that died: nothing when a supervisor restarts them."""
        return None if self._supervisor is not None else self.procs

    def sent_count(self) -> int:
        return self.sink.count + sum(self.x.created.values())

    def wait_received(self, n: int, timeout: float = 60) -> None:
        wait_until(lambda: self.sink.count >= n, timeout, f"{n} messages at the SMTP server", self.watched,
                   interval=0.02, detail=self.states)

    def states(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)).all()
        return {s: n for s, n in rows if n}

    def active(self) -> int:
        return sum(n for s, n in self.states().items() if s in ACTIVE_STATES)

    # --- the end -----------------------------------------------------------------------

    def planned(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()

    def finish(self, what: str, fixed_by: str = "", timeout: float = 90, planned: int = 1) -> Counts:
        """Wait until at least `planned` deliveries exist and none is active, count, check the
        promises, and record the counts."""
        wait_until(lambda: self.planned() >= planned and self.active() == 0, timeout,
                   "every delivery to reach a final state", self.watched,
                   interval=0.2, detail=lambda: (self.states(), self.sink.count, dict(self.x.created)))
        counts = count(self.engine, self.sink, self.x)
        seconds = time.monotonic() - self.started
        arrivals = sorted(t for t, _ in self.sink.arrivals)
        span = (f"; mail arrived from {arrivals[0] - self.started:.1f}s to {arrivals[-1] - self.started:.1f}s"
                if arrivals else "")
        print(f"\n[{self.name}] {counts.line()} ({seconds:.1f}s{span})")
        with self.engine.connect() as conn:
            why = conn.execute(sa.select(deliveries.c.state, deliveries.c.last_error, sa.func.count())
                               .where(deliveries.c.state.in_(("unknown", "failed")))
                               .group_by(deliveries.c.state, deliveries.c.last_error)).all()
        for state, error, n in why[:6]:
            print(f"    {n} {state}: {error}")
        if self.restarts:
            what += f" (the supervisor restarted {', '.join(self.restarts)}: it exited when the broker went away)"
        RESULTS.append({"scenario": self.name, "what": what, "fixed_by": fixed_by, "restarts": len(self.restarts),
                        "database": self.engine.dialect.name, "seconds": round(seconds, 1),
                        **dict(counts.__dict__.items())})
        check(counts, self.sink, self.engine)
        return counts

    def extra_redis(self, name: str) -> RedisServer:
        """Another redis-server of this scenario's own (e.g. the limiter's, apart from the broker)."""
        server = RedisServer(self.tmp / name)
        server.start()
        self._extra.append(server)
        return server

    def close(self) -> None:
        self._closing.set()
        if self._supervisor is not None:
            self._supervisor.join(2)
        self.procs.stop_all()
        for server in self._extra:
            server.close()
        self.engine.dispose()
        self._smtp.stop()
        self._stop_x()
        self.redis.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outreach.db'}"


@pytest.fixture
def pg_url(pg_database: sa.URL) -> Iterator[str]:
    """A schema of its own in the session's PostgreSQL database (the machine's server)."""
    from tests.conftest import _pg_connect

    base = pg_database.render_as_string(hide_password=False)
    schema = f"rel_{secrets.token_hex(5)}"
    with _pg_connect(base) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield pg_database.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    with _pg_connect(base) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of its own, which the scenario may stop and start."""
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
    except Exception as exc:
        cluster.close()
        pytest.fail(f"could not start a PostgreSQL cluster of our own: {exc}")
    yield cluster
    cluster.close()


@pytest.fixture
def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    stacks: list[Stack] = []

    def make(db_url: str, name: str | None = None, worker_db_url: str | None = None) -> Stack:
        stack = Stack(tmp_path, db_url, name or request.node.name.removeprefix("test_"), worker_db_url)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture
def stack(make_stack, sqlite_url: str) -> Stack:
    """The usual scenario: SQLite."""
    return make_stack(sqlite_url)


def pytest_terminal_summary(terminalreporter) -> None:
    path = save_results()
    if path is not None:
        terminalreporter.write_line(f"reliability counts of {len(RESULTS)} scenario(s) written to {path}")


__all__ = ["FaultySink", "FaultyX", "Stack"]
