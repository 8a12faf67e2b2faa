"""Mailgun's signed webhooks: HMAC-SHA256 of timestamp + token under the HTTP webhook signing
key (OUTREACH_MAILGUN_WEBHOOK_KEY), hex, compared in constant time; the timestamp must be
within `bounces.webhooks.tolerance`. Each event is recorded once (by its id); Mailgun's
temporary failures are keyed by message, so its retries of one message count as one soft
bounce."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...bounces.reports import Finding, bounce_kind
from ...models import FeedbackKind
from ...settings import Webhooks
from .base import Accepted, Event, Refused, Webhook, address, epoch, fresh, load_json, message_id, obj, text, when


class Mailgun(Webhook):
    name = "mailgun"

    def configured(self, hooks: Webhooks) -> bool:
        return bool(hooks.mailgun_signing_key)

    def accept(self, headers: Mapping[str, str], body: bytes, hooks: Webhooks, now: datetime) -> Accepted:
        payload = load_json(body)
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            raise Refused(403, "no Mailgun signature")
        timestamp, token, given = (str(signature.get(k, ""))[:200] for k in ("timestamp", "token", "signature"))
        assert hooks.mailgun_signing_key is not None
        key = hooks.mailgun_signing_key.encode()
        expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not token or not hmac.compare_digest(expected, given):
            raise Refused(403, "the Mailgun signature does not verify")
        fresh(epoch(timestamp), now, hooks.tolerance)
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise Refused(400, "no event-data")
        event = mailgun_event(data, now)
        return Accepted(events=[event] if event else [])


def mailgun_event(data: dict[str, Any], now: datetime) -> Event | None:
    who = address(data.get("recipient"))
    kind = data.get("event")
    if not who:
        return None
    message = obj(data.get("message"))
    headers = obj(message.get("headers"))
    envelope = obj(data.get("envelope"))
    msg_id = message_id(headers.get("message-id"))
    event_id = text(data.get("id"), 200)
    if kind == "failed":
        status = obj(data.get("delivery-status"))
        code = text(status.get("code"), 32)
        words = text(status.get("message")) or text(status.get("description")) or text(data.get("reason"))
        permanent = data.get("severity") == "permanent"
        hard = permanent and (data.get("reason") in ("bounce", "suppress-bounce")
                              or bounce_kind(code, words) is FeedbackKind.HARD_BOUNCE)
        finding = Finding(FeedbackKind.HARD_BOUNCE if hard else FeedbackKind.SOFT_BOUNCE, who, code, words)
        if not permanent:
            event_id = f"temporary:{msg_id or event_id}"
    elif kind == "complained":
        finding = Finding(FeedbackKind.COMPLAINT, who, "abuse", "complaint (Mailgun)")
    elif kind == "unsubscribed":
        finding = Finding(FeedbackKind.UNSUBSCRIBE, who, "unsubscribed", "unsubscribed through Mailgun")
    else:
        return None
    if not event_id:
        return None
    return Event(event_id, (finding,), when(data.get("timestamp"), now), msg_id,
                 address(envelope.get("sender")))
