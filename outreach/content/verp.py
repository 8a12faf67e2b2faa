"""VERP: each email's envelope sender names its delivery, signed, so a bounce that comes back
to it maps to exactly one delivery (and so one subscriber and one run) without reading the
bounce's text.

    bounces+<token>@<bounces.domain>        e.g. bounces+agrpgh67umc6bri@bounces.example.org
    token = base32( delivery id (8 bytes, leading zeros dropped) | tag(8) ), lower case, no padding
    tag   = BLAKE2b-64(key derived from OUTREACH_SECRET_KEY, person "outreach verp")(id bytes)

- Short: the first deliveries make a 23-character local part, a billion 28; RFC 5321
  allows 64.
- Case-blind: some mail servers lower- or upper-case the local part of the address they bounce
  to; base32 reads the same either way.
- Signed: someone who guesses the format cannot make a bounce suppress any address they
  like; 64 bits are plenty for that (a forger gets one try per message sent to us).
- Key rotation: checked against OUTREACH_SECRET_KEY, then each OUTREACH_PREVIOUS_SECRET_KEYS,
  so bounces of mail sent before a rotation still map.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from .links import derive_key

_TAG = 8
_MAX_ID = 8
_PERSON = b"outreach verp"
_TOKEN = re.compile(r"[a-z2-7]{15,27}")  # 9 to 16 bytes


class Verp:
    """Makes and reads the envelope senders of one bounce domain."""

    def __init__(self, secret_key: str, domain: str, local_part: str = "bounces",
                 previous_keys: Sequence[str] = ()) -> None:
        self.domain = domain.lower()
        self.local_part = local_part.lower()
        keys = [derive_key(secret_key, "verp v1"), *(derive_key(k, "verp v1") for k in previous_keys if k)]
        self._macs = [hashlib.blake2b(key=k, digest_size=_TAG, person=_PERSON) for k in keys]

    def _tag(self, mac: hashlib.blake2b, body: bytes) -> bytes:
        mac = mac.copy()
        mac.update(body)
        return mac.digest()

    def token(self, delivery_id: int) -> str:
        if not 0 < delivery_id < 2 ** 63:
            raise ValueError(f"delivery id {delivery_id} out of range")
        body = delivery_id.to_bytes(_MAX_ID, "big").lstrip(b"\0")
        return base64.b32encode(body + self._tag(self._macs[0], body)).decode("ascii").rstrip("=").lower()

    def address(self, delivery_id: int) -> str:
        """The envelope sender of delivery `delivery_id`."""
        return f"{self.local_part}+{self.token(delivery_id)}@{self.domain}"

    def read_token(self, token: str) -> int | None:
        """The delivery id a token names, or None when it is not one of ours (malformed,
        altered, or signed with a key we no longer hold)."""
        token = token.strip().lower()
        if not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
        except (binascii.Error, ValueError):
            return None
        body, tag = raw[:-_TAG], raw[-_TAG:]
        if not 0 < len(body) <= _MAX_ID or body[0] == 0:
            return None
        if not any(hmac.compare_digest(self._tag(mac, body), tag) for mac in self._macs):
            return None
        return int.from_bytes(body, "big")

    def read(self, address: str) -> int | None:
        """The delivery id an address such as `bounces+TOKEN@domain` names, or None. The domain
        is not checked: a relay may rewrite it, and the tag alone proves the token is ours."""
        local = address.strip().strip("<>").rpartition("@")[0].lower()
        prefix = self.local_part + "+"
        if not local.startswith(prefix):
            return None
        return self.read_token(local[len(prefix):])
