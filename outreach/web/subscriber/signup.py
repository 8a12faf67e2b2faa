"""Sign-up with double opt-in.

    GET  /subscribe            the form (may be framed by `web.embed_origins`)
    POST /subscribe            the form's post (CSRF-checked)
    POST /api/subscribe        the same as JSON, for the organization's own site or server
                               ({"email": ..., "name"?, "language"?, "timezone"?, "topics"?: [...]})
    GET  /confirm/{token}      the link in the confirmation email: a page with a button...
    POST /confirm/{token}      ...that confirms. Mail-security scanners follow every GET in an
                               email; only a person presses the button.

A sign-up makes (or refreshes) a `pending` subscriber and queues the confirmation email as
one delivery of the built-in step (delivery/system.py): the dispatcher sends it at its next
tick, through the same channel, limits and ledger as any campaign. Pending subscribers are
in no audience, and the sender's last check refuses them to every campaign step.

Every outcome answers the same ("check your inbox"), so the form does not tell who is
subscribed. Floods are bounded per address and per client address (`web.signup_limits_*`,
in Redis: shared by every web process), a hidden field that people never fill catches
simple bots (they are answered as if it worked), and an already-confirmed, bounced or
suppressed address gets nothing.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...content.links import CONFIRM, PREFERENCES
from ...delivery.system import schedule_confirmation
from ...errors import DataError, TransientError
from ...models import Subscriber, SubscriberStatus
from ...store import self_service
from ...subscribers.fields import make_subscriber
from ..i18n import Language
from ..pages import language, mask_address, message, render, site_of
from ..security import client_address, framable_csp
from ..site import Site
from .common import Refused, language_of, person_for

HONEYPOT = "website"  # a field people do not see (hidden by CSS, skipped by keyboard and screen readers)


class Limited(Exception):
    pass


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _form_page(request: Request, lang: Language, *, status: int = 200, error: str | None = None,
               values: Mapping[str, Any] | None = None) -> Response:
    site = site_of(request)
    return render(request, "subscribe.html", lang, status=status, framable=True, error=error,
                  values=values or {}, topics=site.topics(lang),
                  headers={"content-security-policy": framable_csp(site.settings.web.embed_origins)})


async def form(request: Request) -> Response:
    return _form_page(request, language(request))


def _check_limits(site: Site, client: str, email: str) -> None:
    web = site.settings.web
    # the address is hashed with the key: Redis never holds an address
    who = hashlib.blake2b(email.lower().encode(), key=site.address_key, digest_size=12).hexdigest()
    for key, limits in ((f"signup-client:{client}", web.signup_limits_per_client),
                        (f"signup-address:{who}", web.signup_limits_per_address)):
        if not site.limiter.acquire(key, limits):
            raise Limited


def _sign_up(site: Site, person: Subscriber, topics: list[str], client: str, source: str) -> None:
    """Runs in a worker thread: limits, the ledger, the confirmation."""
    _check_limits(site, client, person.email)
    result = self_service.sign_up(site.engine, person, topics, source)
    if result.outcome.confirm:
        schedule_confirmation(site.runtime, result.subscriber_id, result.email)


def _person(site: Site, values: Mapping[str, Any], lang: Language) -> tuple[Subscriber, list[str]]:
    # from the browser's script: an unknown one is left out, not an error. Checked against the
    # IANA list itself: ZoneInfo("Asia") raises IsADirectoryError, not ZoneInfoNotFoundError.
    zone = str(values.get("timezone") or "").strip()
    if zone not in _zones():
        zone = ""
    language_value = str(values.get("language") or lang.code)
    person = make_subscriber({"email": str(values.get("email") or ""), "name": str(values.get("name") or ""),
                              "timezone": zone, "language": language_value})
    raw_topics = values.get("topics") or []
    topics = [t for t in (raw_topics if isinstance(raw_topics, list) else [raw_topics])
              if isinstance(t, str) and t in site.settings.topics]
    return person.replace(status=SubscriberStatus.PENDING), topics


async def submit(request: Request) -> Response:
    site = site_of(request)
    data = await request.form()
    lang = language(request, str(data.get("language") or "") or None)
    values = {"email": data.get("email"), "name": data.get("name"), "language": data.get("language"),
              "timezone": data.get("timezone"), "topics": data.getlist("topics")}
    if not site.csrf.check(request, data, cookieless_ok=True):
        return _form_page(request, lang, status=403, values=values,
                          error=lang.gettext("This form has expired. Please try again."))
    done = message(request, lang, lang.gettext("Check your inbox"),
                   lang.gettext("If this address can subscribe, we have sent it an email with a link. Open it to "
                                "confirm your subscription."), framable=True)
    done.headers["content-security-policy"] = framable_csp(site.settings.web.embed_origins)
    if data.get(HONEYPOT):
        return done
    try:
        person, topics = _person(site, values, lang)
    except DataError:
        return _form_page(request, lang, status=400, values=values,
                          error=lang.gettext("Please enter a valid email address."))
    try:
        await run_in_threadpool(_sign_up, site, person, topics, client_address(request), "sign-up form")
    except Limited:
        return _form_page(request, lang, status=429, values=values,
                          error=lang.gettext("Too many sign-ups. Please try again later."))
    except TransientError:
        return _form_page(request, lang, status=503, values=values,
                          error=lang.gettext("Signing up is not possible right now. Please try again later."))
    return done


def _cors(request: Request) -> dict[str, str]:
    origin = (request.headers.get("origin") or "").lower()
    if origin and origin in site_of(request).settings.web.embed_origins:
        return {"access-control-allow-origin": origin, "vary": "Origin",
                "access-control-allow-methods": "POST", "access-control-allow-headers": "content-type",
                "access-control-max-age": "600"}
    return {"vary": "Origin"}


async def api_preflight(request: Request) -> Response:
    return Response(status_code=204, headers=_cors(request))


async def api_submit(request: Request) -> Response:
    """JSON in, JSON out. A browser can only post JSON here from another site after a CORS
    preflight that `web.embed_origins` allows, so no CSRF token is needed."""
    site = site_of(request)
    headers = _cors(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "send application/json"}, status_code=415, headers=headers)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body is not JSON"}, status_code=400, headers=headers)
    if not isinstance(body, dict):
        return JSONResponse({"error": "send a JSON object"}, status_code=400, headers=headers)
    ok = JSONResponse({"status": "check-inbox"}, status_code=202, headers=headers)
    if body.get(HONEYPOT):
        return ok
    lang = language(request, str(body.get("language") or "") or None)
    try:
        person, topics = _person(site, body, lang)
    except DataError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400, headers=headers)
    try:
        await run_in_threadpool(_sign_up, site, person, topics, client_address(request), "sign-up API")
    except Limited:
        return JSONResponse({"error": "too many sign-ups; try again later"}, status_code=429, headers=headers)
    except TransientError:
        return JSONResponse({"error": "signing up is not possible right now"}, status_code=503, headers=headers)
    return ok


# --- confirm -----------------------------------------------------------------------------------

async def _confirmable(request: Request) -> tuple[Any, Any, Language] | Response:
    try:
        token, person = await person_for(request, CONFIRM)
    except Refused as refused:
        return refused.response
    site = site_of(request)
    lang = language_of(request, person)
    status = person.subscriber.status
    prefs = site.signer.url(PREFERENCES, person.subscriber.link_id or "")
    if status is SubscriberStatus.CONFIRMED:
        return message(request, lang, lang.gettext("You are subscribed"),
                       lang.gettext("Your subscription was already confirmed."), action=prefs,
                       action_label=lang.gettext("Manage your subscription"))
    expired = (token.issued_at or 0) + site.settings.web.confirm_expires.total_seconds() < time.time()
    if status is not SubscriberStatus.PENDING or expired:
        return message(request, lang, lang.gettext("This link has expired"),
                       lang.gettext("Sign up again and we will send you a new link."), status=410,
                       action="/subscribe", action_label=lang.gettext("Sign up"))
    return token, person, lang


async def confirm_page(request: Request) -> Response:
    found = await _confirmable(request)
    if isinstance(found, Response):
        return found
    _, person, lang = found
    return render(request, "confirm.html", lang, address=mask_address(person.subscriber.email))


async def confirm_post(request: Request) -> Response:
    data = await request.form()
    found = await _confirmable(request)
    if isinstance(found, Response):
        return found
    _, person, lang = found
    site = site_of(request)
    if not site.csrf.check(request, data):
        return message(request, lang, lang.gettext("This form has expired"),
                       lang.gettext("Reload the page and try again."), status=403)
    await run_in_threadpool(self_service.confirm, site.engine, person.id)
    return message(request, lang, lang.gettext("You are subscribed"),
                   lang.gettext("Thank you for confirming. You can change what you get at any time."),
                   action=site.signer.url(PREFERENCES, person.subscriber.link_id or ""),
                   action_label=lang.gettext("Manage your subscription"))


def routes() -> list[Route]:
    return [Route("/subscribe", form, methods=["GET"]),
            Route("/subscribe", submit, methods=["POST"]),
            Route("/api/subscribe", api_submit, methods=["POST"]),
            Route("/api/subscribe", api_preflight, methods=["OPTIONS"]),
            Route("/confirm/{token}", confirm_page, methods=["GET"]),
            Route("/confirm/{token}", confirm_post, methods=["POST"])]
