"""`python -m bench [--n 100000] [--db sqlite|postgresql|both] [--plan-n 1000000] [--skip-plan] ...`

Quick check (about a minute): `python -m bench --n 5000 --plan-n 50000`.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import ceiling as ceiling_mod
from bench import machine, pipeline, planning, results
from bench.dbs import PG_ADMIN_URL
from bench.profile import format_rows
from bench.sink import SmtpSink, ensure_installed

RESULTS = Path(__file__).with_name("RESULTS.md")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="emails in the pipeline and ceiling runs (default 100000)")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both", help="ledger(s) to run on")
    p.add_argument("--plan-n", type=int, default=1_000_000, help="audience size of the planning run (default 1000000)")
    p.add_argument("--skip-plan", action="store_true", help="skip the planning benchmark")
    p.add_argument("--skip-pipeline", action="store_true", help="skip the pipeline and ceiling benchmarks")
    p.add_argument("--skip-ceiling", action="store_true", help="run the pipeline without the ceiling")
    p.add_argument("--batch-size", type=int, default=500, help="dispatch.batch_size of the run (default 500)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="worker pool processes, and ceiling sender processes (default 2)")
    p.add_argument("--ceiling-distinct", type=int, default=1000,
                   help="distinct pre-rendered messages the ceiling cycles through (default 1000)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for a pipeline run to finish (default 120 + N/20)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15",
                   help="broker and limiter of the benchmark; only its queue keys are cleared (default DB 15)")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                   help="PostgreSQL maintenance database used to create/drop the temporary ones")
    p.add_argument("--profile", action="store_true",
                   help="py-spy one pool process during the pipeline and print its top 15 cumulative hotspots "
                        "(numbers are perturbed: RESULTS.md is not written)")
    p.add_argument("--no-write", action="store_true", help="print only; do not append to bench/RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    p.add_argument("--note", default=None, help="a line to add to this run's section of the results")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, project copies)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    timeout = args.timeout or 120 + args.n / 20
    workdir = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    secret = secrets.token_urlsafe(32)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    command = ("python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)).strip()
    info = machine.describe(args.redis_url, args.pg_admin_url)
    log(f"bench: work directory {workdir}")
    for key, value in info.items():
        log(f"  {key}: {value}")

    pipelines: list[tuple[pipeline.PipelineResult, ceiling_mod.CeilingResult | None]] = []
    plans: list[planning.PlanningResult] = []
    failed = False
    started = time.monotonic()
    if not args.skip_pipeline:
        ensure_installed(log)
        with SmtpSink(backlog=1000) as sink:
            log(f"bench: smtp-sink on 127.0.0.1:{sink.port} (pid {sink.proc.pid})")
            for kind in kinds:
                log(f"bench: pipeline on {kind}, N = {args.n:,}")
                try:
                    p, c = pipeline.run(
                        kind, args.n, workdir=workdir, sink=sink, redis_url=args.redis_url, secret=secret,
                        batch_size=args.batch_size, concurrency=args.concurrency, timeout=timeout,
                        pg_admin_url=args.pg_admin_url,
                        ceiling_distinct=None if args.skip_ceiling else args.ceiling_distinct,
                        profile_seconds=timeout if args.profile else None, log=log)
                except Exception:
                    failed = True
                    log(f"bench: pipeline on {kind} FAILED:\n{traceback.format_exc()}")
                    continue
                pipelines.append((p, c))
                _print_pipeline(p, c, log)
                if p.profile is not None:
                    samples, cumulative, own = p.profile
                    log(f"  [{kind}] py-spy on one pool process, {samples:,} samples (idle excluded); "
                        f"top 15 cumulative, startup chain omitted:\n{format_rows(cumulative)}\n"
                        f"  [{kind}] top 15 self:\n{format_rows(own)}")
    if not args.skip_plan:
        for kind in kinds:
            log(f"bench: planning on {kind}, {args.plan_n:,} subscribers in the audience")
            try:
                r = planning.run(kind, args.plan_n, workdir=workdir, redis_url=args.redis_url, secret=secret,
                                 pg_admin_url=args.pg_admin_url, log=log)
            except Exception:
                failed = True
                log(f"bench: planning on {kind} FAILED:\n{traceback.format_exc()}")
                continue
            plans.append(r)
            log(f"  [{kind}] plan_run: {r.planned:,} deliveries in {r.plan_seconds:.1f} s "
                f"(CPU {r.cpu_seconds:.1f} s), planner peak RSS {r.hwm_before_kb / 1024:.0f} → "
                f"{r.hwm_after_kb / 1024:.0f} MB, {r.zones} time zones"
                + (f"; PROBLEMS: {r.problems}" if r.problems else ""))

    load1, load5, _ = os.getloadavg()
    info["load after"] = f"{load1:.2f} (1 min), {load5:.2f} (5 min)"
    text = results.section(command, info, pipelines, plans, args.note)
    log("\n" + text)
    log(f"bench: done in {time.monotonic() - started:.0f} s")
    if (pipelines or plans) and not (args.no_write or args.profile):
        results.append(args.results, text)
        log(f"bench: results added to {args.results}")
    problems = failed or any(p.problems for p, _ in pipelines) or any(r.problems for r in plans)
    if args.keep or failed:
        log(f"bench: work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if problems else 0


def _print_pipeline(p: pipeline.PipelineResult, c: ceiling_mod.CeilingResult | None, log) -> None:
    mem = ", ".join(f"{m.role} pid {pid}: {m.first_kb / 1024:.0f} → {m.last_kb / 1024:.0f} MB "
                    f"(VmHWM {((m.hwm_kb or 0) / 1024):.0f} MB)" for pid, m in p.mem.items())
    rate = f"{p.emails_per_s:,.0f}" if p.emails_per_s else "—"
    log(f"  [{p.db}] pipeline: {p.sent:,}/{p.n:,} sent, {rate} emails/s over {p.window_seconds or 0:.1f} s "
        f"(run created → last sent; by quarter {' / '.join(f'{q:,.0f}' for q in p.quarters)}), "
        f"worker CPU {p.cpu_us_per_email or 0:,.0f} µs/email, {mem}; "
        f"sink counted {p.sink_messages:,}; {p.queued_events:,} `queued` events")
    if c:
        ratio = p.emails_per_s / c.emails_per_s if p.emails_per_s and c.emails_per_s else 0.0
        log(f"  [{p.db}] ceiling: {c.emails_per_s:,.0f} emails/s ({c.cpu_us_per_email:,.0f} µs CPU/email); "
            f"pipeline / ceiling = {ratio:.3f}")
    for problem in p.problems + (c.problems if c else []):
        log(f"  [{p.db}] PROBLEM: {problem}")


if __name__ == "__main__":
    sys.exit(main())
