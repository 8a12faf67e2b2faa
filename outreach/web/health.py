"""Probes: /healthz says the process answers (the container healthcheck, a load balancer);
/readyz says it can serve, i.e. reach the database and Redis (a rollout waits for it)."""
from __future__ import annotations

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .pages import site_of


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})


def _ready(request: Request) -> dict[str, str]:
    site = site_of(request)
    checks: dict[str, str] = {}
    try:
        with site.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is for the operator
        checks["database"] = type(exc).__name__
    try:
        site.runtime.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    return checks


async def readyz(request: Request) -> Response:
    checks = await run_in_threadpool(_ready, request)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)


def routes() -> list[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET", "HEAD"]), Route("/readyz", readyz, methods=["GET"])]
