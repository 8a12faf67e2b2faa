"""Postmark bounce, spam complaint and subscription change webhooks.

Postmark signs nothing; it sends the basic-auth credentials written into the webhook's URL
(https://postmark:SECRET@example.org/webhooks/postmark). The user name is
`bounces.webhooks.postmark_username`, the password OUTREACH_POSTMARK_WEBHOOK_PASSWORD,
compared in constant time. A replay is recorded once (each record has Postmark's ID)."""
from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import datetime

from ...bounces.reports import Finding
from ...models import FeedbackKind
from ...settings import Webhooks
from .base import Accepted, Event, Refused, Webhook, address, iso, load_json, text

# Bounce types (Postmark's "Type") that say the address is bad; the rest of a bounce's types
# are soft, except those that are no bounce at all.
HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
NOT_A_BOUNCE = {"AutoResponder", "Subscribe", "ChallengeVerification", "OpenRelayTest", "VirusNotification",
                "Unknown", "InboundError", "SMTPApiError", "DMARCPolicy", "TemplateRenderingFailed"}


class Postmark(Webhook):
    name = "postmark"

    def configured(self, hooks: Webhooks) -> bool:
        return bool(hooks.postmark_password)

    def accept(self, headers: Mapping[str, str], body: bytes, hooks: Webhooks, now: datetime) -> Accepted:
        self._authorize(headers.get("authorization", ""), hooks)
        record = load_json(body)
        if not isinstance(record, dict):
            raise Refused(400, "not a Postmark webhook record")
        event = postmark_event(record, now)
        return Accepted(events=[event] if event else [])

    @staticmethod
    def _authorize(header: str, hooks: Webhooks) -> None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise Refused(401, "basic authentication required")
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise Refused(401, "malformed basic authentication") from None
        expected = f"{hooks.postmark_username}:{hooks.postmark_password}".encode()
        if not hmac.compare_digest(f"{user}:{password}".encode(), expected):
            raise Refused(401, "wrong credentials")


def postmark_event(record: dict[str, object], now: datetime) -> Event | None:
    kind = record.get("RecordType")
    who = address(record.get("Email") or record.get("Recipient"))
    if not who:
        return None
    if kind == "SpamComplaint" or record.get("Type") == "SpamComplaint":
        finding = Finding(FeedbackKind.COMPLAINT, who, "abuse", text(record.get("Description")) or "spam complaint")
        return Event(f"{record.get('ID')}", (finding,), iso(record.get("BouncedAt"), now))
    if kind == "Bounce":
        bounce_type = text(record.get("Type"), 64) or "Unknown"
        if bounce_type in NOT_A_BOUNCE:
            return None
        finding = Finding(FeedbackKind.HARD_BOUNCE if bounce_type in HARD else FeedbackKind.SOFT_BOUNCE, who,
                          bounce_type[:32], text(record.get("Details")) or text(record.get("Description")))
        return Event(f"{record.get('ID')}", (finding,), iso(record.get("BouncedAt"), now))
    if kind == "SubscriptionChange" and record.get("SuppressSending") is True:
        reason = text(record.get("SuppressionReason"), 64) or "ManualSuppression"
        kinds = {"HardBounce": FeedbackKind.HARD_BOUNCE, "SpamComplaint": FeedbackKind.COMPLAINT}
        finding = Finding(kinds.get(reason, FeedbackKind.UNSUBSCRIBE), who, reason[:32],
                          "suppressed by Postmark" if reason in kinds else "unsubscribed through Postmark")
        changed = text(record.get("ChangedAt"), 64) or ""
        return Event(f"change:{record.get('MessageID')}:{changed}", (finding,), iso(record.get("ChangedAt"), now))
    return None
