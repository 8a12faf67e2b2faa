"""The dashboard's pages."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..pages import language, render
from .login import guarded


@guarded
async def overview(request: Request) -> Response:
    lang = language(request)
    return render(request, "admin_overview.html", lang, title=lang.gettext("Runs"), operator=request.state.operator)


def routes() -> list[BaseRoute]:
    return [Route("/admin", overview, methods=["GET"])]
