"""Commands about runs: `send`, `tick`, `status`, `resend-unknown`.

`send` creates runs through the same functions the beat uses, so a manual send follows every
rule a scheduled one does.
"""
from __future__ import annotations

from pathlib import Path

import click

from . import Context, _redacted

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


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def status(obj: Context, limit: int) -> None:
    """Recent runs and their deliveries by state."""
    from .progress import paused_accounts, status_table

    rt = obj.runtime()
    status_table(rt, limit, click.echo)
    paused_accounts(rt, click.echo)


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


COMMANDS = (send, tick, status, resend_unknown)
