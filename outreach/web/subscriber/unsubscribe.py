"""Unsubscribe: the link in every email's footer and its List-Unsubscribe header.

    GET  /unsubscribe/{token}   which address (masked) and which list, one button
    POST /unsubscribe/{token}   - body List-Unsubscribe=One-Click (RFC 8058, what Gmail, Yahoo
                                  and Outlook.com send from their own unsubscribe button):
                                  unsubscribed at once, 200, no cookie, no CSRF, no redirect;
                                - the page's form (CSRF-checked): the same, with a page to say so.

Unsubscribing stops every email from the organization: the subscriber's status changes in
one committed transaction before the answer, every audience leaves them out from then on,
and deliveries already planned or queued are skipped by the sender's last check. A second
POST changes nothing and answers the same. No email confirms it. A GET changes nothing, so
link scanners that follow every link in an email do no harm.
"""
from __future__ import annotations

from markupsafe import escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ...content.links import PREFERENCES, UNSUBSCRIBE
from ...models import SubscriberStatus
from ...store import self_service
from ..pages import mask_address, message, render, site_of
from .common import Refused, language_of, person_for


def _list_name(request: Request, campaign: str | None) -> str | None:
    found = site_of(request).runtime.campaign(campaign) if campaign else None
    return (found.title or found.name) if found is not None else None


async def page(request: Request) -> Response:
    try:
        token, person = await person_for(request, UNSUBSCRIBE)
    except Refused as refused:
        return refused.response
    lang = language_of(request, person)
    site = site_of(request)
    return render(request, "unsubscribe.html", lang, address=mask_address(person.subscriber.email),
                  campaign=_list_name(request, token.campaign),
                  unsubscribed=person.subscriber.status is not SubscriberStatus.CONFIRMED
                  and person.subscriber.status is not SubscriberStatus.PENDING,
                  preferences=site.signer.url(PREFERENCES, person.subscriber.link_id or ""))


async def post(request: Request) -> Response:
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    try:
        token, person = await person_for(request, UNSUBSCRIBE)
    except Refused as refused:
        return refused.response
    site = site_of(request)
    lang = language_of(request, person)
    if not one_click and not site.csrf.check(request, form):
        return message(request, lang, lang.gettext("This form has expired"),
                       lang.gettext("Reload the page and try again."), status=403)
    await run_in_threadpool(self_service.unsubscribe, site.engine, person.id, token.campaign,
                            "one-click" if one_click else "unsubscribe page")
    title = lang.gettext("You are unsubscribed")
    text = lang.gettext("You will not get any more email from %(org)s.") % {"org": site.settings.organization.name}
    if one_click:
        # RFC 8058: a mailbox provider's request; a plain answer without cookies or redirects
        html = f"<!DOCTYPE html><html lang=\"{lang.code}\"><title>{escape(title)}</title><p>{escape(text)}</p></html>"
        return HTMLResponse(html, status_code=200)
    return message(request, lang, title, text, action=site.signer.url(PREFERENCES, person.subscriber.link_id or ""),
                   action_label=lang.gettext("Changed your mind? Manage your subscription"))


def routes() -> list[Route]:
    return [Route("/unsubscribe/{token}", page, methods=["GET"]),
            Route("/unsubscribe/{token}", post, methods=["POST"])]
