"""Signing in to /admin and out again; `guarded`, which every other admin route goes through."""
from __future__ import annotations

import functools
import hashlib
import logging
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import TransientError
from ..pages import language, message, render, site_of
from ..security import client_address
from .auth import LOGIN_LIMITS_PER_CLIENT, LOGIN_LIMITS_PER_USER, Endpoint, Operator

log = logging.getLogger(__name__)


def guarded(endpoint: Endpoint) -> Endpoint:
    """Only for an operator: a person without a session is sent to sign in, a script or a
    page's background request gets 401, and a dashboard without credentials says what to set."""
    @functools.wraps(endpoint)
    async def check(request: Request) -> Response:
        gate = site_of(request).gate
        if not gate.enabled:
            return _off(request)
        operator = gate.operator(request)
        if operator is None:
            wants_page = request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")
            # the page's own live update (X-Live) gets 401: its script then reloads the page
            if wants_page and not request.headers.get("authorization") and not request.headers.get("x-live"):
                return RedirectResponse(f"/admin/login?next={quote(_local(request.url.path))}", status_code=303)
            return JSONResponse({"error": "sign in first"}, status_code=401,
                                headers={"www-authenticate": 'Bearer realm="outreach admin"'})
        request.state.operator = operator
        return await endpoint(request)
    return check


def _off(request: Request) -> Response:
    lang = language(request)
    return message(request, lang, lang.gettext("The dashboard is off"),
                   lang.gettext("Set OUTREACH_ADMIN_USER and OUTREACH_ADMIN_PASSWORD_HASH, or OUTREACH_ADMIN_TOKEN, "
                                "in the environment of outreach web to turn it on."), status=403)


def _local(path: str | None) -> str:
    """A place under /admin to go back to after signing in; never another site."""
    parts = urlsplit(path or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or "\\" in parts.path:
        return "/admin"
    return parts.path


def _page(request: Request, *, status: int = 200, error: str | None = None, user: str = "") -> Response:
    gate = site_of(request).gate
    lang = language(request)
    return render(request, "admin_login.html", lang, status=status, error=error, user=user,
                  next=_local(request.query_params.get("next")), takes_password=gate.takes_password,
                  takes_token=gate.takes_token)


async def form(request: Request) -> Response:
    if not site_of(request).gate.enabled:
        return _off(request)
    return _page(request)


def _attempt(request: Request, user: str, password: str, token: str) -> Operator | None | str:
    """Counts the attempt, then checks it (in a worker thread: the hash costs ~0.1 s)."""
    site = site_of(request)
    # the name is hashed with the key: Redis never holds what someone typed
    who = hashlib.blake2b(user.lower().encode("utf-8", "replace"), key=site.address_key, digest_size=12).hexdigest()
    try:
        allowed = all(site.limiter.acquire(key, limits) for key, limits in (
            (f"admin-login-client:{client_address(request)}", LOGIN_LIMITS_PER_CLIENT),
            (f"admin-login-user:{who if user else 'token'}", LOGIN_LIMITS_PER_USER)))
    except TransientError:
        return "unavailable"  # no limiter, no guessing
    if not allowed:
        return "limited"
    if token:
        return site.gate.check_token(token)
    return site.gate.check_password(user, password)


async def submit(request: Request) -> Response:
    site = site_of(request)
    if not site.gate.enabled:
        return _off(request)
    lang = language(request)
    data = await request.form()
    if not site.csrf.check(request, data):
        return _page(request, status=403, error=lang.gettext("This form expired. Please try again."))
    user, password, token = (str(data.get(k) or "")[:1000] for k in ("user", "password", "token"))
    outcome = await run_in_threadpool(_attempt, request, user, password, token)
    if outcome == "limited":
        log.warning("admin sign-in refused: too many attempts from %s", client_address(request))
        return _page(request, status=429, user=user,
                     error=lang.gettext("Too many attempts. Wait a few minutes and try again."))
    if outcome == "unavailable":
        return _page(request, status=503, user=user,
                     error=lang.gettext("Signing in is not possible right now (Redis does not answer)."))
    if not isinstance(outcome, Operator):
        log.warning("admin sign-in failed from %s", client_address(request))
        return _page(request, status=401, user=user, error=lang.gettext("Wrong name, password or token."))
    log.info("admin %s signed in from %s", outcome.name, client_address(request))
    response = RedirectResponse(_local(str(data.get("next") or "")), status_code=303)
    site.gate.set_session(response, outcome)
    return response


async def logout(request: Request) -> Response:
    site = site_of(request)
    data = await request.form()
    if not site.csrf.check(request, data):
        return JSONResponse({"error": "form expired"}, status_code=403)
    response = RedirectResponse("/admin/login", status_code=303)
    site.gate.clear_session(response)
    return response


def routes() -> list[BaseRoute]:
    return [Route("/admin/login", form, methods=["GET"]), Route("/admin/login", submit, methods=["POST"]),
            Route("/admin/logout", logout, methods=["POST"])]
