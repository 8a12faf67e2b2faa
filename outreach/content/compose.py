"""What every channel composes its payloads with: the sandboxed templates, each recipient's
signed links, and the render cache. A channel's `compose` says which templates make its
payload and what to do with the rendered text (channels/smtp/channel.py, channels/x.py).

Used by preview, validate, the dry run and the sender, so what a manager previews is
exactly what is sent.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import html2text

from ..models import Subscriber
from ..settings import Settings
from . import advocacy
from .links import LINK_FIELDS, Links, LinkSigner
from .render_cache import Plan, RenderCache, plan_for
from .templating import Renderer
from .verp import Verp


class Composer:
    """One per process and set of templates: the Runtime builds a new one whenever a file
    under config/ or templates/ changes, so nothing stale is reused."""

    def __init__(self, settings: Settings, signer: LinkSigner, renderer: Renderer | None = None, *,
                 cache: bool = True) -> None:
        self.settings = settings
        self.signer = signer
        self.renderer = renderer or Renderer(settings.path(settings.templates_dir), settings.organization)
        self._attributes = tuple(settings.subscribers.attributes)
        self.cache = RenderCache()
        self._use_cache = cache
        self._plans: dict[tuple[str, ...], Plan | None] = {}
        self._escapes: dict[tuple[str, ...], tuple[bool, ...]] = {}

    def exists(self, template: str) -> bool:
        return self.renderer.exists(template)

    def links(self, subscriber: Subscriber, campaign: Any, step: Any, mailto: str | None = None) -> Links:
        return self.signer.links(subscriber.link_id, campaign.name, step.id, mailto, confirm=step.confirms)

    @cached_property
    def verp(self) -> Verp | None:
        """The envelope senders of bounces.domain (None: VERP is off)."""
        bounces = self.settings.bounces
        if bounces.domain is None:
            return None
        key, previous = self.settings.link_keys()
        return Verp(key, bounces.domain, bounces.local_part, previous)

    def return_path(self, delivery_id: int | None) -> str | None:
        """The envelope sender of one delivery (VERP), or None to use the account's address."""
        return self.verp.address(delivery_id) if self.verp is not None and delivery_id else None

    def for_templates(self, subscriber: Subscriber) -> Subscriber:
        """Declared custom attributes are always present (None when unknown), so a template
        can write `subscriber.attrs.chapter or "..."` without tripping StrictUndefined."""
        attrs = subscriber.attrs
        if all(a in attrs for a in self._attributes):  # as store.load_for_sending makes them
            return subscriber
        return subscriber.replace(attrs={**dict.fromkeys(self._attributes), **attrs})

    def render(self, campaign: Any, step: Any, templates: Sequence[str], subscriber: Subscriber | None = None,
               links: Links | None = None) -> tuple[str, ...]:
        """The templates rendered for one recipient (or for nobody: a post), in order.

        Through the render cache when the templates allow it (see render_cache.py): the
        rendering is made once per distinct value of the subscriber fields they read, with
        placeholders for the links, which are put in afterwards."""
        subscriber = self.for_templates(subscriber) if subscriber is not None else None
        names = tuple(templates)
        # an advocacy campaign's letter, target and event are the supporter's own: rendered whole
        personal = subscriber is not None and advocacy.active(campaign)
        extra = advocacy.context(campaign, subscriber, self.signer) if personal else \
            (dict.fromkeys(advocacy.ADVOCACY_CONTEXT) if subscriber is not None else {})
        plan = self._plan(names) if subscriber is not None and links is not None and not personal else None
        if plan is None:
            context = {**self.renderer.context(campaign, step, subscriber, links), **extra}
            return tuple(self.renderer.render(name, context) for name in names)
        assert subscriber is not None and links is not None
        real = links.__dict__
        # None only where the recipient's own link is None, so Links(**marks) is a valid Links
        marks: dict[str, Any] = {f: (self.cache.placeholders[f] if real[f] is not None else None)
                                 for f in LINK_FIELDS}
        key = (campaign.name, step.id, names, tuple(v is None for v in marks.values()), plan.key(subscriber))
        cached = self.cache.get(key)
        if cached is None:
            context = {**self.renderer.context(campaign, step, subscriber, Links(**marks)), **extra}
            cached = self.cache.put(key, tuple(self.renderer.render(name, context) for name in names))
        escapes = self._escapes.get(names)
        if escapes is None:
            escapes = self._escapes[names] = tuple(self.renderer.autoescapes(name) for name in names)
        return self.cache.fill(cached, real, escapes)

    def html_to_text(self, html: str) -> str:
        """A readable text part for an email whose template has none."""
        return self._html2text.handle(html)

    @cached_property
    def _html2text(self) -> html2text.HTML2Text:
        h = html2text.HTML2Text()
        h.body_width = 0  # the MIME layer wraps; html2text's wrapping breaks long URLs
        h.inline_links = False
        h.ignore_images = True
        return h

    def _plan(self, names: tuple[str, ...]) -> Plan | None:
        if names not in self._plans:
            self._plans[names] = plan_for(self.renderer, list(names)) if self._use_cache else None
        return self._plans[names]
