"""Commands about runs: `send`, `tick`, `resend-unknown`, and `runs pause|resume|cancel|retry`.

`send` creates runs through the same functions the beat uses, so a manual send follows every
rule a scheduled one does.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import Context, _redacted

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..store import AnyRow

# The note of a run that `send --now` created and could not queue: the same command reuses it.
INTERRUPTED = "send --now could not queue it"


@click.command()
@click.argument("campaign")
@click.option("--step", "step_id", default=None, help="Only this step (default: every step).")
@click.option("--now", is_flag=True, help="Create the runs at this instant instead of on schedule.")
@click.option("--dry-run", is_flag=True, help="Render every message and count; send and record nothing.")
@click.option("--wait/--no-wait", default=False, help="Wait and show progress until the runs finish.")
@click.pass_obj
def send(obj: Context, campaign: str, step_id: str | None, now: bool, dry_run: bool, wait: bool) -> None:
    """Send a campaign now (urgent alerts, tests) or rehearse it with --dry-run."""
    import kombu.exceptions

    from .. import delivery, store
    from ..authoring.validation import validate
    from ..delivery.rehearsal import dry_run as rehearse
    from ..delivery.rehearsal import find_campaign, find_steps
    from ..delivery.scheduling import now_utc
    from ..errors import ServiceUnavailable, ValidationFailed
    from ..models import RunStatus

    found = find_campaign(obj.settings, campaign)
    steps = find_steps(found, step_id)
    if dry_run:
        rehearse(obj.settings, found, steps, click.echo)
        return
    if not now:
        raise click.UsageError("add --now to send immediately; scheduled sends are made by `outreach beat`")
    rt = obj.runtime()
    # Nothing is sent from a campaign that does not validate.
    if found.name not in rt.campaigns():
        raise ValidationFailed(validate(obj.settings, [Path(found.source)]).problems)
    found = rt.campaigns()[found.name]
    app = obj.celery()
    broker = _redacted(app.conf.broker_url)
    try:  # before anything is created: a command retried after this error must not send twice
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, timeout=5)
    except (kombu.exceptions.OperationalError, OSError) as exc:
        raise ServiceUnavailable(
            f"cannot reach the broker at {broker} ({exc}): nothing was created or sent. Start Redis (or set "
            f"OUTREACH_BROKER_URL / OUTREACH_REDIS_URL), then run `outreach send {found.name} --now` again") from None
    run_ids, reused = [], []
    for step in steps:
        # a run that an earlier `send --now` created but could not queue is this command's, again
        earlier = store.unfinished_runs(rt.engine, found.name, step.id, INTERRUPTED)
        if earlier:
            run_id = earlier[0].id
            reused.append(run_id)
            click.echo(f"run {run_id}: {found.name}/{step.id} reused (an earlier `send --now` created it and "
                       "could not queue it)")
        else:
            run_id = delivery.create_run_now(rt, found, found.step(step.id))
            click.echo(f"run {run_id}: {found.name}/{step.id} created" if run_id else
                       f"{found.name}/{step.id}: a run for this instant already exists")
        if run_id:
            run_ids.append(run_id)
    from ..worker.tasks import enqueue

    enqueued: list[int] = []

    def enqueue_noting(channel: str, ids: list[int]) -> None:
        enqueue(channel, ids)
        enqueued.extend(ids)

    at = now_utc()
    try:
        queued = delivery.dispatch_due(rt, enqueue_noting, at)
    except (kombu.exceptions.OperationalError, OSError) as exc:
        # what was leased and not handed to the broker is due again at once; the runs are
        # marked so that this same command, run again, reuses them instead of creating more
        store.unqueue(rt.engine, at + rt.settings.dispatch.lease, enqueued)
        for run_id in run_ids:
            store.set_run_status(rt.engine, run_id, RunStatus.PLANNED, note=f"{INTERRUPTED}: {exc}"[:500],
                                 only_from=(RunStatus.PLANNED,))
        runs = ", ".join(str(r) for r in run_ids) or "none"
        total = sum(sum(store.run_progress(rt.engine, r).values()) for r in run_ids)
        raise ServiceUnavailable(
            f"the broker at {broker} failed while queueing ({exc}): run(s) {runs} exist with {total} deliveries; "
            f"{len(enqueued)} were queued before it failed, the others wait in the database. Nothing is lost or "
            f"sent twice: the beat queues them once the broker is back, or run `outreach send {found.name} --now` "
            "again, which reuses these runs instead of creating new ones") from None
    for run_id in reused:  # queued at last: no longer waiting for this command
        store.set_run_status(rt.engine, run_id, RunStatus.PLANNED, note="", only_from=(RunStatus.PLANNED,))
    click.echo(f"queued now: {queued or 'nothing due yet'}; the beat queues later steps when due")
    if wait and run_ids:
        from .progress import watch

        watch(rt, run_ids, click.echo)


@click.command()
@click.pass_obj
def tick(obj: Context) -> None:
    """Run one scheduler tick in this process (what the beat triggers every few seconds)."""
    from .. import delivery

    rt = obj.runtime()
    obj.celery()
    from ..worker.tasks import enqueue

    report = delivery.tick(rt, enqueue)
    click.echo(f"runs created: {len(report.created)}, skipped: {len(report.skipped)}, queued: {report.queued}")
    for name, reason in report.failed.items():
        click.secho(f"campaign {name} not scheduled in this tick: {reason}", fg="red", err=True)


@click.command("resend-unknown")
@click.argument("run_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def resend_unknown(obj: Context, run_id: int, yes: bool) -> None:
    """Send again the deliveries of RUN_ID whose outcome is unknown.

    Nothing resends them by itself: each may have arrived (the connection dropped after the
    message went, or a worker died before recording it). Check with the provider first."""
    from ..store import get_run, requeue_unknown, run_progress

    with obj.engine() as engine:
        run = get_run(engine, run_id)
        if run is None:
            raise click.ClickException(f"there is no run {run_id}; `outreach status` lists the recent runs")
        count = run_progress(engine, run_id)["unknown"]
        if not count:
            click.echo(f"run {run_id} ({run.campaign}/{run.step}) has no delivery with an unknown outcome")
            return
        if not yes:
            click.confirm(f"{count} deliveries of run {run_id} ({run.campaign}/{run.step}) may have arrived "
                          "already; send them again?", abort=True)
        moved = requeue_unknown(engine, run_id)
        click.echo(f"{moved} deliveries of run {run_id} are pending again; the beat queues them on its next tick")


@click.group("runs")
def runs() -> None:
    """Pause, resume, cancel or retry a run (RUN: its number, as `outreach status` shows it).

    These act at once for every worker on every host: the ledger holds the run's deliveries,
    and a worker that had already claimed some hands them back before sending them."""


RUN = click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
WAIT = click.option("--wait", "wait_seconds", default=30.0, show_default=True, type=click.FloatRange(0, 3600),
                    help="Seconds to wait for workers to hand back what they had already claimed.")


@runs.command("pause")
@RUN
@click.option("--why", default="paused by an operator", show_default=True,
              help="Why: shown by `outreach status` and the dashboard.")
@WAIT
@click.pass_obj
def pause(obj: Context, run_id: int, why: str, wait_seconds: float) -> None:
    """Stop sending a run until it is resumed. When this returns, nothing more of it is sent,
    except what a worker had already handed to a provider."""
    from ..store import pause_run

    with obj.engine() as engine:
        run = _run(engine, run_id)
        if run.status == "paused":
            click.echo(f"run {run_id} ({run.campaign}/{run.step}) is already paused: {run.reason or 'no reason given'}")
            return
        if not pause_run(engine, run_id, _reason(why)):
            raise click.ClickException(
                f"run {run_id} ({run.campaign}/{run.step}) is {_run(engine, run_id).status}: only a run being "
                "planned or sent can be paused")
        held = _count(engine, run_id, "paused")
        click.echo(f"run {run_id} ({run.campaign}/{run.step}) paused: {held} deliveries held")
        _settle(engine, run_id, wait_seconds, "paused")
        click.echo(f"resume it with `outreach runs resume {run_id}`")


@runs.command("resume")
@RUN
@click.pass_obj
def resume(obj: Context, run_id: int) -> None:
    """Send a paused run again: its deliveries go out as planned (at once where that has passed)."""
    from ..store import resume_run

    with obj.engine() as engine:
        run = _run(engine, run_id)
        held = _count(engine, run_id, "paused")
        if resume_run(engine, run_id):
            click.echo(f"run {run_id} ({run.campaign}/{run.step}) resumed: {held} deliveries due again; the beat "
                       "queues them on its next tick")
            return
        status = _run(engine, run_id).status
        if status in ("planning", "planned", "done"):
            click.echo(f"run {run_id} ({run.campaign}/{run.step}) is not paused (it is {status})")
            return
        raise click.ClickException(f"run {run_id} ({run.campaign}/{run.step}) is {status} and cannot be resumed"
                                   + ("; send again with `outreach send`" if status == "cancelled" else ""))


@runs.command("cancel")
@RUN
@click.option("--why", default="cancelled by an operator", show_default=True,
              help="Why: shown by `outreach status` and the dashboard.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@WAIT
@click.pass_obj
def cancel(obj: Context, run_id: int, why: str, yes: bool, wait_seconds: float) -> None:
    """Stop a run for good: what it has not sent ends `cancelled`, on every worker, at once."""
    from ..store import cancel_run

    with obj.engine() as engine:
        run = _run(engine, run_id)
        if run.status == "cancelled":
            click.echo(f"run {run_id} ({run.campaign}/{run.step}) is already cancelled: "
                       f"{run.reason or run.note or 'no reason given'}")
            _settle(engine, run_id, wait_seconds, "cancelled")
            return
        if run.status not in ("planning", "planned", "paused"):
            raise click.ClickException(f"run {run_id} ({run.campaign}/{run.step}) is {run.status}: there is "
                                       "nothing left to cancel")
        if not yes:
            click.confirm(f"cancel run {run_id} ({run.campaign}/{run.step})? It cannot be resumed", abort=True)
        moved = cancel_run(engine, run_id, _reason(why))
        status = _run(engine, run_id).status
        if status != "cancelled":
            raise click.ClickException(f"run {run_id} became {status} meanwhile: nothing was cancelled")
        click.echo(f"run {run_id} ({run.campaign}/{run.step}) cancelled: {moved} deliveries will not be sent")
        _settle(engine, run_id, wait_seconds, "cancelled")


@runs.command("retry")
@RUN
@click.option("--failed", is_flag=True, help="Send again the deliveries that failed.")
@click.option("--unknown", is_flag=True, help="Send again those whose outcome is unknown (they may have arrived).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def retry(obj: Context, run_id: int, failed: bool, unknown: bool, yes: bool) -> None:
    """Send a run again only to those who did not get it: its failed deliveries (--failed), or
    those whose outcome is unknown (--unknown). Sent ones are never sent again; addresses
    suppressed since (hard bounces) are skipped when their turn comes."""
    from ..store import retry_run

    states = [s for s, wanted in (("failed", failed), ("unknown", unknown)) if wanted]
    if not states:
        raise click.UsageError("say which to send again: --failed, --unknown, or both")
    with obj.engine() as engine:
        run = _run(engine, run_id)
        if run.status in ("cancelled", "skipped"):
            raise click.ClickException(f"run {run_id} ({run.campaign}/{run.step}) is {run.status}: nothing of it "
                                       "is sent again")
        counts = {s: _count(engine, run_id, s) for s in states}
        if not sum(counts.values()):
            click.echo(f"run {run_id} ({run.campaign}/{run.step}) has no {' or '.join(states)} delivery")
            return
        if counts.get("unknown") and not yes:
            click.confirm(f"{counts['unknown']} deliveries of run {run_id} may have arrived already; send them "
                          "again?", abort=True)
        moved = retry_run(engine, run_id, states)
        where = "held until the run is resumed" if run.status == "paused" else "the beat queues them on its next tick"
        click.echo(f"{moved} deliveries of run {run_id} ({', '.join(f'{n} {s}' for s, n in counts.items())}) are "
                   f"due again; {where}")


def _run(engine: sa.Engine, run_id: int) -> AnyRow:
    from ..store import get_run

    run = get_run(engine, run_id)
    if run is None:
        raise click.ClickException(f"there is no run {run_id}; `outreach status` lists the recent runs")
    return run


def _reason(why: str) -> str:
    text = " ".join(why.split())
    if not text:
        raise click.BadParameter("give a reason, or leave --why out", param_hint="--why")
    return text[:500]


def _count(engine: sa.Engine, run_id: int, state: str) -> int:
    from ..store import run_progress

    return run_progress(engine, run_id)[state]


def _settle(engine: sa.Engine, run_id: int, seconds: float, status: str) -> None:
    """Wait until no worker holds a claimed delivery of the run: each hands its back (or
    reports what it had already handed to a provider) within a second or so."""
    from ..store import in_flight

    deadline = time.monotonic() + seconds
    left = in_flight(engine, run_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = in_flight(engine, run_id)
    if left:
        click.secho(f"warning: {left} deliveries of run {run_id} are still with workers after {seconds:g} s: they "
                    "were handed to a provider before the run was " + status + ", or their worker stopped "
                    "answering (the tick settles those when their lease runs out)", fg="yellow", err=True)


COMMANDS = (send, tick, resend_unknown, runs)
