"""Operator commands for the store: `db upgrade`, `subscribers import/export`, `audience`,
`suppress`, `unsuppress`, `resend-unknown`. `register(cli)` adds them to the main command group.

Failures print one clear line (or one per problem) to stderr and exit 1; never a traceback.
`subscribers import` prints each skipped row as `FILE:LINE: reason` on stderr and still exits
0 when at least one row was imported (or the file had no data rows); it exits 1 when the file
cannot be read or has no usable header, or when every data row was bad.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from ..errors import OutreachError, ValidationFailed
from ..settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    if isinstance(getattr(obj, "settings", None), Settings):
        return obj.settings
    return load_settings()


def _friendly(fn: F) -> F:
    """Turn the errors an operator can fix into a message and exit status 1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OutreachError as exc:
            raise click.ClickException(str(exc)) from None
        except sa.exc.OperationalError as exc:
            raise click.ClickException(f"database error: {str(exc.orig).strip()}") from None
    return wrapper  # type: ignore[return-value]


@contextmanager
def _engine(ctx: click.Context, migrated: bool = True) -> Iterator[sa.Engine]:
    from ..store.db import engine_for
    from ..store.migrations import require_current

    engine = engine_for(_settings(ctx))
    try:
        if migrated:
            require_current(engine)
        yield engine
    finally:
        engine.dispose()


# --- db ------------------------------------------------------------------------------------

@click.group("db")
def db_group() -> None:
    """The SQL database (SQLite file or PostgreSQL)."""


@db_group.command("upgrade")
@click.pass_context
@_friendly
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the tables to the latest schema (safe to run again)."""
    from ..store.db import display_url
    from ..store.migrations import upgrade

    with _engine(ctx, migrated=False) as engine:
        revision = upgrade(engine)
        click.echo(f"database {display_url(engine)} is at revision {revision} (latest)")


# --- subscribers ---------------------------------------------------------------------------

@click.group("subscribers")
def subscribers_group() -> None:
    """Import and export subscribers as CSV."""


@subscribers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
@_friendly
def subscribers_import(ctx: click.Context, file: str) -> None:
    """Add or update subscribers from a UTF-8 CSV file (or - for stdin).

    \b
    The header row names the columns: email (required), name, city, country (ISO code such
    as US), timezone (IANA, such as America/Chicago), language, tags (separated by ;),
    status (pending, confirmed, unsubscribed, bounced; new rows default to confirmed),
    consent_source, consent_at (ISO 8601). Other columns are custom attributes.
    \b
    Known addresses are updated; empty cells keep the stored value. An unsubscribed person
    is never re-subscribed by an import. Bad rows are listed on stderr as FILE:LINE: reason
    and skipped; the others are imported (exit status 0). Exit status 1 when the file cannot
    be read, has no usable header, or every row was bad.
    """
    from ..subscribers.csvfile import import_csv

    def report(line: str) -> None:
        click.echo(line, err=True)

    with _engine(ctx) as engine:
        if file == "-":
            result = import_csv(engine, sys.stdin.buffer, "<stdin>", report)
        else:
            try:
                stream = open(file, "rb")
            except OSError as exc:
                raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
            with stream:
                result = import_csv(engine, stream, file, report)
    click.echo(f"{file}: {result}")
    if result.skipped and not (result.inserted or result.updated):
        raise click.ClickException(f"{file}: every row was rejected; nothing was imported")


@subscribers_group.command("export")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
@_friendly
def subscribers_export(ctx: click.Context, file: str) -> None:
    """Write every subscriber as CSV (the import format) to FILE, or stdout with -."""
    from ..subscribers.csvfile import export_csv

    with _engine(ctx) as engine:
        if file == "-":
            count = export_csv(engine, sys.stdout)
        else:
            try:
                out = open(file, "w", encoding="utf-8", newline="")
            except OSError as exc:
                raise click.ClickException(f"cannot write {file}: {exc.strerror}") from None
            with out:
                count = export_csv(engine, out)
    click.echo(f"exported {count} subscribers", err=True)


# --- audience ------------------------------------------------------------------------------

@click.command("audience")
@click.argument("campaign")
@click.option("--step", "step_id", help="A step of the campaign (its own audience, if it has one).")
@click.option("--sample", "sample_size", default=10, show_default=True, help="How many recipients to list.")
@click.pass_context
@_friendly
def audience_cmd(ctx: click.Context, campaign: str, step_id: str | None, sample_size: int) -> None:
    """How many subscribers CAMPAIGN would reach now, and who some of them are."""
    from ..authoring.audience import segments_for
    from ..store.audience import audience_count, audience_sample, audience_select
    from ..authoring.campaigns import load_campaigns

    settings = _settings(ctx)
    loaded = load_campaigns(settings)
    # load_campaigns gives a CampaignSet (.campaigns, .problems); accept a plain dict as well
    campaigns = getattr(loaded, "campaigns", loaded)
    found = campaigns.get(campaign)
    if found is None:
        problems = list(getattr(loaded, "problems", []))
        if problems:
            raise ValidationFailed(problems)
        raise click.ClickException(f"unknown campaign {campaign!r} (defined: {', '.join(sorted(campaigns)) or 'none'})")
    audience = found.audience
    if step_id is not None:
        steps = {s.id: s for s in found.steps}
        if step_id not in steps:
            raise click.ClickException(f"campaign {campaign!r} has no step {step_id!r} "
                                       f"(steps: {', '.join(steps) or 'none'})")
        audience = getattr(steps[step_id], "audience", None) or audience
    select = audience_select(audience, segments_for(settings))
    with _engine(ctx) as engine:
        count = audience_count(engine, select)
        sample = audience_sample(engine, select, sample_size) if sample_size > 0 else []
    click.echo(f"{campaign}{'/' + step_id if step_id else ''}: {count} recipient{'' if count == 1 else 's'}")
    for row in sample:
        where = ", ".join(x for x in (row.city, row.country, row.timezone) if x)
        click.echo(f"  {row.email}" + (f"  {row.name}" if row.name else "") + (f"  ({where})" if where else ""))
    if count > len(sample) > 0:
        click.echo(f"  ... and {count - len(sample)} more")


# --- suppressions --------------------------------------------------------------------------

@click.command("suppress")
@click.argument("email")
@click.option("--reason", required=True, help="Why, e.g. 'asked by phone' or 'hard bounce'.")
@click.option("--source", default="cli", show_default=True, help="Where the request came from.")
@click.pass_context
@_friendly
def suppress_cmd(ctx: click.Context, email: str, reason: str, source: str) -> None:
    """Never send anything to EMAIL again, whatever campaign or segment."""
    from ..store.suppressions import get_suppression, suppress

    with _engine(ctx) as engine:
        if suppress(engine, email, reason, source):
            click.echo(f"suppressed {email}")
        else:
            row = get_suppression(engine, email)
            click.echo(f"{email} was already suppressed since {row.created_at:%Y-%m-%d} ({row.reason})")


@click.command("unsuppress")
@click.argument("email")
@click.pass_context
@_friendly
def unsuppress_cmd(ctx: click.Context, email: str) -> None:
    """Lift the suppression of EMAIL (its subscriber status still applies)."""
    from ..store.suppressions import unsuppress

    with _engine(ctx) as engine:
        if unsuppress(engine, email):
            click.echo(f"{email} is no longer suppressed")
        else:
            click.echo(f"{email} was not suppressed")


# --- deliveries ----------------------------------------------------------------------------

@click.command("resend-unknown")
@click.argument("run_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_friendly
def resend_unknown_cmd(ctx: click.Context, run_id: int, yes: bool) -> None:
    """Send again the deliveries of RUN_ID whose outcome is unknown.

    Nothing resends them by itself: each may have arrived (the connection dropped after the
    message went, or a worker died before recording it). Check with the provider first."""
    from ..store import get_run, requeue_unknown, run_progress

    with _engine(ctx) as engine:
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


def register(cli: click.Group) -> None:
    """Add the store's commands to the main `outreach` group."""
    for command in (db_group, subscribers_group, audience_cmd, suppress_cmd, unsuppress_cmd, resend_unknown_cmd):
        cli.add_command(command)


__all__ = ["register"]
