"""Amazon SES bounce and complaint notifications, delivered by SNS over HTTPS.

Every SNS message is verified as AWS documents it: the signing certificate is fetched from
`SigningCertURL` only when that URL is https (`bounces.webhooks.sns_schemes`) on an SNS host
(`bounces.webhooks.sns_hosts`), the message's fields are put together in SNS's canonical
order, and the signature checked with the certificate's key (RSA, SHA1 for SignatureVersion
1, SHA256 for 2). Only topics listed in `bounces.webhooks.ses_topics` are believed. A
subscription is confirmed by visiting its SubscribeURL (also checked to be an SNS host), after
the answer. Certificates are kept in memory by URL: verifying costs one fetch per
certificate, not per message.
"""
from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ...bounces.reports import Finding
from ...models import FeedbackKind
from ...settings import Webhooks
from .base import Accepted, Event, Refused, Webhook, address, fresh, iso, load_json, log, message_id, obj, text

FETCH_TIMEOUT = 5.0
MAX_CERT = 64 * 1024
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}  # SHA1 is what SNS signs version 1 with
_certs: dict[str, rsa.RSAPublicKey] = {}
_certs_lock = threading.Lock()


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """SNS's canonical form: each field name and value on a line, in this order; a
    Notification's Subject only when it has one."""
    fields = _NOTIFICATION_FIELDS if message.get("Type") == "Notification" else _SUBSCRIPTION_FIELDS
    lines = []
    for name in fields:
        if name not in message or (name == "Subject" and message.get("Subject") is None):
            continue
        lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _allowed_url(url: Any, hooks: Webhooks, what: str) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise Refused(403, f"no {what}")
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    if parts.scheme not in hooks.sns_schemes or not re.fullmatch(hooks.sns_hosts, host) or parts.username:
        raise Refused(403, f"the {what} is not an SNS address")
    return url


def _public_key(url: str) -> rsa.RSAPublicKey:
    with _certs_lock:
        key = _certs.get(url)
    if key is not None:
        return key
    try:
        response = requests.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False, stream=True)
        pem = response.raw.read(MAX_CERT + 1, decode_content=True)
        response.close()
    except requests.RequestException as exc:
        raise Refused(503, f"could not fetch the SNS signing certificate ({type(exc).__name__})") from None
    if response.status_code != 200 or len(pem) > MAX_CERT:
        raise Refused(403, "the SNS signing certificate could not be read")
    try:
        found = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise Refused(403, "the SNS signing certificate is not a certificate") from None
    if not isinstance(found, rsa.RSAPublicKey):
        raise Refused(403, "the SNS signing certificate has no RSA key")
    with _certs_lock:
        if len(_certs) > 100:  # a handful of regions' certificates; never an unbounded cache
            _certs.clear()
        _certs[url] = found
    return found


def verify(message: Mapping[str, Any], hooks: Webhooks) -> None:
    version = str(message.get("SignatureVersion", ""))
    if version not in _HASHES:
        raise Refused(403, "unknown SNS signature version")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(403, "the SNS signature is not base64") from None
    key = _public_key(_allowed_url(message.get("SigningCertURL"), hooks, "signing certificate URL"))
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), _HASHES[version]())
    except InvalidSignature:
        raise Refused(403, "the SNS signature does not verify") from None


class Ses(Webhook):
    name = "ses"

    def configured(self, hooks: Webhooks) -> bool:
        return bool(hooks.ses_topics)

    def accept(self, headers: Mapping[str, str], body: bytes, hooks: Webhooks, now: datetime) -> Accepted:
        message = load_json(body)
        if not isinstance(message, dict) or not isinstance(message.get("Type"), str):
            raise Refused(400, "not an SNS message")
        kind = message["Type"]
        if kind not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
            raise Refused(400, "unknown SNS message type")
        if message.get("TopicArn") not in hooks.ses_topics:
            raise Refused(403, "the topic is not one of bounces.webhooks.ses_topics")
        verify(message, hooks)
        fresh(iso(message.get("Timestamp"), datetime.min.replace(tzinfo=now.tzinfo)), now, hooks.tolerance)
        if kind == "SubscriptionConfirmation":
            url = _allowed_url(message.get("SubscribeURL"), hooks, "subscribe URL")
            return Accepted(follow_up=lambda: _confirm(url), note="subscription confirmed")
        if kind == "UnsubscribeConfirmation":
            return Accepted(note="unsubscribe confirmation ignored")
        try:
            notification = load_json(str(message.get("Message", "")).encode("utf-8"))
        except Refused:
            return Accepted(note="not an SES notification")  # a test message published to the topic
        event = ses_event(notification, str(message.get("MessageId", "")), now)
        return Accepted(events=[event] if event else [])


def _confirm(url: str) -> None:
    try:
        response = requests.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False)
        log.info("SNS subscription confirmed (%d)", response.status_code)
    except requests.RequestException as exc:
        log.error("could not confirm the SNS subscription: %s", type(exc).__name__)


def ses_event(notification: Any, sns_id: str, now: datetime) -> Event | None:
    """An SES notification (notificationType) or event publishing record (eventType)."""
    if not isinstance(notification, dict):
        return None
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = obj(notification.get("mail"))
    headers = obj(mail.get("commonHeaders"))
    findings: list[Finding] = []
    detail: dict[str, Any] = {}
    if kind == "Bounce" and isinstance(notification.get("bounce"), dict):
        detail = notification["bounce"]
        permanent = detail.get("bounceType") == "Permanent"
        for r in detail.get("bouncedRecipients") or []:
            if not isinstance(r, dict) or not (who := address(r.get("emailAddress"))):
                continue
            status, diagnostic = text(r.get("status"), 32), text(r.get("diagnosticCode"))
            # SES's own verdict: Permanent means "do not send to it again"; Transient and
            # Undetermined count towards the soft-bounce limit
            kind_ = FeedbackKind.HARD_BOUNCE if permanent else FeedbackKind.SOFT_BOUNCE
            findings.append(Finding(kind_, who, status or text(detail.get("bounceSubType"), 32),
                                    diagnostic or text(detail.get("bounceSubType"))))
    elif kind == "Complaint" and isinstance(notification.get("complaint"), dict):
        detail = notification["complaint"]
        if detail.get("complaintFeedbackType") == "not-spam":
            return None
        agent = text(detail.get("userAgent"))
        for r in detail.get("complainedRecipients") or []:
            if isinstance(r, dict) and (who := address(r.get("emailAddress"))):
                findings.append(Finding(FeedbackKind.COMPLAINT, who, text(detail.get("complaintFeedbackType"), 32)
                                        or "abuse", f"complaint reported by {agent}" if agent else "complaint (SES)"))
    if not findings:
        return None
    event_id = text(detail.get("feedbackId"), 200) or sns_id
    return Event(event_id, tuple(findings), iso(detail.get("timestamp"), now),
                 message_id(headers.get("messageId")), address(mail.get("source")))
