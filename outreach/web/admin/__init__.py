"""The operator's dashboard under /admin (and /metrics beside it), behind auth.py's Gate.

    auth.py        credentials from the environment, signed sessions, the bearer token
    login.py       sign in (rate-limited in Redis) and out
    dashboard.py   campaigns and runs with live progress, queues, workers, limits, schedule
    control.py     pause, resume, cancel, retry a run: a confirmation page, then a CSRF-checked POST

Every route but the sign-in is wrapped by `guarded`: no operator, no page.
"""
from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    from . import control, dashboard, login

    return [*login.routes(), *dashboard.routes(), *control.routes()]
