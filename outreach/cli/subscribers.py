"""Commands about subscribers: `subscribers import/export/show`, `suppress`, `unsuppress`.

`subscribers import` prints each skipped row as `FILE:LINE: reason` on stderr and still exits
0 when at least one row was imported (or the file had no data rows); it exits 1 when the file
cannot be read or has no usable header, or when every data row was bad.
"""
from __future__ import annotations

import sys

import click

from . import Context


@click.group("subscribers")
def subscribers() -> None:
    """Import and export subscribers as CSV."""


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_obj
def import_(obj: Context, file: str) -> None:
    """Add or update subscribers from a UTF-8 CSV file (or - for stdin).

    \b
    The header row names the columns: email (required), name, city, region (state or
    province), country (ISO code such as US), latitude, longitude, timezone (IANA, such as
    America/Chicago), language, tags (separated by ;), status (pending, confirmed,
    unsubscribed, bounced, complained; new rows default to confirmed), consent_source,
    consent_at (ISO 8601). Other columns are custom attributes.
    \b
    A row with a city and a country gets its region, latitude, longitude and timezone
    from offline GeoNames data when the file leaves them empty; a city that is unknown or
    ambiguous is listed as FILE:LINE: note: ... and the row is imported without a place.
    Known addresses are updated; empty cells keep the stored value. A status in the file
    never upgrades anyone: unsubscribed, bounced and complained addresses keep their status,
    and pending ones are not confirmed by a file. Addresses must be ones the SMTP channel can
    send to (ASCII before the @). A cell starting with ' before =, +, -, @ (as exported)
    loses that apostrophe. Bad rows are listed on stderr as FILE:LINE: reason and skipped;
    the others are imported (exit status 0). Exit status 1 when the file cannot be read, has
    no usable header, or every row was bad.
    """
    from ..subscribers.csvfile import import_csv

    def report(line: str) -> None:
        click.echo(line, err=True)

    with obj.engine() as engine:
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


@subscribers.command("export")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_obj
def export(obj: Context, file: str) -> None:
    """Write every subscriber as CSV (the import format) to FILE, or stdout with -. A cell
    starting with =, +, -, @ gets a leading ' so spreadsheets show it as text."""
    from ..subscribers.csvfile import export_csv

    with obj.engine() as engine:
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


@subscribers.command("show")
@click.argument("address")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="How many bounces, complaints and events to list.")
@click.pass_obj
def show(obj: Context, address: str, limit: int) -> None:
    """One subscriber: status, suppression, and the bounces and complaints recorded for the
    address (with the provider's code and text), newest first."""
    from ..store.feedback import feedback_of
    from ..store.subscribers import get_subscriber
    from ..store.suppressions import get_suppression, suppression_key

    with obj.engine() as engine:
        person = get_subscriber(engine, address)
        suppression = get_suppression(engine, address)
        rows = feedback_of(engine, suppression_key(address), limit)
    if person is None and suppression is None and not rows:
        raise click.ClickException(f"{address} is not a subscriber and nothing was recorded about it")
    if person is not None:
        click.echo(f"{person.email}: {person.status}" + (f" ({person.name})" if person.name else ""))
        if person.consent_source or person.consent_at:
            click.echo(f"  consent: {person.consent_source or '-'} {person.consent_at or ''}".rstrip())
        if person.tags:
            click.echo(f"  tags: {', '.join(person.tags)}")
    else:
        click.echo(f"{address}: not a subscriber")
    if suppression is not None:
        click.echo(f"  suppressed since {suppression.created_at:%Y-%m-%d %H:%M} UTC: {suppression.reason}"
                   + (f" ({suppression.source})" if suppression.source else ""))
    else:
        click.echo("  not suppressed")
    if rows:
        click.echo("  bounces and complaints:")
    for row in rows:
        where = f" run {row.run_id} delivery {row.delivery_id}" if row.delivery_id else ""
        words = " ".join(p for p in (row.code, row.text) if p)
        click.echo(f"    {row.at:%Y-%m-%d %H:%M} {row.kind.replace('_', ' ')} via {row.source}{where}: {words}")


@click.command("suppress")
@click.argument("email")
@click.option("--reason", required=True, help="Why, e.g. 'asked by phone' or 'hard bounce'.")
@click.option("--source", default="cli", show_default=True, help="Where the request came from.")
@click.pass_obj
def suppress(obj: Context, email: str, reason: str, source: str) -> None:
    """Never send anything to EMAIL again, whatever campaign or segment."""
    from ..store.suppressions import get_suppression
    from ..store.suppressions import suppress as add

    with obj.engine() as engine:
        if add(engine, email, reason, source):
            click.echo(f"suppressed {email}")
        else:
            row = get_suppression(engine, email)
            assert row is not None  # add() has just found it suppressed
            click.echo(f"{email} was already suppressed since {row.created_at:%Y-%m-%d} ({row.reason})")


@click.command("unsuppress")
@click.argument("email")
@click.pass_obj
def unsuppress(obj: Context, email: str) -> None:
    """Lift the suppression of EMAIL (its subscriber status still applies)."""
    from ..store.suppressions import unsuppress as lift

    with obj.engine() as engine:
        if lift(engine, email):
            click.echo(f"{email} is no longer suppressed")
        else:
            click.echo(f"{email} was not suppressed")


COMMANDS = (subscribers, suppress, unsuppress)
