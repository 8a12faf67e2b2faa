"""Sending that sends nothing: `outreach preview` (exactly what one recipient would get) and
`outreach send --dry-run` (every message of the real audience rendered, checked and
counted). Both compose through the step's channel, as the sender does, and let the channel
say how a person sees its payloads.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..authoring.audience import segments_for
from ..authoring.campaigns import Campaign, Step, load_campaigns
from ..authoring.events import outside_step
from ..channels import get_channel
from ..content.compose import Composer
from ..content.links import LinkSigner
from ..errors import (
    ConfigurationError,
    DataError,
    DeliveryError,
    TemplateRenderError,
    ValidationFailed,
)
from ..models import Subscriber
from ..settings import Settings
from ..store import (
    engine_for,
    find_subscriber,
    load_for_sending,
    migrations,
    normalize_url,
)
from ..store.audience import audience_count
from ..subscribers.samples import sample_subscribers
from .planner import step_audience

BATCH = 1000
Echo = Callable[[str], None]


def find_campaign(settings: Settings, name: str) -> Campaign:
    loaded = load_campaigns(settings)
    mine = [p for p in loaded.problems if name in p.file]
    if name not in loaded.campaigns:
        if mine:
            raise ValidationFailed(mine)
        raise ConfigurationError(f"no campaign named {name!r} in {settings.campaigns_dir} "
                                 f"(found: {', '.join(sorted(loaded.campaigns)) or 'none'})")
    return loaded.campaigns[name]


def find_steps(campaign: Campaign, step_id: str | None) -> list[Step]:
    """The step `step_id` of the campaign, or all of them."""
    if step_id is None:
        return list(campaign.steps)
    try:
        return [campaign.step(step_id)]
    except KeyError:
        raise ConfigurationError(f"campaign {campaign.name} has no step {step_id!r} "
                                 f"(steps: {', '.join(s.id for s in campaign.steps)})") from None


def find_recipient(settings: Settings, email_addr: str | None) -> Subscriber:
    samples = sample_subscribers(settings)
    if email_addr is None:
        return samples[0]
    wanted = email_addr.strip().lower()
    for r in samples:
        if r.email.lower() == wanted:
            return r
    url = normalize_url(settings.database_url, settings.root)
    found = None
    # don't create an empty SQLite file just to look someone up
    if url.get_backend_name() != "sqlite" or not url.database or Path(url.database).exists():
        try:
            found = find_subscriber(engine_for(settings), wanted)
        except Exception as exc:  # unreachable or un-migrated database: say so, don't crash
            raise DataError(f"no subscriber {email_addr} in the sample subscribers, and the database "
                            f"could not be searched ({exc.__class__.__name__}: {exc})") from None
    if found is None:
        raise DataError(f"no subscriber {email_addr} in the database or in the sample subscribers")
    return found


def _composer(settings: Settings, echo: Echo | None = None) -> Composer:
    if not settings.secret_key and echo is not None:
        echo("note: OUTREACH_SECRET_KEY is not set; links below are signed with a throwaway preview key")
    return Composer(settings, LinkSigner(settings.secret_key or "preview-only-key", settings.base_url))


def preview(settings: Settings, campaign_name: str, step_id: str | None, email_addr: str | None,
            out: Path | None, echo: Echo) -> None:
    campaign = find_campaign(settings, campaign_name)
    steps = find_steps(campaign, step_id)
    composer = _composer(settings, echo)
    recipient = find_recipient(settings, email_addr) if any(s.channel_class.per_recipient for s in steps) else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for step in steps:
        kind = step.channel_class
        channel = get_channel(kind.name, kind.account_for(settings, step.account))
        to = recipient if kind.per_recipient else None
        why = outside_step(campaign, step, to) if to is not None else None
        if why:
            echo(f"=== {campaign.name} / {step.id}: not sent to {to.email if to else ''}: {why} ===")
            continue
        payload = kind.compose(composer, campaign, step, to)
        if out:
            base = f"{campaign.name}.{step.id}"
            files = channel.preview_files(payload)
            for suffix, data in files.items():
                (out / f"{base}{suffix}").write_bytes(data)
            echo(f"wrote {out / base}{', '.join(files)}" + (f" (for {to.email})" if to else ""))
        else:
            echo(f"=== {campaign.name} / {step.id} ({kind.noun}" + (f" to {to.email}" if to else "") + ") ===")
            echo(channel.describe(payload))


def dry_run(settings: Settings, campaign: Campaign, steps: Sequence[Step], echo: Echo) -> None:
    """Compose and check every message the steps would send now; send and record nothing."""
    engine = engine_for(settings)
    migrations.require_current(engine)
    composer = _composer(settings)
    segments = segments_for(settings)
    for step in steps:
        select = step_audience(segments, campaign, step)
        kind = step.channel_class
        channel = get_channel(kind.name, kind.account_for(settings, step.account))
        if not kind.per_recipient:
            payload = kind.compose(composer, campaign, step, None)
            kind.validate(payload)
            echo(f"{campaign.name}/{step.id}: 1 {kind.noun} ({channel.summary(payload)}); nothing sent")
            continue
        total = audience_count(engine, select)
        rendered = errors = size = 0
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(select)
            for chunk in result.partitions(BATCH):
                loaded = load_for_sending(engine, [r.id for r in chunk], settings.subscribers.attributes)
                for item in loaded.values():
                    try:
                        payload = kind.compose(composer, campaign, step, item.subscriber)
                        kind.validate(payload)
                        size += len(next(iter(channel.preview_files(payload).values())))
                        rendered += 1
                    except (TemplateRenderError, DeliveryError) as exc:
                        errors += 1
                        if errors <= 5:
                            echo(f"  error for {item.subscriber.email}: {exc}")
        avg = size // rendered if rendered else 0
        echo(f"{campaign.name}/{step.id}: {total} recipient(s), {rendered} rendered, {errors} error(s), "
             f"average {avg} bytes; nothing sent")
