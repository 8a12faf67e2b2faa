"""Provider webhooks of `outreach web`: bounces, complaints and unsubscribes that Amazon SES
(through SNS), Postmark, SendGrid and Mailgun post, verified and recorded once.

    POST /webhooks/ses        SNS notifications and subscription confirmations
    POST /webhooks/postmark   basic auth (OUTREACH_POSTMARK_WEBHOOK_PASSWORD)
    POST /webhooks/sendgrid   ECDSA-signed event batches
    POST /webhooks/mailgun    HMAC-signed events

A provider that is not configured answers 404. See base.py for the sequence.
"""
from __future__ import annotations

from starlette.routing import BaseRoute, Route

from .base import Webhook
from .mailgun import Mailgun
from .postmark import Postmark
from .sendgrid import SendGrid
from .ses import Ses

WEBHOOKS: tuple[Webhook, ...] = (Ses(), Postmark(), SendGrid(), Mailgun())


def routes() -> list[BaseRoute]:
    return [Route(f"/webhooks/{hook.name}", hook.handle, methods=["POST"], name=f"webhook-{hook.name}")
            for hook in WEBHOOKS]
