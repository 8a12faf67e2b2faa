"""`outreach status [CAMPAIGN|RUN]`: one Snapshot (outreach/observe) shown as tables, refreshed
in place with --watch, or as JSON for scripts with --json (one object per line when watching).
"""
from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from . import Context

if TYPE_CHECKING:  # imported when the command runs: `outreach --help` stays quick
    from rich.console import RenderableType

    from ..observe import Snapshot

COUNTED = ("sent", "retry", "failed", "skipped", "unknown", "cancelled", "paused")


@click.command()
@click.argument("target", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="How many finished runs to show besides the open ones.")
@click.option("--watch", is_flag=True, help="Refresh in place until interrupted (Ctrl-C).")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600),
              help="Seconds between refreshes with --watch.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON (one line per refresh).")
@click.pass_obj
def status(obj: Context, target: str | None, limit: int, watch: bool, interval: float, as_json: bool) -> None:
    """Runs and their progress, queues, workers, rate limits and the last errors.

    TARGET narrows it to one run (its number) or one campaign (its name)."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from ..observe import take
    from ..store import get_run

    rt = obj.runtime()
    run_id, campaign = _target(target)
    if run_id is not None and get_run(rt.engine, run_id) is None:
        raise click.ClickException(f"there is no run {run_id}; `outreach status` lists the recent runs")
    if campaign is not None and campaign not in rt.campaigns() and not _has_runs(rt.engine, campaign):
        raise click.ClickException(f"there is no campaign {campaign!r} and no run of one; give a run number "
                                   f"or one of: {', '.join(sorted(rt.campaigns())) or 'none'}")
    broker = obj.broker_redis()

    def look() -> Snapshot:
        return take(rt.settings, rt.engine, rt.redis, broker=broker, limiter=rt.limiter, run_id=run_id,
                    campaign=campaign, limit=limit)

    if as_json:
        while True:
            click.echo(look().to_json())
            if not watch:
                return
            time.sleep(interval)
    if not watch:
        console = Console(width=None if sys.stdout.isatty() else 160)
        snap = look()
        console.print(render(snap, None))
        from .progress import not_scheduled

        not_scheduled(rt, click.echo, snap.not_scheduled)
        return
    previous: Snapshot | None = None
    with Live(Text("looking..."), auto_refresh=False, screen=False) as live:
        while True:
            current = look()
            live.update(render(current, previous), refresh=True)
            previous = current
            time.sleep(interval)


def _target(target: str | None) -> tuple[int | None, str | None]:
    if target is None:
        return None, None
    if target.isdigit():
        return int(target), None
    return None, target


def _has_runs(engine: object, campaign: str) -> bool:
    import sqlalchemy as sa

    from ..store.schema import runs

    assert isinstance(engine, sa.Engine)
    with engine.connect() as conn:
        return conn.execute(sa.select(runs.c.id).where(runs.c.campaign == campaign).limit(1)).first() is not None


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def render(snap: Snapshot, previous: Snapshot | None) -> RenderableType:
    """The snapshot as tables; with `previous`, each run's send rate and time left."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rates = snap.sent_rates(previous) if previous is not None else {}
    parts: list[RenderableType] = [Text(f"outreach status at {_when(snap.taken_at)}", style="bold")]
    runs = Table(title="runs (open ones and the newest)", title_justify="left")
    columns = ["run", "campaign/step", "occurrence (UTC)", "status", "planned", *COUNTED, "remaining"]
    if previous is not None:
        columns += ["sent/s", "time left"]
    for col in columns:
        runs.add_column(col, justify="left" if col in ("campaign/step", "occurrence (UTC)", "status") else "right")
    for run in snap.runs:
        cells = [str(run.id), f"{run.campaign}/{run.step}", run.occurrence.strftime("%Y-%m-%d %H:%M"), run.status,
                 str(run.total), *(str(run.counts[s]) for s in COUNTED), str(run.remaining)]
        if previous is not None:
            rate = rates.get(run.id)
            left = f"{run.remaining / rate:.0f} s" if rate and run.remaining else "-"
            cells += [f"{rate:.1f}" if rate is not None else "-", left]
        runs.add_row(*cells)
    parts.append(runs)
    for run in snap.runs:
        if run.reason and run.status in ("paused", "cancelled"):
            parts.append(Text(f"run {run.id} {run.status}: {run.reason}"))
    parts.append(_bounces(snap))
    lag = snap.scheduler_lag()
    backlog = ", ".join(f"{b.channel}: " + " ".join(f"{s} {n}" for s, n in sorted(b.states.items()) if n)
                        for b in snap.backlog if any(b.states.values())) or "nothing waiting"
    parts.append(Text(f"backlog: {backlog}; oldest due delivery late by {lag:.0f} s; "
                      f"last tick up to {_when(snap.last_tick)}"))
    queues = ", ".join(f"{q.name} {q.depth}" for q in snap.queues) or "unknown"
    unacked = "unknown" if snap.unacked is None else str(snap.unacked)
    parts.append(Text(f"queues (batches waiting): {queues}; taken by workers, not yet acknowledged: {unacked}"))
    workers = Table(title="workers seen", title_justify="left")
    for col in ("worker", "queues", "last seen"):
        workers.add_column(col)
    for w in snap.workers:
        workers.add_row(w.worker, ", ".join(w.queues), _ago(w.age))
    parts.append(workers if snap.workers else Text("workers seen: none yet (a worker shows once it takes a task)"))
    accounts = Table(title="sending accounts", title_justify="left")
    for col in ("account", "limits", "permits left", "paused until"):
        accounts.add_column(col)
    for a in snap.accounts:
        accounts.add_row(a.key, ", ".join(a.limits) or "-", "?" if a.permits_left is None else str(a.permits_left),
                         _when(a.paused_until) if a.paused_until else "-")
    parts.append(accounts)
    # why, as a sentence (a reason names the setting or variable to fix: a table cell would cut it)
    for a in snap.accounts:
        if a.paused_until:
            parts.append(Text(f"account {a.key} is paused until {_when(a.paused_until)}: {a.why or 'no reason given'}"))
    errors = Table(title="last errors (24 h, the newest 500 of each kind), by reason", title_justify="left")
    for col in ("count", "kind", "reason", "last", "runs"):
        errors.add_column(col, justify="right" if col == "count" else "left")
    for e in snap.errors[:15]:
        errors.add_row(str(e.count), e.kind, e.reason, _when(e.last_at), " ".join(str(r) for r in e.runs[:8]))
    parts.append(errors if snap.errors else Text("last errors (24 h): none"))
    if snap.actions:
        parts.append(_actions(snap))
    for problem in snap.problems:
        parts.append(Text(f"could not look: {problem}", style="yellow"))
    return Group(*parts)


def _bounces(snap: Snapshot) -> RenderableType:
    """Bounce and complaint rates per run (those that sent) and per account (30 days), with
    the thresholds at which the circuit breaker pauses a run."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    b = snap.breaker
    table = Table(title="bounces and complaints", title_justify="left")
    for col in ("of", "sent", "hard bounces", "soft bounces", "complaints"):
        table.add_column(col, justify="left" if col == "of" else "right")
    rows = [(f"run {run_id}", r) for run_id, r in snap.rates.items() if r.sent or r.hard_bounces or r.complaints
            or r.soft_bounces] + [(f"account {name} (30 days)", r) for name, r in snap.account_rates.items()]
    for label, r in rows:
        table.add_row(label, str(r.sent), f"{r.hard_bounces} ({r.hard_bounce_rate:.2%})", str(r.soft_bounces),
                      f"{r.complaints} ({r.complaint_rate:.2%})")
    breaker = Text(f"circuit breaker: a run pauses at {b['hard_bounce_rate']:.2%} hard bounces or "
                   f"{b['complaint_rate']:.2%} complaints once it has sent {b['min_sent']:.0f}") if b else Text("")
    return Group(table if rows else Text("bounces and complaints: none recorded"), breaker)


def _actions(snap: Snapshot) -> RenderableType:
    """Actions per campaign and action (the total first), then per target: the office each
    letter went to."""
    from rich.table import Table

    table = Table(title="actions supporters recorded, per campaign and target", title_justify="left")
    for col in ("campaign", "action", "target", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    totals: dict[tuple[str, str], int] = {}
    for a in snap.actions:
        totals[(a.campaign, a.action)] = totals.get((a.campaign, a.action), 0) + a.count
    for (campaign, action), total in totals.items():
        table.add_row(campaign, action, "(all)", str(total))
        for a in snap.actions:
            if (a.campaign, a.action) == (campaign, action) and a.target is not None:
                table.add_row("", "", a.target, str(a.count))
    return table


COMMANDS = (status,)
