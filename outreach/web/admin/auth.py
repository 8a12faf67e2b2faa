"""Who may see /admin and /metrics, and how they prove it.

Credentials come only from the environment (settings: OUTREACH_ADMIN_USER with
OUTREACH_ADMIN_PASSWORD_HASH, and/or OUTREACH_ADMIN_TOKEN; OUTREACH_METRICS_TOKEN for
Prometheus). With none set the dashboard is off and says which variables to set: there are no
default credentials.

- Sign-in (POST /admin/login, CSRF-checked) takes the user and password, or the token. Every
  attempt is counted in Redis before it is checked (per client address and per user, the
  same sliding windows as the send limits), so guessing is slow across every web process.
- A session is a signed cookie: base64url(JSON {user, expires, credential fingerprint}) and an
  HMAC-SHA256 tag under a key derived from OUTREACH_SECRET_KEY (checked against the previous
  keys too, so a key rotation does not sign everyone out). Changing the password or the token
  changes the fingerprint: every session made with the old one stops working. HttpOnly,
  SameSite=Strict, Secure and __Host- on https, 12 hours.
- Scripts and Prometheus send `Authorization: Bearer <token>` instead.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property

from starlette.requests import Request
from starlette.responses import Response

from ...content.links import derive_key
from ...errors import ConfigurationError
from ...passwords import same_secret, verify_password
from ...settings import Limit, Settings

SESSION_SECONDS = 12 * 3600
# Sign-in attempts, counted before they are checked: per client address, and per user name
# from everywhere (a slow distributed guess), in the limiter's sliding windows.
LOGIN_LIMITS_PER_CLIENT = [Limit.parse("5/1m"), Limit.parse("30/1h")]
LOGIN_LIMITS_PER_USER = [Limit.parse("100/1h")]

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Operator:
    """Someone signed in (or a script with the token)."""

    name: str
    via: str  # "session" or "token"


class Gate:
    """Checks credentials, makes and reads sessions (see the module's docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if bool(settings.admin_user) != bool(settings.admin_password_hash):
            missing = "OUTREACH_ADMIN_PASSWORD_HASH" if settings.admin_user else "OUTREACH_ADMIN_USER"
            raise ConfigurationError(f"set {missing} too (a user signs in with a password: "
                                     "`outreach admin password` prints both lines for .env)")
        key, previous = settings.link_keys()
        self._keys = [derive_key(k, "admin session v1") for k in (key, *previous)]
        https = settings.base_url.startswith("https:")
        self.https = https
        self.cookie = "__Host-outreach-admin" if https else "outreach-admin"

    @property
    def enabled(self) -> bool:
        return bool(self.settings.admin_password_hash or self.settings.admin_token)

    @property
    def takes_password(self) -> bool:
        return bool(self.settings.admin_password_hash)

    @property
    def takes_token(self) -> bool:
        return bool(self.settings.admin_token)

    @cached_property
    def _fingerprint(self) -> str:
        """Changes when a credential changes: sessions made before are no longer valid. Not
        keyed with the secret key, so a key rotation keeps sessions (the tag is checked
        against the previous keys); 72 bits of a hash of secrets tell nothing about them."""
        material = f"{self.settings.admin_user}\0{self.settings.admin_password_hash}\0{self.settings.admin_token}"
        return hashlib.sha256(material.encode("utf-8")).digest()[:9].hex()

    # --- credentials ------------------------------------------------------------------

    def check_password(self, user: str, password: str) -> Operator | None:
        s = self.settings
        if not (s.admin_user and s.admin_password_hash):
            return None
        # the hash is checked whatever the name, so a wrong name takes as long as a wrong password
        good = verify_password(s.admin_password_hash, password)
        return Operator(s.admin_user, "session") if good and same_secret(s.admin_user, user) else None

    def check_token(self, token: str) -> Operator | None:
        if self.settings.admin_token and token and same_secret(self.settings.admin_token, token):
            return Operator("token", "token")
        return None

    def may_read_metrics(self, request: Request) -> bool:
        token = bearer(request)
        if token is None:
            return self.operator(request) is not None
        metrics = self.settings.metrics_token
        return bool(metrics and same_secret(metrics, token)) or self.check_token(token) is not None

    # --- sessions ---------------------------------------------------------------------

    def _tag(self, key: bytes, body: bytes) -> bytes:
        return hmac.digest(key, body, hashlib.sha256)

    def session_value(self, operator: Operator, now: float | None = None) -> str:
        payload = {"u": operator.name, "e": int((now or time.time()) + SESSION_SECONDS), "f": self._fingerprint}
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=")
        tag = base64.urlsafe_b64encode(self._tag(self._keys[0], body)).rstrip(b"=")
        return f"{body.decode()}.{tag.decode()}"

    def read_session(self, value: str | None, now: float | None = None) -> Operator | None:
        if not value or len(value) > 600 or not self.enabled:
            return None
        body, _, tag = value.encode("ascii", "replace").partition(b".")
        try:
            given = base64.urlsafe_b64decode(tag + b"=" * (-len(tag) % 4))
        except (binascii.Error, ValueError):
            return None
        if not any(hmac.compare_digest(self._tag(key, body), given) for key in self._keys):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
            user, expires, fingerprint = payload["u"], payload["e"], payload["f"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if fingerprint != self._fingerprint or not isinstance(expires, int) or expires < (now or time.time()):
            return None
        return Operator(str(user), "session")

    def set_session(self, response: Response, operator: Operator) -> None:
        response.set_cookie(self.cookie, self.session_value(operator), max_age=SESSION_SECONDS, path="/",
                            secure=self.https, httponly=True, samesite="strict")

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(self.cookie, path="/", secure=self.https, httponly=True, samesite="strict")

    def operator(self, request: Request) -> Operator | None:
        """Who this request comes from: a valid session cookie or the admin bearer token."""
        if not self.enabled:
            return None
        token = bearer(request)
        if token is not None:
            return self.check_token(token)
        return self.read_session(request.cookies.get(self.cookie))


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
