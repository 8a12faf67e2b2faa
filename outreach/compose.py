"""Turn a campaign step and a recipient into the payload a channel sends.

Used by preview and by the sender, so what a manager previews is exactly what is sent.
"""
from __future__ import annotations

from .campaigns import Campaign, Step
from .channels.base import OutgoingEmail, OutgoingTweet
from .links import LinkSigner
from .settings import Settings
from .templating import Recipient, Renderer


class Composer:
    def __init__(self, settings: Settings, signer: LinkSigner, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.signer = signer
        self.renderer = renderer or Renderer(settings.path(settings.templates_dir), settings.organization)
        self._attributes = tuple(settings.subscribers.attributes)

    def _recipient(self, recipient: Recipient) -> Recipient:
        # Declared custom attributes are always present (None when unknown), so a template
        # can write `subscriber.attrs.chapter or "..."` without tripping StrictUndefined.
        missing = [a for a in self._attributes if a not in recipient.attrs]
        if not missing:
            return recipient
        attrs = dict(recipient.attrs)
        attrs.update(dict.fromkeys(missing))
        return Recipient(**{**recipient.__dict__, "attrs": attrs})

    def email(self, campaign: Campaign, step: Step, recipient: Recipient) -> OutgoingEmail:
        account = self.settings.smtp_account(step.account)
        links = self.signer.links(recipient.email, campaign.name, step.id, account.unsubscribe_mailto)
        ctx = self.renderer.context(campaign, step, self._recipient(recipient), links)
        rendered = self.renderer.email(step.template, ctx)
        return OutgoingEmail(
            to_addr=recipient.email,
            to_name=recipient.name,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            list_unsubscribe_url=links.unsubscribe,
            list_unsubscribe_mailto=links.unsubscribe_mailto,
            headers={"X-Outreach-Campaign": f"{campaign.name}/{step.id}"},
        )

    def tweet(self, campaign: Campaign, step: Step, posted_ids: tuple[str, ...] = ()) -> OutgoingTweet:
        ctx = self.renderer.context(campaign, step, None, None)
        return OutgoingTweet(parts=self.renderer.tweet(step.template, ctx), posted_ids=posted_ids)
