"""Planning at scale: one run of mid-year-recap (local_time: true, as written) over M
subscribers, planned by `outreach.delivery.dispatch.plan_run` in a fresh process whose peak RSS
(VmHWM) is read at the end.

The parent bulk-loads the audience (timed apart), then runs `python -m bench.planning`
as the child: it builds the Runtime and validates the campaign (warm-up, not timed),
creates the run of the step's next occurrence, and times `plan_run` alone. The database
server's own time is inside the wall time; its memory is not the planner's and is not counted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import audience, dbs
from bench.machine import code_id
from bench.procs import vm_hwm_kb
from bench.project import CAMPAIGN, child_env, make_project
from outreach import store


@dataclass
class PlanningResult:
    db: str
    subscribers: int
    audience: int
    load_seconds: float = 0.0
    plan_seconds: float = 0.0
    planned: int = 0
    cpu_seconds: float = 0.0
    hwm_before_kb: int = 0
    hwm_after_kb: int = 0
    zones: int = 0
    code: str = ""
    problems: list[str] = field(default_factory=list)


def run(kind: str, m: int, *, workdir: Path, redis_url: str, secret: str, pg_admin_url: str,
        log=print) -> PlanningResult:
    root = make_project(workdir / f"planning-{kind}", "planning")
    total = m + m // audience.EXTRA_EVERY
    result = PlanningResult(kind, total, m)
    with dbs.ledger(kind, "planning", workdir, pg_admin_url) as url:
        engine = store.make_engine(url)
        try:
            t0 = time.monotonic()
            audience.load(engine, m)
            result.load_seconds = time.monotonic() - t0
        finally:
            engine.dispose()
        log(f"  [{kind}] {total:,} subscribers ({m:,} in the audience) loaded in {result.load_seconds:.1f} s "
            "(not counted)")
        env = child_env(root, url, redis_url, secret)
        result.code = code_id()
        proc = subprocess.run([sys.executable, "-m", "bench.planning"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the planning process failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, value in data.items():
        setattr(result, key, value)
    if result.planned != m:
        result.problems.append(f"planned {result.planned:,} deliveries, expected {m:,}")
    return result


def child() -> None:
    """In the fresh process: plan one run and print a JSON line."""
    from outreach import delivery
    from outreach.delivery.runtime import Runtime
    from outreach.delivery.scheduling import now_utc, occurrences
    from outreach.settings import load_settings

    settings = load_settings(os.environ["OUTREACH_ROOT"])
    rt = Runtime(settings)
    campaign = rt.campaigns()[CAMPAIGN]
    step = campaign.steps[0]
    now = now_utc()
    found = occurrences(campaign, step, now, now.replace(year=now.year + 3))
    occurrence = found[0]
    with rt.engine.connect() as conn:
        zones = conn.exec_driver_sql("SELECT count(DISTINCT timezone) FROM subscribers").scalar_one()
    run_id = store.create_run(rt.engine, campaign.name, step.id, occurrence)
    hwm_before = vm_hwm_kb(os.getpid()) or 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    planned = delivery.plan_run(rt, run_id)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    hwm_after = vm_hwm_kb(os.getpid()) or 0
    run = store.get_run(rt.engine, run_id)
    if run.status != "planned" or run.planned_count != planned:
        raise SystemExit(f"run {run_id} is {run.status} with planned_count {run.planned_count}, "
                         f"plan_run said {planned}")
    rt.engine.dispose()
    print(json.dumps({"plan_seconds": seconds, "planned": planned, "cpu_seconds": cpu,
                      "hwm_before_kb": hwm_before, "hwm_after_kb": hwm_after, "zones": zones}))


if __name__ == "__main__":
    child()
