"""Signed per-recipient links: unsubscribe, view online, preferences and, in the double
opt-in email, confirm.

A token says nothing about the person: it carries the subscriber's `link_id` (128 random
bits the database made for that row, stored in `subscribers.link_id`), what the link is
about (the campaign and step, or when a confirmation was sent), and a 128-bit tag made with a
key derived from OUTREACH_SECRET_KEY:

    token = base64url( version(1) | link_id(16) | context | tag(16) )
    tag   = BLAKE2b-128(key, person="outreach " + kind)( version | link_id | context )

- Unguessable and opaque: without a link of that person nobody can name their link_id, and
  it is neither the address nor the row id (which would tell the list's size and order).
- Tamper-proof: a token whose tag does not verify is refused before the database is asked,
  so forged tokens cost one hash; each kind (unsubscribe, view, preferences, confirm) keys
  its tag differently, so a view link is not an unsubscribe link. Someone who copied
  `link_id`s out of the database still cannot make links without the key.
- Cheap on the send path: keyed BLAKE2b is a MAC by design (RFC 7693; Python's hashlib
  documents it as the faster replacement for HMAC), about 1.3 µs per tag here against 4-5 µs
  for HMAC-SHA256, and a message needs three; no database round trip per message (the
  link_id comes with the subscriber row the sender loads anyway).
- Key rotation: tags are made with OUTREACH_SECRET_KEY and checked against it and then each
  of OUTREACH_PREVIOUS_SECRET_KEYS, so links in mail sent before a rotation keep working as
  long as the old key stays listed (at least 60 days; keeping it longer costs nothing).
- Nothing expires except confirmation links (settings `web.confirm_expires`): an
  unsubscribe link must work whenever the email is read.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DataError

VERSION = 1
_VERSION = bytes([VERSION])
_TAG = 16          # bytes of the HMAC kept: 128 bits
_LINK_ID = 16      # bytes of a link_id (32 hex digits in the database)
MAX_TOKEN = 600    # characters: longer is not ours (campaign and step names are ≤ 200 each)
# Sample subscribers (preview, validate) have no row, hence no link_id: their links are well
# formed and lead nowhere.
PREVIEW_LINK_ID = "0" * 32

UNSUBSCRIBE, VIEW, PREFERENCES, CONFIRM, ACT = "unsubscribe", "view", "preferences", "confirm", "act"
# BLAKE2b personalization; `act` (the advocacy page and its "I sent it" buttons) carries the campaign
_KIND = {UNSUBSCRIBE: b"u", VIEW: b"v", PREFERENCES: b"p", CONFIRM: b"c", ACT: b"a"}
_PATH = {UNSUBSCRIBE: "unsubscribe", VIEW: "view", PREFERENCES: "preferences", CONFIRM: "confirm", ACT: "act"}


@dataclass(frozen=True)
class Links:
    """What templates read as `links`. `confirm` is set only for a step that confirms a
    sign-up (delivery/system.py)."""

    unsubscribe: str
    view_in_browser: str
    unsubscribe_mailto: str | None = None
    preferences: str | None = None
    confirm: str | None = None


LINK_FIELDS = tuple(f.name for f in dataclasses.fields(Links))


@dataclass(frozen=True)
class LinkToken:
    """A token that verified: whose it is (`link_id`) and what it is about."""

    kind: str
    link_id: str
    campaign: str | None = None
    step: str | None = None
    issued_at: int | None = None  # confirm: seconds since the epoch


def derive_key(secret: str, purpose: str) -> bytes:
    """A key for one purpose from OUTREACH_SECRET_KEY (HMAC-SHA256 as a KDF, once per process),
    so links and the web's CSRF tokens never share a key."""
    return hmac.digest(secret.encode("utf-8"), f"outreach {purpose}".encode(), "sha256")


def _macs(key: bytes) -> dict[str, hashlib.blake2b]:
    """One keyed hash per kind, copied for each tag (keying costs as much as hashing)."""
    return {kind: hashlib.blake2b(key=key, digest_size=_TAG, person=b"outreach " + code)
            for kind, code in _KIND.items()}


def _tag(mac: hashlib.blake2b, body: bytes) -> bytes:
    mac = mac.copy()
    mac.update(body)
    return mac.digest()


class LinkSigner:
    def __init__(self, secret_key: str, base_url: str, previous_keys: Sequence[str] = ()) -> None:
        self._mac = _macs(derive_key(secret_key, "links v1"))
        self._verify = (self._mac, *(_macs(derive_key(k, "links v1")) for k in previous_keys if k))
        self.base_url = base_url.rstrip("/")

    # --- making -------------------------------------------------------------------------

    def links(self, link_id: str | None, campaign: str, step: str, mailto: str | None = None, *,
              confirm: bool = False) -> Links:
        lid = bytes.fromhex(link_id or PREVIEW_LINK_ID)
        unsub = self._sign(UNSUBSCRIBE, lid, campaign.encode("utf-8"))
        view = self._sign(VIEW, lid, (campaign + "\0" + step).encode("utf-8"))
        mailto_link = None
        if mailto:
            # the token is URL-safe already (letters, digits, "-", "_"): nothing to quote
            mailto_link = f"mailto:{mailto}?subject=unsubscribe%20{unsub}"
        base = self.base_url
        return Links(
            unsubscribe=f"{base}/unsubscribe/{unsub}",
            view_in_browser=f"{base}/view/{view}",
            unsubscribe_mailto=mailto_link,
            preferences=f"{base}/preferences/{self._sign(PREFERENCES, lid, b'')}",
            confirm=f"{base}/confirm/{self.token(CONFIRM, link_id or PREVIEW_LINK_ID)}" if confirm else None,
        )

    def token(self, kind: str, link_id: str, campaign: str = "", step: str = "",
              issued_at: int | None = None) -> str:
        """One token of `kind` (the web's own pages link to each other with these)."""
        lid = bytes.fromhex(link_id)
        if kind == CONFIRM:
            context = struct.pack(">I", int(time.time() if issued_at is None else issued_at))
        elif kind == VIEW:
            context = (campaign + "\0" + step).encode("utf-8")
        elif kind in (UNSUBSCRIBE, ACT):
            context = campaign.encode("utf-8")
        else:
            context = b""
        return self._sign(kind, lid, context)

    def url(self, kind: str, link_id: str, campaign: str = "", step: str = "", issued_at: int | None = None) -> str:
        return f"{self.base_url}/{_PATH[kind]}/{self.token(kind, link_id, campaign, step, issued_at)}"

    def _sign(self, kind: str, link_id: bytes, context: bytes) -> str:
        body = _VERSION + link_id + context
        return base64.urlsafe_b64encode(body + _tag(self._mac[kind], body)).rstrip(b"=").decode("ascii")

    # --- reading ------------------------------------------------------------------------

    def read(self, kind: str, token: str) -> LinkToken:
        """The verified content of a token of `kind`; DataError when it is malformed, was
        altered, is of another kind, or was made with a key we no longer hold."""
        if kind not in _KIND:
            raise ValueError(kind)
        try:
            if not token or len(token) > MAX_TOKEN:
                raise ValueError
            text = token.encode("ascii")
            raw = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
        except (ValueError, UnicodeError, binascii.Error):
            raise DataError(f"this {kind} link is invalid or was altered") from None
        # one spelling per token: padding, stray characters or unused low bits make another
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=") == text
        if not canonical or len(raw) < 1 + _LINK_ID + _TAG or raw[:1] != _VERSION:
            raise DataError(f"this {kind} link is invalid or was altered")
        body, tag = raw[:-_TAG], raw[-_TAG:]
        if not any(hmac.compare_digest(_tag(macs[kind], body), tag) for macs in self._verify):
            raise DataError(f"this {kind} link is invalid or was altered")
        link_id, context = body[1:1 + _LINK_ID].hex(), body[1 + _LINK_ID:]
        try:
            if kind == VIEW:
                campaign, step = context.decode("utf-8").split("\0")
                return LinkToken(kind, link_id, campaign, step)
            if kind in (UNSUBSCRIBE, ACT):
                return LinkToken(kind, link_id, context.decode("utf-8") or None)
            if kind == CONFIRM:
                (issued,) = struct.unpack(">I", context)
                return LinkToken(kind, link_id, issued_at=issued)
        except (UnicodeError, ValueError, struct.error):
            # signed by us, so only a bug could get here: refuse rather than guess
            raise DataError(f"this {kind} link is invalid or was altered") from None
        if context:
            raise DataError(f"this {kind} link is invalid or was altered")
        return LinkToken(kind, link_id)
