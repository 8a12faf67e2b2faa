"""Commands about campaigns: `validate`, `preview`, `audience`, `schedule`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import Context


@click.command()
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


@click.command()
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
    from ..delivery.rehearsal import preview as run

    if email and sample:
        raise click.UsageError("give either --subscriber or --sample, not both")
    run(obj.settings, campaign, step_id, email, out, click.echo)


@click.command("audience")
@click.argument("campaign")
@click.option("--step", "step_id", help="One step of the campaign: who that step reaches.")
@click.option("--sample", "sample_size", default=10, show_default=True, type=click.IntRange(0, 10_000),
              help="How many recipients to list.")
@click.pass_obj
def audience(obj: Context, campaign: str, step_id: str | None, sample_size: int) -> None:
    """How many subscribers CAMPAIGN (or one of its steps) would reach now, and who some of
    them are."""
    from ..authoring.audience import segments_for
    from ..delivery.planner import step_audience
    from ..delivery.rehearsal import find_campaign, find_steps
    from ..store.audience import audience_count, audience_sample

    settings = obj.settings
    found = find_campaign(settings, campaign)
    steps = find_steps(found, step_id)
    label = f"{campaign}/{step_id}" if step_id else campaign
    per_recipient = [s for s in steps if s.channel_class.per_recipient]
    if not per_recipient:
        step = steps[0]
        kind = step.channel_class
        click.echo(f"{label}: one {kind.noun} from {kind.broadcast_recipient(kind.account_for(settings, step.account))}"
                   ", not sent per subscriber")
        return
    with obj.engine() as engine:
        select = step_audience(segments_for(settings), found, per_recipient[0])
        count = audience_count(engine, select)
        sample = audience_sample(engine, select, sample_size) if sample_size > 0 else []
    click.echo(f"{label}: {count} recipient{'' if count == 1 else 's'}")
    for row in sample:
        where = ", ".join(x for x in (row.city, row.country, row.timezone) if x)
        click.echo(f"  {row.email}" + (f"  {row.name}" if row.name else "") + (f"  ({where})" if where else ""))
    if count > len(sample) > 0:
        click.echo(f"  ... and {count - len(sample)} more")


@click.command("schedule")
@click.option("--days", default=7.0, show_default=True, type=click.FloatRange(min=0, max=366, min_open=True),
              help="How far ahead to look.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per occurrence, one a line.")
@click.pass_obj
def schedule(obj: Context, days: float, as_json: bool) -> None:
    """The coming sends of every step: when (in the manager's zone and in UTC), to how many,
    and for steps sent at each recipient's local time, when the first and the last get it."""
    import json

    from ..observe import coming

    rt = obj.runtime()
    found = coming(rt, days)
    zone = rt.settings.timezone
    for occ in found.occurrences:
        if as_json:
            click.echo(json.dumps(occ.to_dict(), sort_keys=True))
            continue
        who = (f"{occ.audience} recipient{'' if occ.audience == 1 else 's'}" if occ.audience is not None
               else "one post")
        line = (f"{occ.local:%Y-%m-%d %H:%M} {zone}  ({occ.at:%Y-%m-%d %H:%M} UTC)  {occ.campaign}/{occ.step}  "
                f"{occ.channel}  {who}")
        if occ.local_time and occ.first and occ.last:
            line += (f"  local time: first {occ.first:%Y-%m-%d %H:%M} UTC, last {occ.last:%Y-%m-%d %H:%M} UTC")
        if occ.run_id is not None:
            line += f"  [run {occ.run_id}: {occ.run_status}]"
        click.echo(line)
    if not found.occurrences and not as_json:
        click.echo(f"nothing is scheduled in the next {days:g} days")
    for name, reason in found.problems.items():
        click.secho(f"campaign {name}: {reason}", fg="red", err=True)
    if not as_json:
        rejected = rt.catalog.rejected()
        if rejected:
            click.echo("not scheduled (fix these, then run `outreach validate`):", err=True)
            for problem in rejected:
                click.echo(f"  {problem}", err=True)


COMMANDS = (validate, preview, audience, schedule)
