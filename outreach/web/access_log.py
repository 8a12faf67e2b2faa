"""The access log: method, the matched route's pattern (`/unsubscribe/{token}`, never the
token itself), status and time, one line per request on the `outreach.web.access` logger.

uvicorn's own access log is turned off (server.py): it writes the full path and query, and
here a path holds a token that lets its reader unsubscribe someone, and a query can hold an
address. A path that matched no route is logged as `-`."""
from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("outreach.web.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            pattern = getattr(route, "path", None) or "-"
            log.info("%s %s %s %.1fms", scope.get("method", "-"), pattern, status,
                     (time.perf_counter() - started) * 1000)
