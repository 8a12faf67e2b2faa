"""The `outreach` command: one click group, commands grouped by the operator's nouns.

    campaigns.py    validate, preview, audience, schedule
    subscribers.py  subscribers import/export, suppress, unsuppress
    runs.py         send, tick, resend-unknown, runs pause/resume/cancel/retry
    status.py       status (one snapshot of runs, queues, workers, limits, errors)
    services.py     db upgrade, worker, beat, web, demo

Commands are thin: each loads settings once (lazily, so `validate` can report a broken
settings file as a problem) and calls plain functions. Every error a person can fix is
turned into one line and an exit status here, in `Group.invoke`, the one error boundary:
no traceback reaches a user from any command.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import OutreachError, ValidationFailed

if TYPE_CHECKING:
    import redis
    import sqlalchemy as sa
    from celery import Celery

    from ..delivery.runtime import Runtime
    from ..settings import Settings


class Context:
    """What every command shares: the project, and its settings loaded once."""

    def __init__(self, root: Path, config: Path | None, overrides: dict[str, str | None],
                 settings: Settings | None = None) -> None:
        self.root, self.config, self.overrides = root, config, overrides
        self._settings: Settings | None = settings

    @classmethod
    def of(cls, settings: Settings) -> Context:
        """A context around settings already loaded (tests, embedding)."""
        return cls(settings.root, None, {}, settings)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from ..settings import load_settings

            if not self.root.is_dir():
                raise click.UsageError(f"--root {self.root}: no such directory")
            self._settings = load_settings(self.root, self.config, environ=None, **self.overrides)
        return self._settings

    @contextmanager
    def engine(self, migrated: bool = True) -> Iterator[sa.Engine]:
        """The database, checked to be at the latest schema unless `migrated` is False."""
        from ..store import engine_for, require_current

        engine = engine_for(self.settings)
        try:
            if migrated:
                require_current(engine)
            yield engine
        finally:
            engine.dispose()

    def runtime(self) -> Runtime:
        """A Runtime on a migrated database."""
        from ..delivery.runtime import Runtime
        from ..store import require_current

        rt = Runtime(self.settings)
        require_current(rt.engine)
        return rt

    def export(self) -> None:
        """Worker processes find the project through OUTREACH_ROOT (they start from Celery),
        and the command line's overrides through the environment."""
        os.environ["OUTREACH_ROOT"] = str(self.root.resolve())
        for key, value in self.overrides.items():
            if value:
                os.environ[f"OUTREACH_{key.upper()}"] = value

    def broker_redis(self) -> redis.Redis:
        """The Redis holding the Celery queues (OUTREACH_BROKER_URL, else redis_url)."""
        import redis as redis_lib

        return redis_lib.Redis.from_url(os.environ.get("OUTREACH_BROKER_URL") or self.settings.redis_url,
                                        socket_connect_timeout=5, socket_timeout=5)

    def celery(self) -> Celery:
        """Our Celery app (broker: OUTREACH_BROKER_URL or redis_url) made current. Tasks are
        `shared_task`s: without this, `send`/`tick` would publish to Celery's default broker
        (amqp://localhost), where no worker of ours listens."""
        from ..worker.app import make_app

        self.export()
        s = self.settings
        app = make_app(os.environ.get("OUTREACH_BROKER_URL") or s.redis_url, s.dispatch.tick_seconds)
        app.set_current()
        return app


def _fail(lines: list[str], code: int = 1) -> NoReturn:
    for line in lines:
        click.secho(f"error: {line}", fg="red", err=True)
    sys.exit(code)


def _redacted(url: str) -> str:
    from ..store.db import display_url

    try:
        return display_url(url)
    except Exception:
        return "(the configured URL)"


def explain(exc: BaseException, obj: Context | None) -> str | None:
    """One line for an error a person can act on, or None for a bug (which then shows its
    traceback: that is for us to fix)."""
    import kombu.exceptions
    import redis
    import sqlalchemy as sa

    settings = getattr(obj, "_settings", None)
    if isinstance(exc, sa.exc.DBAPIError):  # OperationalError (unreachable), ProgrammingError (no table) ...
        where = _redacted(settings.database_url) if settings else "the database"
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        if "no such table" in first or ("relation" in first and "does not exist" in first):
            return f"the database {where} has no outreach tables: run `outreach db upgrade`"
        return f"database {where}: {first} (check OUTREACH_DATABASE_URL and that the server is running)"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        kombu.exceptions.OperationalError)):
        where = _redacted(settings.redis_url) if settings else "Redis"
        return f"cannot reach Redis at {where}: {exc} (check OUTREACH_REDIS_URL and that Redis is running)"
    if isinstance(exc, redis.exceptions.RedisError):
        return f"Redis: {exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


class Group(click.Group):
    """The one error boundary of the CLI."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            _fail([str(p) for p in exc.problems])
        except OutreachError as exc:
            _fail([str(exc)])
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            line = explain(exc, ctx.obj)
            if line is None:
                raise
            _fail([line])


@click.group(cls=Group)
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="Project directory holding config/ and templates/.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Settings file (default: ROOT/config/outreach.yaml).")
@click.option("--database-url", default=None, help="Overrides OUTREACH_DATABASE_URL.")
@click.option("--redis-url", default=None, help="Overrides OUTREACH_REDIS_URL.")
@click.pass_context
def cli(ctx: click.Context, root: Path, config: Path | None, database_url: str | None,
        redis_url: str | None) -> None:
    """Campaigns as code: validate, preview and send email and X campaigns."""
    if ctx.obj is None:  # a test may hand in a Context of its own
        ctx.obj = Context(root, config, {"database_url": database_url, "redis_url": redis_url})


def _register() -> None:
    from . import campaigns, runs, services, status, subscribers

    for module in (campaigns, subscribers, runs, status, services):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="outreach")


__all__ = ["Context", "cli", "main"]
