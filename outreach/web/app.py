"""The app factory: one Starlette app made of areas, each a module with `routes()`.

    AREAS = health, subscriber, admin, metrics, webhooks, act

Around every route: the access log (no tokens, no addresses), the security headers, and one
error page for what no route matched or what failed (a person gets a plain page in their
language, never a traceback).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis as redis_lib
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..settings import Settings
from . import act, admin, health, metrics, subscriber, webhooks
from .access_log import AccessLog
from .pages import language, message
from .security import SecurityHeaders, origin_of
from .site import STATIC, Site

log = logging.getLogger(__name__)

# Each area: a function returning its routes. A new area is one more line.
AREAS: list[Callable[[], list[BaseRoute]]] = [health.routes, subscriber.routes, admin.routes, metrics.routes,
                                              webhooks.routes, act.routes]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    lang = language(request)
    if exc.status_code == 405:
        return message(request, lang, lang.gettext("This page does not do that"),
                       lang.gettext("Go back and try again."), status=405)
    return message(request, lang, lang.gettext("Page not found"),
                   lang.gettext("There is nothing at this address."), status=exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("error serving %s: %s", request.scope.get("route") and request.scope["route"].path,
              type(exc).__name__, exc_info=exc)
    lang = language(request)
    return message(request, lang, lang.gettext("Something went wrong"),
                   lang.gettext("Please try again in a few minutes."), status=500)


def create_app(settings: Settings, *, engine: Engine | None = None, redis: redis_lib.Redis | None = None,
               limiter_prefix: str = "outreach:web") -> Starlette:
    """The web app for `settings` (its database and Redis unless given)."""
    site = Site.build(settings, engine=engine, redis=redis, limiter_prefix=limiter_prefix)
    routes: list[BaseRoute] = [route for area in AREAS for route in area()]
    routes.append(Mount("/static", StaticFiles(directory=str(STATIC)), name="static"))
    handlers: dict[Any, Callable[..., Any]] = {HTTPException: _http_error, Exception: _server_error}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[
        Middleware(AccessLog),
        Middleware(SecurityHeaders, https=origin_of(settings.base_url).startswith("https:")),
    ])
    app.state.site = site
    return app
