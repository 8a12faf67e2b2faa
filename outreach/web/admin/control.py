"""Pause, resume, cancel and retry a run from the dashboard.

Each action is two steps, so a stray click does nothing: GET /admin/runs/N/ACTION shows what
it will do and asks to confirm; the confirmation is a POST from that page, checked for its
CSRF token and origin (a script with the bearer token needs neither: no browser sends that
header by itself). The work is the ledger's (store.pause_run, ...), the same the CLI calls.
"""
from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ... import store
from ...models import DeliveryState
from ..i18n import Language
from ..pages import language, render, site_of
from .auth import Operator
from .dashboard import actions_for
from .login import guarded

log = logging.getLogger(__name__)
ACTIONS = ("pause", "resume", "cancel", "retry")
RETRYABLE = (DeliveryState.FAILED, DeliveryState.UNKNOWN)


def _texts(lang: Language, action: str) -> tuple[str, str, str]:
    """(question, what happens, button) for an action."""
    _ = lang.gettext  # the name pybabel extracts
    if action == "pause":
        return (_("Pause this run?"),
                _("Nothing more of it is sent until you resume it; what a worker already handed to the provider "
                  "still arrives."),
                _("Pause the run"))
    if action == "resume":
        return (_("Resume this run?"), _("Its held deliveries are due again as they were planned."),
                _("Resume the run"))
    if action == "cancel":
        return (_("Cancel this run?"),
                _("Its remaining deliveries are cancelled for good and never sent. This cannot be undone."),
                _("Cancel the run"))
    return (_("Send again to those who did not get it?"),
            _("The deliveries that ended as you choose below are sent again; nobody who got it gets it twice."),
            _("Send again"))


async def confirm(request: Request) -> Response:
    lang = language(request)
    action = request.path_params["action"]
    run_id = int(request.path_params["run_id"])
    run = await run_in_threadpool(store.get_run, site_of(request).engine, run_id)
    if run is None or action not in ACTIONS:
        return render(request, "admin_message.html", lang, status=404, title=lang.gettext("No such run"),
                      text=lang.gettext("There is no run with this number."), operator=request.state.operator)
    question, consequence, button = _texts(lang, action)
    allowed = action in actions_for(run.status)
    return render(request, "admin_confirm.html", lang, title=question, run=run, action=action,
                  consequence=consequence, button=button, allowed=allowed, operator=request.state.operator,
                  status=200 if allowed else 409)


def _act(request: Request, action: str, run_id: int, form: dict[str, Any], operator: Operator) -> tuple[bool, str]:
    engine = site_of(request).engine
    who = f"{operator.name} (dashboard)"
    note = str(form.get("reason") or "").strip()[:500]
    if action == "pause":
        return store.pause_run(engine, run_id, f"paused by {who}" + (f": {note}" if note else "")), ""
    if action == "resume":
        return store.resume_run(engine, run_id), ""
    if action == "cancel":
        moved = store.cancel_run(engine, run_id, f"cancelled by {who}" + (f": {note}" if note else ""))
        return store.get_run(engine, run_id).status == "cancelled", str(moved)  # type: ignore[union-attr]
    states = [s for s in form.get("states", []) if s in RETRYABLE]
    if not states:
        return False, "states"
    return store.retry_run(engine, run_id, states) > 0, ""


async def perform(request: Request) -> Response:
    site = site_of(request)
    lang = language(request)
    action = request.path_params["action"]
    run_id = int(request.path_params["run_id"])
    operator: Operator = request.state.operator
    data = await request.form()
    by_token = operator.via == "token" and request.headers.get("authorization")
    if not by_token and not site.csrf.check(request, data):
        return render(request, "admin_message.html", lang, status=403, title=lang.gettext("This form expired"),
                      text=lang.gettext("Nothing was changed. Go back, reload the page and try again."),
                      operator=operator)
    if action not in ACTIONS or await run_in_threadpool(store.get_run, site.engine, run_id) is None:
        return JSONResponse({"error": "no such run or action"}, status_code=404)
    form = {"reason": data.get("reason"), "states": data.getlist("states")}
    changed, detail = await run_in_threadpool(_act, request, action, run_id, form, operator)
    if detail == "states":
        return render(request, "admin_message.html", lang, status=400, title=lang.gettext("Nothing chosen"),
                      text=lang.gettext("Choose failed, unknown or both, then confirm again."), operator=operator)
    log.info("run %d: %s by %s from the dashboard (%s)", run_id, action, operator.name,
             "done" if changed else "unchanged")
    if by_token:
        return JSONResponse({"run": run_id, "action": action, "changed": changed})
    suffix = f"&lang={lang.code}" if lang.code != "en" else ""
    return RedirectResponse(f"/admin/runs/{run_id}?done={action if changed else 'unchanged'}{suffix}",
                            status_code=303)


def routes() -> list[BaseRoute]:
    path = "/admin/runs/{run_id:int}/{action:str}"
    return [Route(path, guarded(confirm), methods=["GET"]), Route(path, guarded(perform), methods=["POST"])]
