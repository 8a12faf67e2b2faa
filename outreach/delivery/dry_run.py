"""`outreach send --dry-run`: render every message of a campaign for its real audience and
count, without sending or recording anything."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from twitter_text import parse_tweet

from ..authoring.audience import segments_for
from ..store.audience import audience_count, audience_select
from ..authoring.campaigns import Campaign, Step
from ..content.compose import Composer
from ..errors import TemplateRenderError
from ..content.links import LinkSigner
from ..channels.smtp.mime import build_email
from ..store import load_for_sending
from ..settings import Settings
from ..store import engine_for, migrations

BATCH = 1000


def dry_run(settings: Settings, campaign: Campaign, steps: Sequence[Step], echo: Callable[[str], None]) -> None:
    engine = engine_for(settings)
    migrations.require_current(engine)
    composer = Composer(settings, LinkSigner(settings.secret_key or "dry-run-only", settings.base_url))
    select = audience_select(campaign.audience, segments_for(settings))
    for step in steps:
        if step.channel == "x":
            parts = composer.tweet(campaign, step).parts
            lengths = ", ".join(str(parse_tweet(p).weightedLength) for p in parts)
            echo(f"{campaign.name}/{step.id}: 1 post ({len(parts)} part(s); weighted length {lengths})")
            continue
        account = settings.smtp_account(step.account)
        total = audience_count(engine, select)
        rendered = errors = size = 0
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(select)
            for chunk in result.partitions(BATCH):
                loaded = load_for_sending(engine, [r.id for r in chunk])
                for item in loaded.values():
                    try:
                        msg = composer.email(campaign, step, item.subscriber)
                        size += len(build_email(msg, account.from_, account.reply_to, "dry-run.invalid"))
                        rendered += 1
                    except TemplateRenderError as exc:
                        errors += 1
                        if errors <= 5:
                            echo(f"  error for {item.subscriber.email}: {exc}")
        avg = size // rendered if rendered else 0
        echo(f"{campaign.name}/{step.id}: {total} recipient(s), {rendered} rendered, {errors} error(s), "
             f"average {avg} bytes; nothing sent")
