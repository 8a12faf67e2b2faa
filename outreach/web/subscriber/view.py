"""View online: GET /view/{token} shows an email as its subscriber got it.

The step is composed again for that subscriber exactly as the sender composes it (the
step's channel `compose`, the same templates, render cache and links), so what the page
shows is what the sender would send now: the current templates and the subscriber's current
details. When the campaign or the step no longer exists (or no longer validates), or the
subscriber is gone, the page says the email is no longer available.

The email's HTML is served as its own document under a sandboxing CSP: its inline styles
and images show, no script runs, and a link followed from it sends no Referer (the URL
holds a token).
"""
from __future__ import annotations

from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ...content.links import VIEW
from ...delivery.planner import find_step
from ...errors import DeliveryError, TemplateRenderError
from ..pages import message, site_of
from ..security import EMAIL_CSP
from .common import Refused, language_of, person_for


async def page(request: Request) -> Response:
    try:
        token, person = await person_for(request, VIEW)
    except Refused as refused:
        return refused.response
    site = site_of(request)
    lang = language_of(request, person)
    campaign = site.runtime.campaign(token.campaign or "")
    step = find_step(campaign, token.step or "")
    gone = message(request, lang, lang.gettext("This email is no longer available"),
                   lang.gettext("The campaign it belonged to has changed or been removed."), status=410)
    if campaign is None or step is None or not step.channel_class.per_recipient:
        return gone
    try:
        payload = step.channel_class.compose(site.runtime.composer, campaign, step, person.subscriber)
    except (TemplateRenderError, DeliveryError):
        return gone
    html = getattr(payload, "html", None)
    if not html:  # a channel without an HTML body: its text, as text
        text = getattr(payload, "text", "")
        html = f"<!DOCTYPE html><html lang=\"{lang.code}\"><meta charset=\"utf-8\"><pre>{escape(text)}</pre></html>"
    return HTMLResponse(html, headers={"content-security-policy": EMAIL_CSP})


def routes() -> list[Route]:
    return [Route("/view/{token}", page, methods=["GET"])]
