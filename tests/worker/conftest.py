"""Real Celery worker processes against real services on loopback.

Each test gets a project directory, a database (SQLite or PostgreSQL, migrated), the Celery
broker on Redis DB 14 (only the Celery queue keys are cleared, before and after; never a
FLUSHDB), an aiosmtpd server that records when each message arrived, and the X stand-in.
`procs.outreach(...)` starts `python -m outreach --root PROJECT ...` in a session of its own;
every process started is killed (with its children) when the test ends.
"""
from __future__ import annotations

import io
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from outreach import store
from outreach.models import ACTIVE_STATES
from outreach.store.schema import deliveries
from outreach.subscribers.csvfile import import_csv
from tests.channels.conftest import SmtpSink, _start, x_api  # noqa: F401  (x_api is a fixture)
from tests.delivery.conftest import CAMPAIGN as DISPATCH_CAMPAIGN

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/14"
# The keys Celery/kombu keep for our queues in the broker DB; cleared before and after each test
# so that a task left over from an earlier (killed) run cannot leak into this one.
QUEUE_KEYS = ("email", "social", "control", "unacked", "unacked_index", "unacked_mutex")

# the in-process tests' campaign, with a tweet delay short enough to wait for
CAMPAIGN = DISPATCH_CAMPAIGN.replace("delay: 5m", "delay: 2s")


# --- SMTP sink that notes arrival times --------------------------------------------------------

class TimedSink(SmtpSink):
    """Keeps every message with the server-side time (monotonic) at which its DATA completed.
    `delay` slows each message down (per connection), like a real server's work."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.arrivals: list[tuple[float, tuple[str, ...]]] = []

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            self.arrivals.append((time.monotonic(), tuple(envelope.rcpt_tos)))
        return reply

    def per_recipient(self) -> Counter[str]:
        return Counter(r for m in list(self.received) for r in m.rcpt_tos)

    @property
    def count(self) -> int:
        return len(self.received)


@pytest.fixture
def sink() -> Iterator[TimedSink]:
    handler = TimedSink()
    controller = _start(handler)
    handler.port = controller.port
    yield handler
    controller.stop()


# --- the broker ------------------------------------------------------------------------------

def clear_queues(client: redis_lib.Redis) -> None:
    keys = list(QUEUE_KEYS)
    # _kombu.binding.* and kombu 5.7's _kombu.binding_deadlines / _kombu.binding_permanent.*
    for pattern in ["_kombu.binding*"] + [f"{q}\x06\x16*" for q in ("email", "social", "control")]:
        keys += client.scan_iter(match=pattern)
    client.delete(*keys)


@pytest.fixture
def broker() -> Iterator[redis_lib.Redis]:
    """The broker DB, held for this test alone: the queue names are fixed, so two runs of these
    tests at once (another checkout, another session) would take each other's tasks and clear
    each other's queues. A lock in Redis makes them take turns; it expires if its holder dies."""
    client = redis_lib.Redis.from_url(REDIS_URL)
    lock = client.lock("outreach-test:worker-suite", timeout=180, blocking_timeout=600, sleep=0.2)
    if not lock.acquire():
        pytest.fail("another run of tests/worker held the broker for 10 minutes")
    try:
        clear_queues(client)
        yield client
        clear_queues(client)
    finally:
        try:
            lock.release()
        except redis_lib.exceptions.LockError:
            pass
        client.close()


@pytest.fixture
def celery_app(broker):
    """A client app on the test broker (never made current: other tests stay unaffected)."""
    from outreach.worker.app import make_app

    app = make_app(REDIS_URL, 1.0)
    yield app
    app.close()


# --- the project -------------------------------------------------------------------------------

@dataclass
class Project:
    root: Path
    db_url: str
    account: str
    x_account: str
    env: dict[str, str] = field(default_factory=dict)

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def configure(self, smtp_port: int, x_base: str, *, limits: str = '["1000/1s"]',
                  dispatch: str = "{batch_size: 10, lease: 30s, backoff_base: 1s, max_attempts: 3}") -> None:
        self.write("config/outreach.yaml", f"""\
            organization: {{name: Test Org, postal_address: "1 Test St"}}
            base_url: https://outreach.test
            email:
              accounts:
                {self.account}:
                  from: "Test Org <news@example.org>"
                  host: 127.0.0.1
                  port: {smtp_port}
                  timeout: 10
                  limits: {limits}
            x:
              accounts:
                {self.x_account}: {{handle: testorg, api_base: "{x_base}"}}
            dispatch: {dispatch}
            """)
        self.write("config/campaigns/alert.yaml", CAMPAIGN)
        self.write("templates/email/alert/subject.txt", "Act now, {{ subscriber.first_name or 'friend' }}")
        self.write("templates/email/alert/body.html", "<p>Dear {{ subscriber.name or 'friend' }},</p>"
                   "<p>Please write to your representative today.</p>"
                   '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>')
        self.write("templates/x/alert.txt", "{{ campaign.title }}: part one\n---\n{{ campaign.title }}: part two")

    def settings(self):
        from outreach.settings import load_settings

        return load_settings(self.root, environ=self.env)

    def runtime(self, engine):
        from outreach.delivery.runtime import Runtime

        return Runtime(self.settings(), engine=engine)


@pytest.fixture
def project(tmp_path: Path, db_url: str, engine, broker) -> Iterator[Project]:
    # accounts of its own, so the limiter's keys (default prefix, DB 14) are this test's
    tag = secrets.token_hex(3)
    account, x_account = f"news{tag}", f"org{tag}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH")}
    env.update({
        "OUTREACH_SECRET_KEY": "test-secret",
        "OUTREACH_DATABASE_URL": db_url,
        "OUTREACH_REDIS_URL": REDIS_URL,
        "OUTREACH_BROKER_URL": REDIS_URL,
        "OUTREACH__DISPATCH__TICK_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **{f"OUTREACH_X_{x_account.upper()}_{k}": "x" for k in ("CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
                                               "ACCESS_TOKEN_SECRET")},
    })
    root = tmp_path / "project"
    root.mkdir()
    yield Project(root, db_url, account, x_account, env)
    keys = [*broker.scan_iter(match=f"outreach:rl:{{email:{account}}}:*"),
            *broker.scan_iter(match=f"outreach:rl:{{x:{x_account}}}:*")]
    if keys:
        broker.delete(*keys)


def add_people(engine, n: int, *, tags: str = "advocacy", start: int = 0) -> list[str]:
    """n confirmed subscribers (one CSV import, fast even for thousands)."""
    emails = [f"person{i}@example.org" for i in range(start, start + n)]
    lines = ["email,name,tags,status"] + [f"{e},Person {i},{tags},confirmed" for i, e in enumerate(emails, start)]
    result = import_csv(engine, io.BytesIO("\n".join(lines).encode()), "people.csv")
    assert result.inserted == n
    return emails


# --- processes -----------------------------------------------------------------------------

class Procs:
    """Subprocesses in sessions of their own; `kill` (and the fixture's finalizer) kills the
    whole process group, so a worker's pool children go with it."""

    def __init__(self, project: Project, logs: Path) -> None:
        self.project, self.logs = project, logs
        self.started: list[subprocess.Popen] = []
        logs.mkdir(exist_ok=True)

    def outreach(self, *args: str, name: str) -> subprocess.Popen:
        return self.spawn(["-m", "outreach", "--root", str(self.project.root), *args], name=name)

    def celery_worker(self, queues: str, concurrency: int, name: str) -> subprocess.Popen:
        """A worker started by Celery's own command, as a deployment may: without the checks
        `outreach worker` makes at start."""
        return self.spawn(["-m", "celery", "-A", "outreach.worker.app", "worker", "-Q", queues,
                           "-c", str(concurrency), "-l", "warning", "-n", f"{name}@%h"], name=name,
                          OUTREACH_ROOT=str(self.project.root))

    def spawn(self, args: list[str], name: str, **env: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, *args], env={**self.project.env, **env}, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        proc.name = name  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def worker(self, queues: str, concurrency: int, name: str) -> subprocess.Popen:
        return self.outreach("worker", "-Q", queues, "-c", str(concurrency), "-l", "warning", name=name)

    def beat(self) -> subprocess.Popen:
        return self.outreach("beat", "-l", "warning", "--schedule-file", str(self.logs / "beat-schedule"),
                             name="beat")

    def run(self, *args: str, name: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A short-lived command (send, tick): wait for it, return its output."""
        proc = subprocess.run([sys.executable, "-m", "outreach", "--root", str(self.project.root), *args],
                              env=self.project.env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
        (self.logs / f"{name}.log").write_text(proc.stdout + proc.stderr)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        # warm shutdown first (a worker finishes the batch in hand), then make sure nothing is left
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the main process only: it stops its pool itself
        deadline = time.monotonic() + 4
        for proc in self.started:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group: pool children too
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait()

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> None:
        """Fail at once (with its log) when a long-running process died."""
        for proc in self.started:
            if proc.poll() is not None and getattr(proc, "expected_exit", False) is False:
                pytest.fail(f"{proc.name} exited with {proc.returncode}:\n{self.log(proc.name)[-3000:]}")


@pytest.fixture
def procs(project: Project, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(project, tmp_path / "logs")
    yield p
    p.stop_all()


def wait_for_workers(app, procs: Procs, timeout: float = 30.0) -> None:
    """Until every worker this test started answers (by pid: their node names may repeat)."""
    want = {p.pid for p in procs.started if p.args[p.args.index("--root") + 2] == "worker"}
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while time.monotonic() < deadline:
        procs.alive()
        replies = app.control.broadcast("stats", reply=True, timeout=0.5) or []
        seen = {stats.get("pid") for reply in replies for stats in reply.values()}
        if want <= seen:
            return
    raise AssertionError(f"workers {sorted(want - seen)} did not answer within {timeout}s")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, procs: Procs | None = None,
               interval: float = 0.1, detail: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs is not None:
            procs.alive()
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f"; now: {detail()}" if detail else ""))


def states(engine, run_id: int | None = None) -> dict[str, int]:
    """Deliveries by state (of one run, or of all), zero counts left out."""
    if run_id is not None:
        return {k: v for k, v in store.run_progress(engine, run_id).items() if v}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)).all()
    return {s: n for s, n in rows if n}


def active(engine) -> int:
    return sum(n for s, n in states(engine).items() if s in ACTIVE_STATES)


def run_ids(engine) -> dict[str, int]:
    from outreach.store.schema import runs

    with engine.connect() as conn:
        return {step: rid for rid, step in conn.execute(sa.select(runs.c.id, runs.c.step)).all()}
