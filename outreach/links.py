"""Signed per-recipient links (unsubscribe, view in browser).

A token names the recipient and the run it came from and is signed with
OUTREACH_SECRET_KEY, so nobody can unsubscribe someone else by editing a URL.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer

from .errors import DataError

_SALT_UNSUBSCRIBE = "outreach.unsubscribe"
_SALT_VIEW = "outreach.view"


@dataclass(frozen=True)
class Links:
    unsubscribe: str
    view_in_browser: str
    unsubscribe_mailto: str | None = None


class LinkSigner:
    def __init__(self, secret_key: str, base_url: str) -> None:
        self._unsub = URLSafeSerializer(secret_key, salt=_SALT_UNSUBSCRIBE)
        self._view = URLSafeSerializer(secret_key, salt=_SALT_VIEW)
        self.base_url = base_url.rstrip("/")

    def links(self, email: str, campaign: str, step: str, mailto: str | None = None) -> Links:
        unsub = self._unsub.dumps([email, campaign])
        view = self._view.dumps([email, campaign, step])
        mailto_link = None
        if mailto:
            mailto_link = f"mailto:{mailto}?subject={quote('unsubscribe ' + unsub)}"
        return Links(
            unsubscribe=f"{self.base_url}/unsubscribe/{unsub}",
            view_in_browser=f"{self.base_url}/view/{view}",
            unsubscribe_mailto=mailto_link,
        )

    def read_unsubscribe(self, token: str) -> tuple[str, str]:
        """(email, campaign) from a token, or DataError when it was tampered with."""
        try:
            email, campaign = self._unsub.loads(token)
        except (BadSignature, ValueError, TypeError):
            raise DataError("this unsubscribe link is invalid or was altered") from None
        return email, campaign
