"""The pipeline benchmark: N personalized newsletters through the real path.

    bulk-load N subscribers (timed apart, not counted)
    outreach worker -Q email,control -c 2   (one Celery worker, 2 pool processes)
    outreach beat (tick every second)
    outreach send mid-year-recap --now      (creates and plans the run, queues due batches)
      ... until no delivery of the run is pending/queued/sending/retry
    → emails/s = sent / (max(updated_at) of sent deliveries − run.created_at)
    → CPU µs per email of the worker tree, RSS of each worker process, every delivery sent,
      and the sink's message count equal to the number sent.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench import audience, ceiling, dbs, procs
from bench.machine import code_id
from bench.project import CAMPAIGN, child_env, make_project
from bench.sink import SmtpSink
from outreach import store
from outreach.models import ACTIVE_STATES
from outreach.store.schema import deliveries, delivery_events, runs


@dataclass
class PipelineResult:
    db: str
    n: int
    batch_size: int
    load_seconds: float = 0.0
    send_cmd_seconds: float = 0.0
    send_cmd_cpu: float = 0.0
    planned: int = 0
    plan_seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    queued_events: int = 0
    first_sent_s: float | None = None
    window_seconds: float | None = None
    quarters: list[float] = field(default_factory=list)  # emails/s in each quarter of the window
    emails_per_s: float | None = None
    worker_cpu: float = 0.0
    beat_cpu: float = 0.0
    cpu_us_per_email: float | None = None
    mem: dict[int, procs.Mem] = field(default_factory=dict)
    sink_messages: int = 0
    complete: bool = False
    problems: list[str] = field(default_factory=list)
    profile: tuple[int, list, list] | None = None
    ledger_url: str = ""
    code: str = ""

    @property
    def sent(self) -> int:
        return self.states.get("sent", 0)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_ready(redis_url: str, worker: subprocess.Popen, timeout: float = 90) -> None:
    """Until the worker answers a broadcast ping (it consumes from its queues then)."""
    from outreach.worker.app import make_app

    app = make_app(redis_url, 1.0)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with status {worker.returncode} before it was ready")
            if app.control.ping(timeout=1.0):
                return
        raise RuntimeError(f"the worker did not answer a ping within {timeout:.0f} s")
    finally:
        app.close()


def _run_child(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float, float, str]:
    """Run a command to completion; (status, wall s, user+sys CPU s, output)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    text = out.decode("utf-8", "replace")
    with log.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, text


def run(kind: str, n: int, *, workdir: Path, sink: SmtpSink, redis_url: str, secret: str, batch_size: int,
        concurrency: int, timeout: float, pg_admin_url: str, ceiling_distinct: int | None = 1000,
        profile_seconds: float | None = None, log=print,
        before_run=None) -> tuple[PipelineResult, ceiling.CeilingResult | None]:
    """The pipeline on a fresh `kind` ledger, then (unless ceiling_distinct is None) the
    ceiling with the same N and number of processes, while nothing else runs. `before_run`
    (engine, url, project root) is called once the audience is loaded (bench/big_ledger.py
    fills the ledger's history there)."""
    result = PipelineResult(kind, n, batch_size)
    root = make_project(workdir / f"pipeline-{kind}", "pipeline", smtp_port=sink.port, batch_size=batch_size)
    ceiling_result = None
    with dbs.ledger(kind, "pipeline", workdir, pg_admin_url) as url:
        result.ledger_url = store.display_url(url)
        engine = store.make_engine(url)
        try:
            t0 = time.monotonic()
            audience.load(engine, n)
            result.load_seconds = time.monotonic() - t0
            log(f"  [{kind}] {n:,} subscribers loaded in {result.load_seconds:.1f} s (not counted)")
            if before_run is not None:
                before_run(engine, url, root)
            if ceiling_distinct is not None:
                messages = root / "var" / "ceiling-messages.pickle"
                env = child_env(root, url, redis_url, secret, sink.port)
                k, render_us, size = ceiling.render(root, env, url, min(ceiling_distinct, n), messages)
                log(f"  [{kind}] ceiling: {k:,} personalized messages pre-rendered "
                    f"({render_us:,.0f} µs CPU each for render + MIME, {size:,.0f} bytes avg)")
            _run_pipeline(result, kind, root, url, engine, sink, redis_url, secret, concurrency, timeout,
                          profile_seconds, log)
        finally:
            engine.dispose()
    if ceiling_distinct is not None:
        ceiling_result = ceiling.run(n, concurrency, sink.port, messages, sink, k, render_us, size)
        log(f"  [{kind}] ceiling: {ceiling_result.emails_per_s:,.0f} emails/s")
    return result, ceiling_result


STALL_SECONDS = 120  # no delivery sent for this long while some are active: stop waiting


def _run_pipeline(result: PipelineResult, kind: str, root: Path, url: str, engine: sa.Engine, sink: SmtpSink,
                  redis_url: str, secret: str, concurrency: int, timeout: float,
                  profile_seconds: float | None, log) -> None:
    env = child_env(root, url, redis_url, secret, sink.port)
    outreach = [sys.executable, "-m", "outreach", "--root", str(root)]
    var = root / "var"
    dbs.clear_queues(redis_url)
    worker = beat = profiler = None
    result.code = code_id()
    try:
        worker = _spawn(outreach + ["worker", "-Q", "email,control", "-c", str(concurrency), "-l", "warning"],
                        env, var / "worker.log")
        _wait_ready(redis_url, worker)
        beat = _spawn(outreach + ["beat", "-l", "warning", "--schedule-file", str(var / "celerybeat-schedule")],
                      env, var / "beat.log")
        time.sleep(1.0)  # let the beat's first tick run on an empty ledger
        sampler = procs.TreeSampler(worker.pid).start()
        cpu0, beat_cpu0 = procs.tree_cpu(worker.pid), procs.tree_cpu(beat.pid)
        sink0 = sink.messages
        if profile_seconds is not None:
            profiler = _start_profiler(worker.pid, var / "py-spy.txt", profile_seconds)

        status, wall, cpu, out = _run_child(outreach + ["send", CAMPAIGN, "--now"], env, var / "send.log")
        result.send_cmd_seconds, result.send_cmd_cpu = wall, cpu
        if status != 0:
            raise RuntimeError(f"`outreach send` failed with status {status}:\n{out}")
        run_row = _latest_run(engine)
        if run_row is None:
            raise RuntimeError(f"`outreach send` created no run:\n{out}")
        log(f"  [{kind}] run {run_row.id} created and planned by `outreach send` in {wall:.1f} s "
            f"({out.strip().splitlines()[-1] if out.strip() else ''})")

        deadline = time.monotonic() + timeout
        last_report = 0.0
        last_sent, last_change = -1, time.monotonic()
        while True:
            counts = store.run_progress(engine, run_row.id)
            active = sum(counts[s] for s in ACTIVE_STATES)
            if active == 0:
                result.complete = True
                break
            if counts["sent"] != last_sent:
                last_sent, last_change = counts["sent"], time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                result.problems.append(f"stalled: nothing sent for {STALL_SECONDS} s with {active:,} deliveries "
                                       f"active ({counts}); do the tasks reach the broker {redis_url}?")
                break
            if worker.poll() is not None:
                result.problems.append(f"the worker exited with status {worker.returncode} mid-run")
                break
            if time.monotonic() > deadline:
                result.problems.append(f"timed out after {timeout:.0f} s with {active:,} deliveries still active")
                break
            if time.monotonic() - last_report > 10:
                log(f"  [{kind}] sent {counts['sent']:,}/{result.n:,} (active {active:,})")
                last_report = time.monotonic()
            time.sleep(1.0)

        result.worker_cpu = procs.tree_cpu(worker.pid) - cpu0
        result.beat_cpu = procs.tree_cpu(beat.pid) - beat_cpu0
        result.mem = sampler.stop()
        if profiler is not None:
            result.profile = _finish_profiler(profiler, var / "py-spy.txt")
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait()
        _stop(beat)
        _stop(worker)
    _collect(result, engine, run_row.id)
    result.sink_messages = sink.wait_settled(sink0 + result.sent, timeout=10) - sink0
    if result.sink_messages != result.sent:
        result.problems.append(f"smtp-sink counted {result.sink_messages:,} messages, the ledger {result.sent:,} sent")
    if result.sent != result.n:
        result.problems.append(f"{result.sent:,} of {result.n:,} deliveries sent; states: {result.states}")
    if result.planned != result.n:
        result.problems.append(f"planned {result.planned:,} deliveries, expected {result.n:,}")


def _latest_run(engine: sa.Engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(runs).where(runs.c.campaign == CAMPAIGN).order_by(runs.c.id.desc())).first()


def _collect(result: PipelineResult, engine: sa.Engine, run_id: int) -> None:
    d, e = deliveries, delivery_events
    with engine.connect() as conn:
        run_row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).one()
        result.states = dict(conn.execute(
            sa.select(d.c.state, sa.func.count()).where(d.c.run_id == run_id).group_by(d.c.state)).all())
        result.planned = sum(result.states.values())
        stamps = [_aware(t) for t in conn.execute(
            sa.select(d.c.updated_at).where(d.c.run_id == run_id, d.c.state == "sent")).scalars()]
        first, last = (min(stamps), max(stamps)) if stamps else (None, None)
        result.queued_events = conn.execute(sa.select(sa.func.count()).where(
            e.c.run_id == run_id, e.c.kind == "queued")).scalar_one()
    created = _aware(run_row.created_at)
    if run_row.planned_at is not None:
        result.plan_seconds = (_aware(run_row.planned_at) - created).total_seconds()
    if first is not None and last is not None:
        result.first_sent_s = (first - created).total_seconds()
        result.window_seconds = (last - created).total_seconds()
        if result.window_seconds > 0:
            result.emails_per_s = result.sent / result.window_seconds
            quarter = result.window_seconds / 4
            counts = [0, 0, 0, 0]
            for t in stamps:
                counts[min(int((t - created).total_seconds() / quarter), 3)] += 1
            result.quarters = [c / quarter for c in counts]
    if result.sent:
        result.cpu_us_per_email = result.worker_cpu / result.sent * 1e6


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- profiling -----------------------------------------------------------------------------

def _start_profiler(worker_pid: int, out: Path, max_seconds: float) -> subprocess.Popen:
    """py-spy on the first pool process (raw collapsed stacks, idle time excluded)."""
    children = procs.tree(worker_pid)[1:]
    if not children:
        raise RuntimeError("the worker has no pool process to profile")
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        raise RuntimeError(f"{py_spy} not found: `.venv/bin/pip install py-spy` (not a project dependency)")
    return subprocess.Popen([str(py_spy), "record", "--pid", str(children[0].pid), "--format", "raw",
                             "--rate", "200", "--duration", str(int(max_seconds)), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _finish_profiler(proc: subprocess.Popen, out: Path) -> tuple[int, list, list]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    from bench.profile import hotspots

    return hotspots(out) if out.exists() else (0, [], [])
