"""What every response and every form gets: security headers, CSRF protection, the
same-origin check, and the client's address.

Headers (SecurityHeaders, on every response unless the endpoint set its own): a strict
Content-Security-Policy (own scripts and styles only, no framing: `frame-ancestors 'none'`
except on the embeddable sign-up form, which names `web.embed_origins`), nosniff,
`Referrer-Policy: no-referrer` (a page's URL holds a token: it must not reach another site
through a link in a viewed email), `Cache-Control: no-store` on pages (they are personal),
HSTS when the public address is https.

CSRF, for every form that changes something (not for the RFC 8058 one-click POST, which a
mailbox provider sends without cookies, nor for the JSON API, which needs a CORS preflight):
1. the request must come from our own origin: browsers send `Sec-Fetch-Site` (or `Origin`)
   with every POST, and a cross-site form post is refused on that alone;
2. a signed double-submit token: a random `csrf` cookie, and in the form an HMAC of it
   under a key derived from OUTREACH_SECRET_KEY, which another site can neither read nor
   make. A form inside a frame on another site may get no cookie at all (browsers block
   third-party cookies); the sign-up form then relies on (1), since signing someone up
   needs no authority a cookie carries (double opt-in is its real defence).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..content.links import derive_key

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# An email as the subscriber got it (view online): its own inline styles and remote images,
# never a script, sandboxed so that even hand-written markup in a template cannot act.
EMAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; font-src https: data:; "
             "form-action 'none'; base-uri 'none'; frame-ancestors 'none'; "
             "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def framable_csp(origins: list[str]) -> str:
    """PAGE_CSP, allowing `origins` (and ourselves) to show the page in a frame."""
    return PAGE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self' " + " ".join(origins)
                            if origins else "frame-ancestors 'self'")


class SecurityHeaders:
    """ASGI middleware: the default headers, where the endpoint did not set its own."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.defaults = {
            "content-security-policy": PAGE_CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cross-origin-opener-policy": "same-origin",
            "cross-origin-resource-policy": "same-origin",
            "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        }
        if https:
            self.defaults["strict-transport-security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    if name not in headers:
                        headers[name] = value
                if "frame-ancestors 'none'" in headers["content-security-policy"]:
                    headers.setdefault("x-frame-options", "DENY")  # for browsers without CSP 2
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Csrf:
    """Signed double-submit tokens (see the module's docstring)."""

    COOKIE = "csrf"

    def __init__(self, secret_key: str, base_url: str) -> None:
        self._key = derive_key(secret_key, "csrf v1")
        self.origin = origin_of(base_url)
        self.https = self.origin.startswith("https:")
        # __Host-: the browser accepts it only from this host, over https, for path /
        self.cookie = f"__Host-{self.COOKIE}" if self.https else self.COOKIE

    def _sign(self, value: str) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, value.encode("ascii"), hashlib.sha256)[:18]).decode()

    def token(self, request: Request, response_cookies: dict[str, str]) -> str:
        """The form field for this visitor, setting the cookie (in `response_cookies`) when it
        has none yet."""
        value = request.cookies.get(self.cookie)
        if not value or len(value) > 100 or not value.isascii():
            value = secrets.token_urlsafe(24)
            response_cookies[self.cookie] = value
        return self._sign(value)

    def set_cookie(self, response: Response, value: str, *, framable: bool = False) -> None:
        if framable and self.https:
            # sent inside a frame on the organization's site too (CHIPS: partitioned per site)
            header = (f"{self.cookie}={value}; Path=/; Secure; HttpOnly; SameSite=None; Partitioned")
            response.headers.append("set-cookie", header)
            return
        response.set_cookie(self.cookie, value, path="/", secure=self.https, httponly=True, samesite="lax")

    def same_origin(self, request: Request) -> bool | None:
        """True when the browser says the request comes from one of our pages, False when it
        says another site, None when it says nothing (old browsers, non-browser clients)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site in ("same-origin", "none")
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            return origin.lower() in (self.origin, origin_of(str(request.base_url)))
        return None

    def check(self, request: Request, form: Mapping[str, object], *, cookieless_ok: bool = False) -> bool:
        """Whether a form post may be acted on."""
        same = self.same_origin(request)
        if same is False:
            return False
        value = request.cookies.get(self.cookie)
        field = form.get("csrf")
        if value and isinstance(field, str) and hmac.compare_digest(self._sign(value), field):
            return True
        return cookieless_ok and not value and same is True


def client_address(request: Request) -> str:
    """The client's address: uvicorn puts the one named by a trusted proxy here
    (`web.trusted_proxies`); nothing else in a request is believed."""
    return request.client.host if request.client else "unknown"
