"""`outreach web`: the ASGI app people reach through links in their email.

    app.py          create_app(): the one Starlette app; each area adds its routes here
    site.py         Site: what every request shares (settings, Runtime, link signer, pages)
    pages.py        rendering pages in the shared layout, in the visitor's language
    i18n.py         gettext catalogs (English, Korean) and choosing a language
    security.py     security headers, CSRF, same-origin checks, client address
    access_log.py   an access log without tokens, addresses or query strings
    health.py       /healthz, /readyz
    subscriber/     unsubscribe (RFC 8058 one-click), view online, sign-up with double
                    opt-in, confirm, preferences
    server.py       running it under uvicorn

Stateless: every request reads and writes the database and Redis only, so more processes
behind the TLS proxy serve more requests. A new area (the operator's /admin, provider
webhooks, action pages) is a module or package with a `routes(site)` function, listed in
app.AREAS; it renders with pages.render and uses security.check_csrf on its forms.
"""
from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
