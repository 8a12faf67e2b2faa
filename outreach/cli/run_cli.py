"""Operator commands that run the pipeline: `send`, `worker`, `beat`, `tick`, `status`.

`worker` and `beat` exec Celery with our app; `send` creates runs through the same
functions the beat uses, so a manual send follows every rule a scheduled one does.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..worker.app import QUEUES


def _obj(ctx: click.Context):
    return ctx.find_root().obj


def _use_app(ctx: click.Context):
    """Make our app (broker: OUTREACH_BROKER_URL or redis_url) Celery's current app. Tasks are
    `shared_task`s: without this, `send`/`tick` published to Celery's default broker
    (amqp://localhost), where no worker of ours listens."""
    from ..worker.app import make_app

    settings = _obj(ctx).settings
    app = make_app(os.environ.get("OUTREACH_BROKER_URL") or settings.redis_url, settings.dispatch.tick_seconds)
    app.set_current()
    return app


def _export_root(ctx: click.Context) -> None:
    """Worker processes find the project through OUTREACH_ROOT (they start from Celery)."""
    os.environ["OUTREACH_ROOT"] = str(Path(_obj(ctx).root).resolve())
    for key, value in _obj(ctx).overrides.items():
        if value:
            os.environ[f"OUTREACH_{key.upper()}"] = value


@click.command()
@click.argument("campaign")
@click.option("--step", "step_id", default=None, help="Only this step (default: every step).")
@click.option("--now", is_flag=True, help="Create the runs at this instant instead of on schedule.")
@click.option("--dry-run", is_flag=True, help="Render every message and count; send and record nothing.")
@click.option("--wait/--no-wait", default=False, help="Wait and show progress until the runs finish.")
@click.pass_context
def send(ctx: click.Context, campaign: str, step_id: str | None, now: bool, dry_run: bool, wait: bool) -> None:
    """Send a campaign now (urgent alerts, tests) or rehearse it with --dry-run."""
    from ..delivery.dry_run import dry_run as rehearse
    from ..delivery.preview import find_campaign

    obj = _obj(ctx)
    found = find_campaign(obj.settings, campaign)
    steps = [found.step(step_id)] if step_id else found.steps
    if dry_run:
        rehearse(obj.settings, found, steps, click.echo)
        return
    if not now:
        raise click.UsageError("add --now to send immediately; scheduled sends are made by `outreach beat`")
    from ..delivery import dispatch
    from ..delivery.runtime import Runtime
    from ..store import migrations

    rt = Runtime(obj.settings)
    migrations.require_current(rt.engine)
    # Nothing is sent from a campaign that does not validate.
    if found.name not in rt.campaigns():
        from ..authoring.validation import validate

        from ..errors import ValidationFailed
        raise ValidationFailed(validate(obj.settings, [Path(found.source)]).problems)
    found = rt.campaigns()[found.name]
    run_ids = []
    for step in steps:
        run_id = dispatch.create_run_now(rt, found, found.step(step.id))
        click.echo(f"run {run_id}: {found.name}/{step.id} created" if run_id else
                   f"{found.name}/{step.id}: a run for this instant already exists")
        if run_id:
            run_ids.append(run_id)
    _export_root(ctx)
    _use_app(ctx)
    from ..worker.tasks import enqueue

    queued = dispatch.dispatch_due(rt, enqueue, dispatch.now_utc())
    click.echo(f"queued now: {queued or 'nothing due yet'}; the beat queues later steps when due")
    if wait and run_ids:
        from .progress import watch

        watch(rt, run_ids, click.echo)


@click.command()
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues: email, social, control.")
@click.option("--concurrency", "-c", default=2, show_default=True, help="Worker processes.")
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int, loglevel: str) -> None:
    """Start a Celery worker for the given queues."""
    unknown = sorted(set(queues.split(",")) - set(QUEUES))
    if unknown:
        raise click.UsageError(f"unknown queue(s) {', '.join(unknown)}; use {', '.join(QUEUES)}")
    _export_root(ctx)
    app = _use_app(ctx)
    # a unique node name per worker: several workers of the same queues on one host must not
    # answer each other's pings (Celery warns about duplicate node names)
    app.worker_main(["worker", "-Q", queues, "-c", str(concurrency), "-l", loglevel, "-E",
                     "-n", f"outreach-{queues.replace(',', '-')}-{os.getpid()}@%h"])


@click.command()
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.option("--schedule-file", default="var/celerybeat-schedule", show_default=True,
              help="Where Celery beat keeps its state (must be writable).")
@click.pass_context
def beat(ctx: click.Context, loglevel: str, schedule_file: str) -> None:
    """Start the single Celery beat that sends the periodic tick."""
    _export_root(ctx)
    path = _obj(ctx).settings.path(Path(schedule_file))
    path.parent.mkdir(parents=True, exist_ok=True)
    app = _use_app(ctx)
    app.start(["beat", "-l", loglevel, "-s", str(path)])


@click.command()
@click.pass_context
def tick(ctx: click.Context) -> None:
    """Run one scheduler tick in this process (what the beat triggers every few seconds)."""
    from ..delivery import dispatch
    from ..delivery.runtime import Runtime

    _export_root(ctx)
    _use_app(ctx)
    from ..worker.tasks import enqueue

    report = dispatch.tick(Runtime(_obj(ctx).settings), enqueue)
    click.echo(f"runs created: {len(report.created)}, skipped: {len(report.skipped)}, queued: {report.queued}")


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def status(ctx: click.Context, limit: int) -> None:
    """Recent runs and their deliveries by state."""
    from .progress import status_table
    from ..delivery.runtime import Runtime

    status_table(Runtime(_obj(ctx).settings), limit, click.echo)


@click.command()
@click.option("--fresh", is_flag=True, help="Forget what earlier demo runs sent (deletes only the demo's own files).")
@click.option("--timeout", default=100.0, show_default=True, help="Seconds to wait for deliveries.")
@click.pass_context
def demo(ctx: click.Context, fresh: bool, timeout: float) -> None:
    """Run the whole pipeline locally: embedded Redis, SQLite, SMTP sink, X sandbox, a worker."""
    from ..devtools.demo import run_demo

    sys.exit(run_demo(Path(_obj(ctx).root).resolve(), fresh=fresh, timeout=timeout))


def register(cli: click.Group) -> None:
    for command in (send, worker, beat, tick, status, demo):
        cli.add_command(command)
