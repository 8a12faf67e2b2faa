"""Commands that run the services: `db upgrade`, `worker`, `beat`, `web`, `demo`.

`worker` and `beat` exec Celery with our app; `web` runs the subscriber pages under uvicorn.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..settings import LOG_LEVELS
from ..worker.app import CHANNEL_QUEUES, QUEUES
from . import Context

LOGLEVEL = click.option("--loglevel", "-l", default=None, type=click.Choice(LOG_LEVELS, case_sensitive=False),
                        help="Least severe events to log (default: log_level of the settings, INFO).")


def _log_level(obj: Context, loglevel: str | None) -> str:
    """The level to log at: the flag, else the settings'; handed to the processes Celery
    starts through OUTREACH_LOG_LEVEL (they read the settings again)."""
    if loglevel:
        os.environ["OUTREACH_LOG_LEVEL"] = loglevel.upper()
        return loglevel.upper()
    return obj.settings.log_level


@click.group("db")
def db() -> None:
    """The SQL database (SQLite file or PostgreSQL)."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Context) -> None:
    """Create or migrate the tables to the latest schema (safe to run again)."""
    from ..store.db import display_url
    from ..store.migrations import upgrade

    with obj.engine(migrated=False) as engine:
        revision = upgrade(engine)
        click.echo(f"database {display_url(engine)} is at revision {revision} (latest)")


@click.command()
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True,
              help=f"Comma-separated queues: {', '.join(QUEUES)}.")
@click.option("--concurrency", "-c", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes.")
@LOGLEVEL
@click.pass_obj
def worker(obj: Context, queues: str, concurrency: int, loglevel: str | None) -> None:
    """Start a Celery worker for the given queues."""
    unknown = sorted(set(queues.split(",")) - set(QUEUES))
    if unknown:
        raise click.UsageError(f"unknown queue(s) {', '.join(unknown)}; use {', '.join(QUEUES)}")
    if CHANNEL_QUEUES & set(queues.split(",")):
        # every message it composes carries signed links: fail at start, not on every batch
        obj.settings.require_secret_key()
    level = _log_level(obj, loglevel)
    app = obj.celery()
    # a unique node name per worker: several workers of the same queues on one host must not
    # answer each other's pings (Celery warns about duplicate node names)
    app.worker_main(["worker", "-Q", queues, "-c", str(concurrency), "-l", level, "-E",
                     "-n", f"outreach-{queues.replace(',', '-')}-{os.getpid()}@%h"])


@click.command()
@LOGLEVEL
@click.option("--schedule-file", default="var/celerybeat-schedule", show_default=True,
              help="Where Celery beat keeps its state (must be writable).")
@click.pass_obj
def beat(obj: Context, loglevel: str | None, schedule_file: str) -> None:
    """Start the single Celery beat that sends the periodic tick."""
    path = obj.settings.path(Path(schedule_file))
    path.parent.mkdir(parents=True, exist_ok=True)
    level = _log_level(obj, loglevel)
    app = obj.celery()
    app.start(["beat", "-l", level, "-s", str(path)])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 in a container; put a TLS proxy in front).")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="Port to listen on (default: the port of base_url, else 8025).")
@LOGLEVEL
@click.pass_obj
def web(obj: Context, host: str, port: int | None, loglevel: str | None) -> None:
    """Serve the subscriber pages: unsubscribe (RFC 8058 one-click), view online, sign-up
    with double opt-in, preferences; /healthz and /readyz for probes."""
    from ..web.server import serve

    settings = obj.settings
    settings.require_secret_key()
    with obj.engine():  # refuse to start on an unmigrated database (says to run `outreach db upgrade`)
        pass
    serve(settings, host, port, log_level=_log_level(obj, loglevel))


@click.command()
@click.option("--fresh", is_flag=True, help="Forget what earlier demo runs sent (deletes only the demo's own files).")
@click.option("--timeout", default=100.0, show_default=True, type=click.FloatRange(1, 86_400),
              help="Seconds to wait for deliveries.")
@click.option("--serve-for", default=None, type=click.FloatRange(0, 86_400), metavar="SECONDS",
              help="After sending, serve the links in the outbox this long (default: until Ctrl-C; 0: stop at once).")
@click.pass_obj
def demo(obj: Context, fresh: bool, timeout: float, serve_for: float | None) -> None:
    """Run the whole pipeline locally: embedded Redis, SQLite, SMTP sink, X sandbox, a worker,
    and the web pages every link in the outbox points to."""
    from ..devtools.demo import run_demo

    sys.exit(run_demo(obj.root.resolve(), fresh=fresh, timeout=timeout, serve_for=serve_for))


COMMANDS = (db, worker, beat, web, demo)
