"""The advocacy pages, reached through the signed link in a call to action (one token per
supporter and campaign, content/links.py kind `act`):

    GET  /act/{token}            the supporter's own letter, addressed to the office that serves
                                 where they live: copy buttons, the pre-filled email, every way
                                 to reach the office, and the buttons to say what they did
    GET  /act/{token}/{action}   "Did you send it?": one button, nothing recorded (link scanners
                                 in mail security gateways follow every GET)
    POST /act/{token}/{action}   records the action once (CSRF-checked), committed before the
                                 answer, then a thank-you page with the next thing to do

`action` must be one the campaign declares under `actions:`; anything else is 404, and a
campaign that no longer exists or validates is a plain "this action is over" page.
"""
from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..content import advocacy
from ..content.links import ACT
from ..store import actions as stored
from .i18n import Language
from .pages import message, render, site_of
from .subscriber.common import Refused, language_of, person_for


def labels(lang: Language) -> dict[str, tuple[str, str, str]]:
    """What the pages say about an action: (the button, the question, what was done)."""
    return {
        "sent_letter": (lang.gettext("I sent it"), lang.gettext("Did you send the letter?"),
                        lang.gettext("You sent the letter")),
        "posted": (lang.gettext("I posted it"), lang.gettext("Did you post about it?"),
                   lang.gettext("You posted about it")),
        "called": (lang.gettext("I called"), lang.gettext("Did you call the office?"),
                   lang.gettext("You called the office")),
    }


def _label(lang: Language, action: str, which: int) -> str:
    known = labels(lang).get(action)
    if known is not None:
        return known[which]
    words = action.replace("_", " ")
    return [words.capitalize(), lang.gettext("Did you do it?"), words.capitalize()][which]


async def _load(request: Request) -> tuple[Any, Any, Any, Language]:
    token, person = await person_for(request, ACT)
    lang = language_of(request, person)
    campaign = site_of(request).runtime.campaign(token.campaign or "")
    if campaign is None or not advocacy.active(campaign):
        raise Refused(message(request, lang, lang.gettext("This action is over"),
                              lang.gettext("Thank you for your help. There is nothing to do here any more."),
                              status=410))
    return token, person, campaign, lang


def _action(request: Request, campaign: Any, lang: Language) -> str:
    action = str(request.path_params["action"])
    if action not in campaign.actions:
        raise Refused(message(request, lang, lang.gettext("Page not found"),
                              lang.gettext("There is nothing at this address."), status=404))
    return action


async def page(request: Request) -> Response:
    try:
        token, person, campaign, lang = await _load(request)
    except Refused as refused:
        return refused.response
    site = site_of(request)
    ctx = advocacy.context(campaign, person.subscriber, site.signer)
    done = await run_in_threadpool(_done, site.engine, person.id, campaign)
    buttons = [(a, _label(lang, a, 0), f"/act/{request.path_params['token']}/{a}", a in done)
               for a in campaign.actions]
    return render(request, "act.html", lang, campaign_title=campaign.title or campaign.name, target=ctx["target"],
                  letter=ctx["letter"], buttons=buttons, name=person.subscriber.first_name)


def _done(engine: Any, subscriber_id: int, campaign: Any) -> set[str]:
    return {a for a in campaign.actions if stored.has_acted(engine, subscriber_id, campaign.name, a)}


async def confirm(request: Request) -> Response:
    try:
        token, person, campaign, lang = await _load(request)
        action = _action(request, campaign, lang)
    except Refused as refused:
        return refused.response
    return render(request, "act_confirm.html", lang, question=_label(lang, action, 1),
                  button=_label(lang, action, 0), back=f"/act/{request.path_params['token']}",
                  campaign_title=campaign.title or campaign.name)


async def record(request: Request) -> Response:
    form = await request.form()
    try:
        token, person, campaign, lang = await _load(request)
        action = _action(request, campaign, lang)
    except Refused as refused:
        return refused.response
    site = site_of(request)
    if not site.csrf.check(request, form):
        return message(request, lang, lang.gettext("This form has expired"),
                       lang.gettext("Reload the page and try again."), status=403)
    found = campaign.target_set.resolve(person.subscriber) if campaign.target_set is not None else None
    target = found.target.key if found is not None else None
    await run_in_threadpool(stored.record_action, site.engine, person.id, campaign.name, action, target)
    done = await run_in_threadpool(_done, site.engine, person.id, campaign)
    base = f"/act/{request.path_params['token']}"
    following = [(a, _label(lang, a, 0), f"{base}/{a}") for a in campaign.actions if a not in done]
    return render(request, "act_thanks.html", lang, done=_label(lang, action, 2), following=following, back=base,
                  campaign_title=campaign.title or campaign.name)


def routes() -> list[BaseRoute]:
    return [Route("/act/{token}", page, methods=["GET"]),
            Route("/act/{token}/{action}", confirm, methods=["GET"]),
            Route("/act/{token}/{action}", record, methods=["POST"])]
