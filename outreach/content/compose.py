"""Turn a campaign step and a recipient into the payload a channel sends.

Used by preview and by the sender, so what a manager previews is exactly what is sent.
"""
from __future__ import annotations

from ..authoring.campaigns import Campaign, Step
from ..channels.base import OutgoingEmail, OutgoingTweet
from .links import Links, LinkSigner
from .render_cache import LINK_FIELDS, Plan, RenderCache, plan_for
from ..settings import Settings
from ..models import Subscriber
from .templating import RenderedEmail, Renderer, email_paths


class Composer:
    def __init__(self, settings: Settings, signer: LinkSigner, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.signer = signer
        self.renderer = renderer or Renderer(settings.path(settings.templates_dir), settings.organization)
        self._attributes = tuple(settings.subscribers.attributes)
        self.cache = RenderCache()
        self._plans: dict[str, Plan | None] = {}

    def _recipient(self, recipient: Subscriber) -> Subscriber:
        # Declared custom attributes are always present (None when unknown), so a template
        # can write `subscriber.attrs.chapter or "..."` without tripping StrictUndefined.
        missing = [a for a in self._attributes if a not in recipient.attrs]
        if not missing:
            return recipient
        attrs = dict(recipient.attrs)
        attrs.update(dict.fromkeys(missing))
        return recipient.replace(attrs=attrs)

    def email(self, campaign: Campaign, step: Step, recipient: Subscriber) -> OutgoingEmail:
        account = self.settings.smtp_account(step.account)
        links = self.signer.links(recipient.email, campaign.name, step.id, account.unsubscribe_mailto)
        rendered = self._render(campaign, step, self._recipient(recipient), links)
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

    def _render(self, campaign: Campaign, step: Step, recipient: Subscriber, links: Links) -> RenderedEmail:
        """Through the render cache when the templates allow it (see render_cache.py).

        A Composer lives as long as the campaigns it was given: the Runtime builds a new one
        whenever a file under config/ or templates/ changes, so nothing stale is reused."""
        plan = self._plan(step.template)
        if plan is None:
            return self.renderer.email(step.template, self.renderer.context(campaign, step, recipient, links))
        real = links.__dict__
        marks = {f: (self.cache.placeholders[f] if real[f] is not None else None) for f in LINK_FIELDS}
        key = (campaign.name, step.id, tuple(v is None for v in marks.values()), plan.key(recipient))
        cached = self.cache.get(key)
        if cached is None:
            cached = self.cache.put(key, self.renderer.email(
                step.template, self.renderer.context(campaign, step, recipient, Links(**marks))))
        return self.cache.fill(cached, real)

    def _plan(self, template: str) -> Plan | None:
        if template not in self._plans:
            paths = email_paths(template)
            # a text part derived with html2text is not cacheable (it rewrites URLs)
            names = [paths["subject"], paths["html"], paths["text"]] if self.renderer.exists(paths["text"]) else None
            self._plans[template] = plan_for(self.renderer, names) if names else None
        return self._plans[template]

    def tweet(self, campaign: Campaign, step: Step, posted_ids: tuple[str, ...] = ()) -> OutgoingTweet:
        ctx = self.renderer.context(campaign, step, None, None)
        return OutgoingTweet(parts=self.renderer.tweet(step.template, ctx), posted_ids=posted_ids)
