"""The dashboard's pages: runs (with live progress, rate, ETA and a chart), the system
(backlog, queues, workers, accounts, recent failures), one run, and the coming schedule.

Each page is a shell around a live part; the page's script (static/admin.js) fetches the
live part again every few seconds and swaps it in, so nothing is built twice (the first
page and every update come from the same template) and there is no front-end build.
Everything comes from one `observe.Snapshot` per request (a few indexed queries, however big
the ledger) taken in a worker thread.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import redis as redis_lib
from babel.dates import format_datetime, format_timedelta
from babel.numbers import format_decimal
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...models import DeliveryState, RunStatus
from ...observe import Snapshot, coming, take
from ..i18n import Language
from ..pages import language, render, site_of
from ..security import PAGE_CSP
from ..site import Site
from .login import guarded
from .progress import NO_PACE, Pace, Progress, chart

LIVE_EVERY_MS = 3000
# The pages' CSP, plus what their script needs: fetching their own live part.
LIVE_CSP = PAGE_CSP.replace("default-src 'none';", "default-src 'none'; connect-src 'self';")
SCHEDULE_DAYS = 7
# The columns of a run's progress, in order: (state, label). "Remaining" is computed.
COLUMNS: tuple[tuple[str, str], ...] = (
    (DeliveryState.SENT, "Sent"), (DeliveryState.RETRY, "Retrying"), (DeliveryState.FAILED, "Failed"),
    (DeliveryState.SKIPPED, "Skipped"), (DeliveryState.UNKNOWN, "Unknown"), (DeliveryState.CANCELLED, "Cancelled"),
)


class Looks:
    """What the dashboard reads with, built once per web process (on the Site)."""

    def __init__(self, site: Site) -> None:
        self.site = site

    @cached_property
    def broker(self) -> redis_lib.Redis | None:
        url = os.environ.get("OUTREACH_BROKER_URL")
        return redis_lib.Redis.from_url(url) if url else None

    @cached_property
    def progress(self) -> Progress:
        return Progress(self.site.runtime.redis, prefix=f"{self.site.limiter_prefix}:progress")

    def snapshot(self, **narrow: Any) -> tuple[Snapshot, dict[int, Pace]]:
        rt = self.site.runtime
        snap = take(rt.settings, rt.engine, rt.redis, broker=self.broker, **narrow)
        return snap, self.progress.look(snap)


def looks(site: Site) -> Looks:
    found = site.__dict__.get("_looks")
    if found is None:
        found = site.__dict__["_looks"] = Looks(site)
    assert isinstance(found, Looks)
    return found


class Formats:
    """Numbers, times and durations in the page's language and the manager's time zone."""

    def __init__(self, lang: Language, zone: Any) -> None:
        self.lang, self.zone = lang, zone

    def n(self, value: float | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        return format_decimal(round(value, digits), format="#,##0" + ("." + "0" * digits if digits else ""),
                              locale=self.lang.code)

    def at(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        return format_datetime(value.astimezone(self.zone), "yyyy-MM-dd HH:mm", tzinfo=self.zone,
                               locale=self.lang.code)

    def utc(self, value: datetime | None) -> str:
        return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def ago(self, seconds: float | None) -> str:
        if seconds is None:
            return "—"
        return format_timedelta(timedelta(seconds=-seconds), add_direction=True, threshold=1.5,
                                locale=self.lang.code)

    def within(self, seconds: float | None) -> str:
        if seconds is None:
            return "—"
        return format_timedelta(timedelta(seconds=seconds), add_direction=True, threshold=1.5, locale=self.lang.code)

    def status(self, status: str) -> str:
        return self.lang.gettext(STATUS_LABELS.get(status, status))

    def zone_name(self) -> str:
        return str(self.zone)


# Marked for extraction (pybabel finds gettext("...") calls); translated when shown.
def _(text: str) -> str:
    return text


STATUS_LABELS: dict[str, str] = {
    RunStatus.PLANNING: _("planning"), RunStatus.PLANNED: _("sending"), RunStatus.PAUSED: _("paused"),
    RunStatus.DONE: _("done"), RunStatus.SKIPPED: _("skipped"), RunStatus.CANCELLED: _("cancelled")}
_COLUMN_LABELS = [_("Sent"), _("Retrying"), _("Failed"), _("Skipped"), _("Unknown"), _("Cancelled")]


def _context(request: Request, snap: Snapshot, paces: dict[int, Pace], lang: Language) -> dict[str, Any]:
    site = site_of(request)
    return {"snap": snap, "paces": paces, "no_pace": NO_PACE, "fmt": Formats(lang, site.settings.zone),
            "columns": COLUMNS, "chart": chart, "operator": request.state.operator, "live_every": LIVE_EVERY_MS,
            "lag": snap.scheduler_lag(), "actions": actions_for, "rated": _rated(snap)}


def _rated(snap: Snapshot) -> list[tuple[int | str, Any]]:
    """Bounce and complaint rates to show: each run shown that sent something, then each
    sending account (30 days)."""
    return [*((run_id, r) for run_id, r in snap.rates.items() if r.sent), *snap.account_rates.items()]


def actions_for(status: str) -> list[str]:
    """What an operator may do to a run in `status` (what the ledger accepts)."""
    if status in (RunStatus.PLANNING, RunStatus.PLANNED):
        return ["pause", "cancel", "retry"]
    if status == RunStatus.PAUSED:
        return ["resume", "cancel", "retry"]
    if status == RunStatus.DONE:
        return ["retry"]
    return []


async def _look(request: Request, **narrow: Any) -> tuple[Snapshot, dict[int, Pace]]:
    found: tuple[Snapshot, dict[int, Pace]] = await run_in_threadpool(looks(site_of(request)).snapshot, **narrow)
    return found


def _page(template: str, title: str, **narrow_from: Callable[[Request], Any]) -> Any:
    """A page whose live part (template `<name>_live.html`, included by the page) is what a
    request with `X-Live: 1` gets: the page's script asks for it every LIVE_EVERY_MS."""
    live_template = template.replace(".html", "_live.html")

    async def page(request: Request) -> Response:
        lang = language(request)
        narrow = {k: v for k, f in narrow_from.items() if (v := f(request)) is not None}
        snap, paces = await _look(request, **narrow)
        if "run_id" in narrow and not snap.runs:
            return render(request, "admin_message.html", lang, status=404, title=lang.gettext("No such run"),
                          text=lang.gettext("There is no run with this number."), operator=request.state.operator)
        context = _context(request, snap, paces, lang)
        query = request.url.query
        context["live_src"] = request.url.path + (f"?{query}" if query else "")
        context["campaign"] = narrow.get("campaign")
        live = request.headers.get("x-live") == "1"
        return render(request, live_template if live else template, lang, title=lang.gettext(title),
                      notice=_notice(request, lang), headers={"content-security-policy": LIVE_CSP}, **context)
    return guarded(page)


def _notice(request: Request, lang: Language) -> str | None:
    """What the last action did (set by control.py's redirect)."""
    done = request.query_params.get("done")
    texts = {"pause": lang.gettext("The run is paused. Nothing more of it is sent until you resume it."),
             "resume": lang.gettext("The run goes on."),
             "cancel": lang.gettext("The run is cancelled. Its remaining deliveries will not be sent."),
             "retry": lang.gettext("The deliveries were queued again."),
             "unchanged": lang.gettext("Nothing changed: the run was not in a state that allows this.")}
    return texts.get(done or "")


def _run_id(request: Request) -> int:
    return int(request.path_params["run_id"])


def _campaign(request: Request) -> str | None:
    return (request.query_params.get("campaign") or "").strip()[:200] or None


overview = _page("admin_overview.html", _("Runs"), campaign=_campaign)
run_page = _page("admin_run.html", _("Run"), run_id=_run_id)


@guarded
async def snapshot_json(request: Request) -> Response:
    """The snapshot for scripts (`Authorization: Bearer <OUTREACH_ADMIN_TOKEN>`)."""
    snap, paces = await _look(request)
    data = snap.to_dict()
    for run in data["runs"]:
        p = paces.get(run["id"], NO_PACE)
        run["rate"], run["eta_seconds"] = p.rate, p.eta_seconds
    return Response(json.dumps(data, default=_plain, sort_keys=True), media_type="application/json")


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@guarded
async def schedule(request: Request) -> Response:
    lang = language(request)
    site = site_of(request)
    try:
        days = min(max(float(request.query_params.get("days", SCHEDULE_DAYS)), 0.1), 90.0)
    except ValueError:
        days = SCHEDULE_DAYS
    found = await run_in_threadpool(coming, site.runtime, days)
    return render(request, "admin_schedule.html", lang, title=lang.gettext("Schedule"), schedule=found, days=days,
                  fmt=Formats(lang, site.settings.zone), operator=request.state.operator)


def routes() -> list[BaseRoute]:
    return [Route("/admin", overview, methods=["GET"]),
            Route("/admin/runs/{run_id:int}", run_page, methods=["GET"]),
            Route("/admin/schedule", schedule, methods=["GET"]),
            Route("/admin/api/snapshot", snapshot_json, methods=["GET"])]
