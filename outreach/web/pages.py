"""Pages in the shared layout (templates/layout.html), in the visitor's language, with a CSRF
token for their forms. Every area renders through `render`, so every page has the same
header, footer, language, headers and escaping (Jinja2's autoescape: a name a subscriber
typed is text, never markup)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .i18n import Language
from .site import Site


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def language(request: Request, own: str | None = None) -> Language:
    """The page's language: `?lang=`, the subscriber's own (`own`), the browser's, English."""
    return site_of(request).i18n.choose(request.query_params.get("lang"), own,
                                        request.headers.get("accept-language"))


def render(request: Request, template: str, lang: Language, *, status: int = 200, framable: bool = False,
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    site = site_of(request)
    cookies: dict[str, str] = {}
    csrf = site.csrf.token(request, cookies)
    html = site.environment(lang).get_template(template).render(
        lang=lang.code, csrf=csrf, request_path=request.url.path, **site.page_context(), **context)
    response = HTMLResponse(html, status_code=status, headers=headers)
    for value in cookies.values():
        site.csrf.set_cookie(response, value, framable=framable)
    response.headers["content-language"] = lang.code
    return response


def message(request: Request, lang: Language, title: str, text: str, *, status: int = 200,
            **context: Any) -> HTMLResponse:
    """A page that only says something (an error, a link that is no longer valid)."""
    return render(request, "message.html", lang, status=status, title=title, text=text, **context)


def mask_address(address: str) -> str:
    """`olivia.martinez@example.org` → `o•••@example.org`: enough for its owner to recognise,
    too little for whoever the link was forwarded to."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}" if local else "•••"
