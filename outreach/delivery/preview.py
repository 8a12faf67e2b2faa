"""`outreach preview`: render a step for one recipient exactly as it would be sent."""
from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path

from twitter_text import parse_tweet

from ..authoring.campaigns import Campaign, load_campaigns
from ..content.compose import Composer
from ..errors import ConfigurationError, DataError, ValidationFailed
from ..content.links import LinkSigner
from ..channels.smtp.mime import build_email
from ..subscribers.samples import sample_subscribers
from ..settings import Settings
from ..models import Subscriber


def find_campaign(settings: Settings, name: str) -> Campaign:
    loaded = load_campaigns(settings)
    mine = [p for p in loaded.problems if name in p.file]
    if name not in loaded.campaigns:
        if mine:
            raise ValidationFailed(mine)
        raise ConfigurationError(f"no campaign named {name!r} in {settings.campaigns_dir} "
                                 f"(found: {', '.join(sorted(loaded.campaigns)) or 'none'})")
    return loaded.campaigns[name]


def find_recipient(settings: Settings, email_addr: str | None) -> Subscriber:
    samples = sample_subscribers(settings)
    if email_addr is None:
        return samples[0]
    wanted = email_addr.strip().lower()
    for r in samples:
        if r.email.lower() == wanted:
            return r
    from ..store import find_subscriber
    from ..store import engine_for, normalize_url

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


def preview(settings: Settings, campaign_name: str, step_id: str | None, email_addr: str | None,
            out: Path | None, echo: Callable[[str], None]) -> None:
    campaign = find_campaign(settings, campaign_name)
    steps = campaign.steps
    if step_id is not None:
        try:
            steps = [campaign.step(step_id)]
        except KeyError:
            raise ConfigurationError(f"campaign {campaign.name} has no step {step_id!r} "
                                     f"(steps: {', '.join(s.id for s in campaign.steps)})") from None
    secret = settings.secret_key
    if not secret:
        echo("note: OUTREACH_SECRET_KEY is not set; links below are signed with a throwaway preview key")
    composer = Composer(settings, LinkSigner(secret or "preview-only-key", settings.base_url))
    recipient = find_recipient(settings, email_addr)
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for step in steps:
        if step.channel == "email":
            account = settings.smtp_account(step.account)
            msg = composer.email(campaign, step, recipient)
            raw = build_email(msg, account.from_, account.reply_to, _domain(account.from_))
            if out:
                base = f"{campaign.name}.{step.id}"
                (out / f"{base}.eml").write_bytes(raw)
                (out / f"{base}.html").write_text(msg.html, encoding="utf-8")
                (out / f"{base}.txt").write_text(msg.text, encoding="utf-8")
                echo(f"wrote {out / base}.eml, .html and .txt (for {recipient.email})")
            else:
                echo(f"=== {campaign.name} / {step.id} (email to {recipient.email}) ===")
                echo(_readable(raw))
        else:
            tweet = composer.tweet(campaign, step)
            lines = []
            for n, part in enumerate(tweet.parts, 1):
                weighted = parse_tweet(part).weightedLength
                lines.append(f"--- tweet {n}/{len(tweet.parts)}: {weighted}/280 as X counts it ---\n{part}")
            text = "\n".join(lines)
            if out:
                path = out / f"{campaign.name}.{step.id}.txt"
                path.write_text(text + "\n", encoding="utf-8")
                echo(f"wrote {path}")
            else:
                echo(f"=== {campaign.name} / {step.id} (X, @{settings.x_account(step.account).handle}) ===")
                echo(text)


def _domain(address: str) -> str:
    m = re.search(r"@([^>\s]+)", address)
    return m.group(1) if m else "localhost"


def _readable(raw: bytes) -> str:
    """Headers as sent, then each part decoded, so a person can read the preview."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").replace("\r\n", "\n")
    parts = [head, ""]
    for part in msg.walk():
        if part.get_content_maintype() == "multipart":
            continue
        parts.append(f"--- part {part.get_content_type()} ({part['Content-Transfer-Encoding']}) ---")
        parts.append(part.get_content())
    return "\n".join(parts)
