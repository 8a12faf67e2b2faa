"""Progress of runs for operators: a live bar per run (`send --wait`), and what the scheduler
leaves out (`status`)."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .. import store
from ..delivery.runtime import Runtime
from ..models import FINAL_STATES
from ..observe.unscheduled import NotScheduled


def _line(counts: dict[str, int]) -> tuple[int, int, str]:
    total = sum(counts.values())
    done = sum(counts[s] for s in FINAL_STATES)
    text = (f"sent {counts['sent']}  retry {counts['retry']}  failed {counts['failed']}  "
            f"skipped {counts['skipped']}  unknown {counts['unknown']}  remaining {total - done}")
    return total, done, text


def watch(rt: Runtime, run_ids: Sequence[int], echo: Callable[[str], None], timeout: float = 3600,
          console: Console | None = None, stop: Callable[[], bool] | None = None) -> dict[int, dict[str, int]]:
    """Show one progress bar per run until all are finished (or `timeout`/`stop()`)."""
    console = console or Console()
    started = time.monotonic()
    labels = {}
    for run_id in run_ids:
        run = store.get_run(rt.engine, run_id)
        labels[run_id] = f"{run.campaign}/{run.step}" if run else f"run {run_id}"
    final: dict[int, dict[str, int]] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[detail]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        tasks = {r: bars.add_task(labels[r], total=None, detail="", rate="") for r in run_ids}
        while True:
            finished = True
            for run_id in run_ids:
                counts = store.run_progress(rt.engine, run_id)
                total, done, detail = _line(counts)
                elapsed = max(time.monotonic() - started, 1e-6)
                bars.update(tasks[run_id], total=total or None, completed=done, detail=detail,
                            rate=f"{counts['sent'] / elapsed:.0f}/s")
                final[run_id] = counts
                if total == 0 or done < total:
                    finished = False
            if finished or time.monotonic() - started > timeout or (stop and stop()):
                return final
            time.sleep(0.25)


def not_scheduled(rt: Runtime, echo: Callable[[str], None], seen: NotScheduled | None = None) -> None:
    """The campaign files the scheduler leaves out (they do not validate) and the campaigns
    whose schedule it cannot compute: what the beat's log says, for an operator who looks here.
    `seen`: what the last tick recorded; without it (no beat ticking) it is worked out here,
    which means validating every campaign."""
    from ..delivery.planner import left_out
    from ..delivery.scheduling import now_utc

    problems = seen.problems if seen is not None else left_out(rt, now_utc())
    if not problems:
        return
    when = f" at the tick of {seen.at:%H:%M:%S} UTC" if seen is not None else ""
    echo(f"not scheduled{when} (fix these, then run `outreach validate`):")
    for problem in problems:
        echo(f"  {problem}")

