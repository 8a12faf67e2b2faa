"""The operator's views on a big ledger: `python -m bench.big_ledger [--rows 10000000] [--n 20000]`.

1. A PostgreSQL ledger gets ROWS historical deliveries (finished runs of 10,000 each over the
   past years: 98% sent, 1% failed with an error event, some skipped and unknown), written by
   the database itself (INSERT ... SELECT generate_series, in chunks), then VACUUM ANALYZE.
   Timed apart, not counted.
2. On it, each read an operator makes is timed in-process, REPEAT times after one cold look:
   the snapshot behind `outreach status` (and the command itself, as a subprocess, which adds
   the interpreter's start), every dashboard page and /metrics through the real app
   (Starlette's TestClient: routing, auth, templates, no network).
3. The pipeline (bench/pipeline.py: N emails, a real worker and beat, smtp-sink) on an empty
   ledger and on the big one, in that order, same sitting: its rate should not drop by more
   than 10%.

Results are printed and added to bench/RESULTS.md (unless --no-write). `--rows 200000` makes a
quick check of the harness in about a minute.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench import dbs, machine, pipeline, results
from bench.project import child_env, make_project
from bench.sink import SmtpSink, ensure_installed
from outreach import store

PER_RUN = 10_000
CHUNK_RUNS = 100        # runs per INSERT: a million rows a statement
TARGET_MS = 200.0


@dataclass
class Timing:
    what: str
    cold_ms: float
    runs_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def worst(self) -> float:
        return max(self.runs_ms)


def load_history(engine: sa.Engine, rows: int, log=print) -> float:
    """ROWS finished deliveries in runs of PER_RUN; returns seconds taken."""
    t0 = time.monotonic()
    n_runs = max(rows // PER_RUN, 1)
    per = min(rows, PER_RUN)
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO runs (campaign, step, occurrence, status, planned_count, created_at, planned_at, finished_at,
                              note)
            SELECT 'history-' || (g % 25), 'letter', ts, 'done', :per, ts, ts, ts + interval '1 hour', 'bench history'
            FROM (SELECT g, date_trunc('hour', now()) - interval '3 days' - g * interval '9 hours' AS ts
                  FROM generate_series(1, :runs) g) s"""), {"per": per, "runs": n_runs})
        first, last = conn.execute(sa.text("SELECT min(id), max(id) FROM runs WHERE note = 'bench history'")).one()
    for start in range(first, last + 1, CHUNK_RUNS):
        end = min(start + CHUNK_RUNS - 1, last)
        with engine.begin() as conn:
            conn.execute(sa.text("""
                INSERT INTO deliveries (run_id, subscriber_id, recipient, channel, account, state, attempts, due_at,
                                        claimed_by, provider_id, last_error, sent_at, created_at, updated_at)
                SELECT r.id, i, 'h' || i || '@example.org', 'email', 'news', st, 1, r.occurrence, 'bench:1',
                       CASE WHEN st = 'sent' THEN '<' || r.id || '.' || i || '@bench>' END,
                       CASE WHEN st = 'failed' THEN '550 5.1.1 <h' || i || '@example.org>: no such user'
                            WHEN st = 'unknown' THEN 'outcome unknown: connection lost after DATA' END,
                       CASE WHEN st = 'sent' THEN r.occurrence + i * interval '20 ms' END,
                       r.created_at, r.occurrence + i * interval '20 ms'
                FROM runs r
                CROSS JOIN LATERAL (SELECT i, CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 250 = 1 THEN 'skipped'
                                                   WHEN i % 5000 = 2 THEN 'unknown' ELSE 'sent' END AS st
                                    FROM generate_series(1, :per) i) d
                WHERE r.id BETWEEN :a AND :b"""), {"per": per, "a": start, "b": end})
            conn.execute(sa.text("""
                INSERT INTO delivery_events (delivery_id, run_id, kind, detail, at)
                SELECT id, run_id, state, last_error, updated_at FROM deliveries
                WHERE run_id BETWEEN :a AND :b AND state IN ('failed', 'unknown')"""), {"a": start, "b": end})
        done = (end - first + 1) * per
        log(f"  history: {done:,} / {n_runs * per:,} deliveries ({time.monotonic() - t0:.0f} s)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        # the gigabytes just written are flushed now, not by the checkpointer while the
        # pipeline on this ledger is timed (the first sittings did not: their pipelines
        # competed with it for the disk)
        conn.execute(sa.text("CHECKPOINT"))
    return time.monotonic() - t0


def _time(what: str, call, repeat: int) -> Timing:
    t0 = time.perf_counter()
    call()
    timing = Timing(what, (time.perf_counter() - t0) * 1000)
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        timing.runs_ms.append((time.perf_counter() - t0) * 1000)
    return timing


def time_reads(root: Path, url: str, redis_url: str, secret: str, repeat: int, log=print) -> list[Timing]:
    from starlette.testclient import TestClient

    from outreach.delivery.runtime import Runtime
    from outreach.observe import take
    from outreach.passwords import new_token
    from outreach.settings import load_settings
    from outreach.store import make_engine
    from outreach.web import create_app

    token = new_token()
    env = {**child_env(root, url, redis_url, secret), "OUTREACH_ADMIN_TOKEN": token}
    settings = load_settings(root, environ=env)
    engine = make_engine(url)
    rt = Runtime(settings, engine=engine)
    with engine.connect() as conn:
        historical = conn.execute(sa.text("SELECT max(id) FROM runs WHERE note = 'bench history'")).scalar()
        oldest = conn.execute(sa.text("SELECT min(id) FROM runs WHERE note = 'bench history'")).scalar()
    timings = [_time("snapshot (`outreach status`'s query)", lambda: take(settings, engine, rt.redis), repeat),
               _time(f"snapshot of one old run ({oldest})",
                     lambda: take(settings, engine, rt.redis, run_id=oldest), repeat)]
    app = create_app(settings, engine=engine)
    auth = {"authorization": f"Bearer {token}", "accept": "text/html"}
    with TestClient(app, base_url="http://127.0.0.1:8025") as client:
        for path in ("/admin", f"/admin/runs/{historical}", f"/admin/runs/{oldest}", "/admin/schedule",
                     "/admin/api/snapshot", "/metrics"):
            def get(path=path):
                answer = client.get(path, headers=auth)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            timings.append(_time(f"GET {path}", get, repeat))
        live = {**auth, "x-live": "1"}
        timings.append(_time("GET /admin (live part)", lambda: client.get("/admin", headers=live), repeat))
    # the command as an operator types it: the interpreter's start and imports included
    cmd = [sys.executable, "-m", "outreach", "--root", str(root), "status"]
    timings.append(_time("`outreach status` (whole command, subprocess)",
                         lambda: subprocess.run(cmd, env=env, capture_output=True, check=True), max(repeat // 5, 2)))
    cmd_json = cmd + ["--json"]
    timings.append(_time("`outreach status --json` (whole command, subprocess)",
                         lambda: subprocess.run(cmd_json, env=env, capture_output=True, check=True),
                         max(repeat // 5, 2)))
    app.state.site.runtime.redis.close()
    rt.redis.close()
    engine.dispose()
    for t in timings:
        log(f"  {t.what}: cold {t.cold_ms:,.1f} ms, median {t.median:,.1f} ms, worst {t.worst:,.1f} ms")
    return timings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.big_ledger", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="historical deliveries (default 10000000)")
    p.add_argument("--n", type=int, default=20_000, help="emails in each pipeline run (default 20000)")
    p.add_argument("--repeat", type=int, default=20, help="timed repetitions of each read (default 20)")
    p.add_argument("--skip-pipeline", action="store_true", help="time the reads only")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    p.add_argument("--pg-admin-url", default=dbs.PG_ADMIN_URL)
    p.add_argument("--no-write", action="store_true", help="print only; do not add to bench/RESULTS.md")
    p.add_argument("--note", default=None)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    workdir = Path(tempfile.mkdtemp(prefix="outreach-bigledger-"))
    secret = "bench-" + "x" * 32
    info = machine.describe(args.redis_url, args.pg_admin_url)
    started = time.monotonic()
    rates: dict[str, float | None] = {}
    timings: list[Timing] = []
    load_s = 0.0

    def with_history(engine: sa.Engine, url: str, root: Path) -> None:
        nonlocal load_s, timings
        log(f"bench: {args.rows:,} historical deliveries")
        load_s = load_history(engine, args.rows, log)
        log(f"  loaded in {load_s:.0f} s (not counted)")
        timings = time_reads(root, url, args.redis_url, secret, args.repeat, log)

    if args.skip_pipeline:
        root = make_project(workdir / "reads", "pipeline")
        with dbs.ledger("postgresql", "bigledger", workdir, args.pg_admin_url) as url:
            engine = store.make_engine(url)
            try:
                with_history(engine, url, root)
            finally:
                engine.dispose()
    else:
        ensure_installed(log)
        with SmtpSink(backlog=1000) as sink:
            for label, hook in (("empty", None), ("big", with_history)):
                log(f"bench: pipeline on the {label} ledger, N = {args.n:,}")
                result, _ = pipeline.run("postgresql", args.n, workdir=workdir / label, sink=sink,
                                         redis_url=args.redis_url, secret=secret, batch_size=500, concurrency=2,
                                         timeout=120 + args.n / 20, pg_admin_url=args.pg_admin_url,
                                         ceiling_distinct=None, log=log, before_run=hook)
                rates[label] = result.emails_per_s
                log(f"  [{label}] {result.emails_per_s or 0:,.0f} emails/s; problems: {result.problems or 'none'}")
    text = section(args, info, load_s, timings, rates)
    log("\n" + text)
    log(f"bench: done in {time.monotonic() - started:.0f} s")
    if not args.no_write:
        results.append(Path(__file__).with_name("RESULTS.md"), text)
    return 0


def section(args, info: dict[str, str], load_s: float, timings: list[Timing], rates: dict[str, float | None]) -> str:
    command = "python -m bench.big_ledger " + " ".join(sys.argv[1:])
    lines = [f"## {info['date']}: the operator's views on {args.rows:,} historical deliveries (issue 14)", "",
             f"`{command.strip()}`", ""]
    if args.note:
        lines += [args.note, ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items() if k != "date"] + [""]
    lines += [f"History: {args.rows:,} deliveries in {max(args.rows // PER_RUN, 1):,} finished runs on PostgreSQL, "
              f"loaded in {load_s:,.0f} s (not counted). Each read: one cold look, then {args.repeat} timed "
              f"(in-process through the real app unless it says subprocess). Target: under {TARGET_MS:.0f} ms.", "",
              "| read | cold ms | median ms | worst ms | under 200 ms |", "|---|---|---|---|---|"]
    for t in timings:
        ok = "yes" if t.worst < TARGET_MS else ("median only" if t.median < TARGET_MS else "**no**")
        lines.append(f"| {t.what} | {t.cold_ms:,.1f} | {t.median:,.1f} | {t.worst:,.1f} | {ok} |")
    lines.append("")
    if rates:
        empty, big = rates.get("empty"), rates.get("big")
        change = f"{(big / empty - 1) * 100:+.1f}%" if empty and big else "—"
        lines += [f"Pipeline ({args.n:,} emails, PostgreSQL, 1 worker × 2, smtp-sink): empty ledger "
                  f"**{empty or 0:,.0f}** emails/s, with the history **{big or 0:,.0f}** emails/s ({change}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
