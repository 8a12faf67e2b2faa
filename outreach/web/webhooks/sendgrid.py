"""SendGrid's signed event webhook: an ECDSA (P-256, SHA-256) signature over the timestamp
header followed by the raw body, checked with the verification key SendGrid shows
(`bounces.webhooks.sendgrid_public_key`, base64). A batch holds many events; each is
recorded once (by `sg_event_id`)."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...bounces.reports import Finding, bounce_kind
from ...models import FeedbackKind
from ...settings import Webhooks
from .base import Accepted, Event, Refused, Webhook, address, epoch, fresh, load_json, message_id, text, when

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
_DROPPED = {"Bounced Address": FeedbackKind.HARD_BOUNCE, "Spam Reporting Address": FeedbackKind.COMPLAINT,
            "Unsubscribed Address": FeedbackKind.UNSUBSCRIBE, "Invalid": FeedbackKind.HARD_BOUNCE}


@lru_cache(maxsize=4)
def _key(text_key: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(base64.b64decode(text_key.strip()))
    except (ValueError, binascii.Error):
        raise Refused(503, "bounces.webhooks.sendgrid_public_key is not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refused(503, "bounces.webhooks.sendgrid_public_key is not an ECDSA key")
    return key


class SendGrid(Webhook):
    name = "sendgrid"

    def configured(self, hooks: Webhooks) -> bool:
        return bool(hooks.sendgrid_public_key)

    def accept(self, headers: Mapping[str, str], body: bytes, hooks: Webhooks, now: datetime) -> Accepted:
        signature, timestamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
        if not signature or not timestamp or len(timestamp) > 20:
            raise Refused(403, "the SendGrid signature headers are missing")
        assert hooks.sendgrid_public_key is not None
        try:
            _key(hooks.sendgrid_public_key).verify(base64.b64decode(signature, validate=True),
                                                   timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
            raise Refused(403, "the SendGrid signature does not verify") from None
        fresh(epoch(timestamp), now, hooks.tolerance)
        events = load_json(body)
        if not isinstance(events, list):
            raise Refused(400, "not a list of SendGrid events")
        return Accepted(events=[e for raw in events if isinstance(raw, dict) and (e := sendgrid_event(raw, now))])


def sendgrid_event(raw: dict[str, Any], now: datetime) -> Event | None:
    who = address(raw.get("email"))
    kind = raw.get("event")
    if not who or not isinstance(kind, str):
        return None
    status, reason = text(raw.get("status"), 32), text(raw.get("reason"))
    finding: Finding | None = None
    if kind == "bounce":
        # type "blocked": refused for the content or the sender's reputation, not the address
        hard = raw.get("type", "bounce") == "bounce" and bounce_kind(status, reason) is FeedbackKind.HARD_BOUNCE
        finding = Finding(FeedbackKind.HARD_BOUNCE if hard else FeedbackKind.SOFT_BOUNCE, who, status, reason)
    elif kind == "dropped" and reason in _DROPPED:
        finding = Finding(_DROPPED[reason], who, "dropped", f"SendGrid dropped it: {reason}")
    elif kind == "spamreport":
        finding = Finding(FeedbackKind.COMPLAINT, who, "abuse", "spam report (SendGrid)")
    elif kind in ("unsubscribe", "group_unsubscribe"):
        finding = Finding(FeedbackKind.UNSUBSCRIBE, who, kind, "unsubscribed through SendGrid")
    if finding is None:
        return None  # deferred (a retry in progress), delivered, open, click...
    event_id = text(raw.get("sg_event_id"), 200)
    if not event_id:
        return None  # nothing to make it idempotent with
    return Event(event_id, (finding,), when(raw.get("timestamp"), now), message_id(raw.get("smtp-id")))
