"""Preferences: GET/POST /preferences/{token}, linked from every email's footer
(`links.preferences`) and from the other pages.

What a subscriber may change here: the language of their email and pages, which of the
organization's topics (settings `topics:`) they want, a pause of a few weeks (they are left
out of every audience, and skipped at send time, until then), and unsubscribing, or
subscribing again after they did. Their address, name and other details are not shown in
full nor changed here: whoever the email was forwarded to holds the same link.
"""
from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...content.links import PREFERENCES
from ...models import SubscriberStatus
from ...store import self_service, utcnow
from ...store.self_service import Person
from ..i18n import Language
from ..pages import mask_address, message, render, site_of
from .common import Refused, language_of, person_for

PAUSE_WEEKS = (2, 4, 8)


def _page(request: Request, person: Person, lang: Language, *, notice: str | None = None,
          status: int = 200) -> Response:
    site = site_of(request)
    sub = person.subscriber
    paused = person.paused_until if person.paused_until and person.paused_until > utcnow() else None
    return render(request, "preferences.html", lang, status=status, notice=notice,
                  address=mask_address(sub.email), topics=site.topics(lang), chosen=set(sub.tags or ()),
                  current_language=lang.code, paused_until=lang.date(paused.date()) if paused else None,
                  pause_weeks=PAUSE_WEEKS, subscribed=sub.status is SubscriberStatus.CONFIRMED,
                  unsubscribed=sub.status is SubscriberStatus.UNSUBSCRIBED)


async def page(request: Request) -> Response:
    try:
        _, person = await person_for(request, PREFERENCES)
    except Refused as refused:
        return refused.response
    return _page(request, person, language_of(request, person))


def _save(request: Request, person: Person, form: FormData) -> None:
    """Write what the form chose; what it does not know is left as it was."""
    site = site_of(request)
    wanted = str(form.get("language") or "")
    language = wanted if wanted in site.i18n.catalogs else person.subscriber.language
    pause = str(form.get("pause") or "keep")
    paused_until = person.paused_until
    if pause == "none":
        paused_until = None
    elif pause.isdigit() and int(pause) in PAUSE_WEEKS:
        paused_until = utcnow() + timedelta(weeks=int(pause))
    chosen = [t for t in form.getlist("topics") if isinstance(t, str)]
    self_service.set_preferences(site.engine, person.id, language=language, topics=list(site.settings.topics),
                                 chosen=chosen, paused_until=paused_until)


async def post(request: Request) -> Response:
    form = await request.form()
    try:
        _, person = await person_for(request, PREFERENCES)
    except Refused as refused:
        return refused.response
    site = site_of(request)
    lang = language_of(request, person)
    if not site.csrf.check(request, form):
        return message(request, lang, lang.gettext("This form has expired"),
                       lang.gettext("Reload the page and try again."), status=403)
    action = form.get("action")
    if action == "unsubscribe":
        await run_in_threadpool(self_service.unsubscribe, site.engine, person.id, None, "preferences page")
        notice = lang.gettext("You are unsubscribed. You will not get any more email from us.")
    elif action == "resubscribe":
        await run_in_threadpool(self_service.resubscribe, site.engine, person.id)
        notice = lang.gettext("Welcome back: you are subscribed again.")
    elif action == "save" and person.subscriber.status is SubscriberStatus.CONFIRMED:
        await run_in_threadpool(_save, request, person, form)
        notice = None
    else:
        return _page(request, person, lang, status=400)
    fresh = await run_in_threadpool(self_service.by_link_id, site.engine, person.subscriber.link_id or "")
    assert fresh is not None  # a subscriber is never deleted by these pages
    lang = language_of(request, fresh)  # the language just chosen, if it changed
    return _page(request, fresh, lang, notice=notice or lang.gettext("Your preferences are saved."))


def routes() -> list[Route]:
    return [Route("/preferences/{token}", page, methods=["GET"]),
            Route("/preferences/{token}", post, methods=["POST"])]
