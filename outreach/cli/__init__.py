"""The `outreach` command. Thin: each command loads settings once and calls a plain function."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import OutreachError, ValidationFailed


class Context:
    """Settings are loaded once, lazily, so `validate` can report a broken settings file
    as a problem instead of failing before it starts."""

    def __init__(self, root: Path, config: Path | None, overrides: dict) -> None:
        self.root, self.config, self.overrides = root, config, overrides
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            from ..settings import load_settings

            self._settings = load_settings(self.root, self.config, **self.overrides)
        return self._settings


class Group(click.Group):
    """Every OutreachError becomes a clear message and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            for problem in exc.problems:
                click.secho(f"error: {problem}", fg="red", err=True)
            sys.exit(1)
        except OutreachError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


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
    ctx.obj = Context(root, config, {"database_url": database_url, "redis_url": redis_url})


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def validate(obj: Context, paths: tuple[Path, ...]) -> None:
    """Check campaigns, templates and settings without sending anything."""
    from ..authoring.validation import validate as run

    report = run(obj.settings, list(paths) or None)
    for problem in report.problems:
        click.secho(f"error: {problem}", fg="red", err=True)
    campaigns = report.campaigns.campaigns
    if report.problems:
        click.echo(f"{len(report.problems)} problem(s) found; nothing was sent.", err=True)
        sys.exit(1)
    steps = sum(len(c.steps) for c in campaigns.values())
    click.echo(f"ok: {len(campaigns)} campaign(s), {steps} step(s) valid")


@cli.command()
@click.argument("campaign")
@click.option("--step", "step_id", default=None, help="Step id (default: every step).")
@click.option("--subscriber", "email", default=None, help="Render for this subscriber's data.")
@click.option("--sample", is_flag=True, help="Render for a sample subscriber (the default).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write .eml/.html/.txt files here instead of printing.")
@click.pass_obj
def preview(obj: Context, campaign: str, step_id: str | None, email: str | None, sample: bool,
            out: Path | None) -> None:
    """Render exactly what would be sent."""
    from ..delivery.preview import preview as run

    if email and sample:
        raise click.UsageError("give either --subscriber or --sample, not both")
    run(obj.settings, campaign, step_id, email, out, click.echo)


def _register() -> None:
    from . import run_cli, store_cli

    store_cli.register(cli)
    run_cli.register(cli)


_register()


def main() -> None:
    cli(prog_name="outreach")
