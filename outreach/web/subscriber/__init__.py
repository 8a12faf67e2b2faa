"""The subscriber's side: the pages reached through links in email, and the sign-up form."""
from __future__ import annotations

from starlette.routing import BaseRoute

from . import preferences, signup, unsubscribe, view


def routes() -> list[BaseRoute]:
    return [*unsubscribe.routes(), *view.routes(), *signup.routes(), *preferences.routes()]
