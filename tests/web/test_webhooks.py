"""Provider webhooks with real signatures made by test keys: an RSA certificate served from a
loopback HTTP server that the SNS verifier is pointed at through settings, an ECDSA key for
SendGrid, HMAC keys for Mailgun, basic auth for Postmark. Each verified event is recorded
once; forged, altered, replayed or unauthenticated requests are refused and change nothing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from outreach.store import create_run, get_subscriber, is_suppressed, record_sent
from outreach.store.feedback import feedback_of
from outreach.store.ledger import add_delivery
from outreach.web import create_app
from outreach.web.webhooks.ses import string_to_sign

from .conftest import BASE, person

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
MAILGUN_KEY = "key-mailgun-test-signing"
POSTMARK_PASSWORD = "postmark-test-password"
MESSAGE_ID = "<msg-1@example.org>"


# --- a loopback stand-in for SNS: serves the signing certificate, records confirmations -----

class SnsStandIn:
    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
        self.key, self.pem = key, cert.public_bytes(serialization.Encoding.PEM)
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests.append(self.path)
                body = stand_in.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, message: dict, version: str = "1", key: rsa.RSAPrivateKey | None = None) -> dict:
        message = {**message, "SignatureVersion": version,
                   "SigningCertURL": f"{self.base}/SimpleNotificationService-test.pem"}
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(string_to_sign(message), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, payload: dict, *, message_id: str = "sns-1", at: datetime | None = None,
                     topic: str = TOPIC) -> dict:
        return {"Type": "Notification", "MessageId": message_id, "TopicArn": topic, "Subject": None,
                "Message": json.dumps(payload), "Timestamp": _iso(at or datetime.now(UTC))}


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.fixture(scope="module")
def sns():
    stand_in = SnsStandIn()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


@pytest.fixture(scope="module")
def sendgrid_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hooks(project, engine, redis_prefix, sns, sendgrid_key):
    public = base64.b64encode(sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    config = project.root / "config" / "outreach.yaml"
    config.write_text(config.read_text() + f"""
bounces:
  webhooks:
    ses_topics: ["{TOPIC}"]
    sns_hosts: '127\\.0\\.0\\.1:\\d+'
    sns_schemes: [http]
    sendgrid_public_key: "{public}"
""")
    project.env.update(OUTREACH_MAILGUN_WEBHOOK_KEY=MAILGUN_KEY, OUTREACH_POSTMARK_WEBHOOK_PASSWORD=POSTMARK_PASSWORD)
    app = create_app(project.settings(), engine=engine, limiter_prefix=redis_prefix)
    with TestClient(app, base_url=BASE) as client:
        yield client
    app.state.site.runtime.redis.close()


def sent_to(engine, email: str = "ana@example.org", provider_id: str = MESSAGE_ID) -> int:
    """A subscriber and a delivery of a run to them, accepted by the provider."""
    sub = person(engine, email)
    run = create_run(engine, "news", "letter", datetime(2030, 1, 15, 8, tzinfo=UTC), status="planned")
    delivery = add_delivery(engine, run, email, "email", "news", datetime.now(UTC), subscriber_id=sub.id)
    record_sent(engine, delivery, provider_id)
    return delivery


def ses_bounce(permanent: bool = True, email: str = "ana@example.org", feedback_id: str = "fb-1") -> dict:
    return {"notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent" if permanent else "Transient", "bounceSubType": "General",
                       "feedbackId": feedback_id, "timestamp": "2026-11-26T01:02:03.000Z",
                       "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
            "mail": {"messageId": "ses-internal-id", "source": "news@example.org",
                     "commonHeaders": {"messageId": MESSAGE_ID}}}


# --- Amazon SES through SNS ------------------------------------------------------------------

def test_a_signed_ses_bounce_is_recorded_once_against_its_delivery(hooks, engine, sns):
    delivery = sent_to(engine)
    body = json.dumps(sns.sign(sns.notification(ses_bounce())))
    started = time.monotonic()
    answer = hooks.post("/webhooks/ses", content=body, headers={"x-amz-sns-message-type": "Notification"})
    elapsed = time.monotonic() - started
    assert answer.status_code == 200 and answer.json() == {"recorded": 1, "already_recorded": 0}
    assert elapsed < 2.0  # answered at once (the certificate fetch included)
    assert is_suppressed(engine, "ana@example.org")
    assert get_subscriber(engine, "ana@example.org").status == "bounced"
    (row,) = feedback_of(engine, "ana@example.org")
    assert (row.source, row.kind, row.delivery_id, row.code) == ("ses", "hard_bounce", delivery, "5.1.1")
    # SNS delivers the same message again (at least once): nothing new
    again = hooks.post("/webhooks/ses", content=body)
    assert again.json() == {"recorded": 0, "already_recorded": 1}
    assert len(feedback_of(engine, "ana@example.org")) == 1


def test_signature_version_2_and_a_complaint(hooks, engine, sns):
    sent_to(engine)
    complaint = {"notificationType": "Complaint",
                 "complaint": {"feedbackId": "fb-c", "complaintFeedbackType": "abuse", "userAgent": "Yahoo!-Mail",
                               "complainedRecipients": [{"emailAddress": "ana@example.org"}],
                               "timestamp": "2026-11-26T01:02:03.000Z"},
                 "mail": {"commonHeaders": {"messageId": MESSAGE_ID}}}
    answer = hooks.post("/webhooks/ses", content=json.dumps(sns.sign(sns.notification(complaint), "2")))
    assert answer.status_code == 200 and answer.json()["recorded"] == 1
    assert get_subscriber(engine, "ana@example.org").status == "complained"
    assert is_suppressed(engine, "ana@example.org")


def test_a_subscription_is_confirmed_after_its_signature_verifies(hooks, sns):
    sns.requests.clear()  # the stand-in serves every test of the module
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "tok-123", "TopicArn": TOPIC,
               "Message": "You have chosen to subscribe", "Timestamp": _iso(datetime.now(UTC)),
               "SubscribeURL": f"{sns.base}/confirm?Action=ConfirmSubscription&Token=tok-123"}
    # forged: the SubscribeURL changed after signing; nothing is visited
    signed = sns.sign(confirm)
    forged = {**signed, "SubscribeURL": f"{sns.base}/confirm?Token=evil"}
    assert hooks.post("/webhooks/ses", content=json.dumps(forged)).status_code == 403
    assert not any("/confirm" in p for p in sns.requests)
    # genuine: answered, then the subscription is confirmed
    answer = hooks.post("/webhooks/ses", content=json.dumps(signed))
    assert answer.status_code == 200
    assert "/confirm?Action=ConfirmSubscription&Token=tok-123" in sns.requests


@pytest.mark.parametrize("forgery", ["altered", "other key", "wrong topic", "foreign certificate host", "old",
                                     "unsigned", "bad version"])
def test_forged_or_replayed_sns_messages_are_refused_and_change_nothing(hooks, engine, sns, forgery):
    sent_to(engine)
    message = sns.sign(sns.notification(ses_bounce()))
    if forgery == "altered":
        message["Message"] = json.dumps(ses_bounce(email="ben@example.org"))
    elif forgery == "other key":
        message = sns.sign(sns.notification(ses_bounce()), key=rsa.generate_private_key(65537, 2048))
    elif forgery == "wrong topic":
        message = sns.sign(sns.notification(ses_bounce(), topic="arn:aws:sns:us-east-1:999:other"))
    elif forgery == "foreign certificate host":
        message["SigningCertURL"] = "http://127.0.0.2.example.org/cert.pem"
    elif forgery == "old":
        message = sns.sign(sns.notification(ses_bounce(), at=datetime.now(UTC) - timedelta(hours=2)))
    elif forgery == "unsigned":
        del message["Signature"]
    elif forgery == "bad version":
        message["SignatureVersion"] = "3"
    answer = hooks.post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 403, answer.text
    assert not is_suppressed(engine, "ana@example.org") and feedback_of(engine, "ana@example.org") == []


def test_malformed_bodies_are_refused(hooks):
    assert hooks.post("/webhooks/ses", content=b"{not json").status_code == 400
    assert hooks.post("/webhooks/ses", content=b'{"Type": "Other"}').status_code == 400
    assert hooks.post("/webhooks/ses", content=b"x" * (5 * 1024 * 1024 + 1)).status_code == 413


# --- Postmark ----------------------------------------------------------------------------------

def test_postmark_needs_its_credentials_and_records_a_bounce_once(hooks, engine):
    sent_to(engine)
    record = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
              "Email": "ana@example.org", "BouncedAt": "2026-11-26T01:02:03Z", "MessageID": "pm-1",
              "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
              "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found)."}
    assert hooks.post("/webhooks/postmark", json=record).status_code == 401
    assert hooks.post("/webhooks/postmark", json=record, auth=("postmark", "guess")).status_code == 401
    assert hooks.post("/webhooks/postmark", json=record, headers={"authorization": "Basic !!!"}).status_code == 401
    assert not is_suppressed(engine, "ana@example.org")
    good = hooks.post("/webhooks/postmark", json=record, auth=("postmark", POSTMARK_PASSWORD))
    assert good.status_code == 200 and good.json()["recorded"] == 1
    assert get_subscriber(engine, "ana@example.org").status == "bounced"
    (row,) = feedback_of(engine, "ana@example.org")
    assert (row.code, row.delivery_id is not None) == ("HardBounce", True)  # found by the address
    assert hooks.post("/webhooks/postmark", json=record,
                      auth=("postmark", POSTMARK_PASSWORD)).json()["already_recorded"] == 1


def test_postmark_complaints_unsubscribes_and_auto_responders(hooks, engine):
    for who in ("ana@example.org", "ben@example.org", "cy@example.org"):
        person(engine, who)
    auth = ("postmark", POSTMARK_PASSWORD)
    hooks.post("/webhooks/postmark", auth=auth, json={"RecordType": "SpamComplaint", "ID": 1, "Type": "SpamComplaint",
                                                      "Email": "ana@example.org"})
    hooks.post("/webhooks/postmark", auth=auth, json={"RecordType": "SubscriptionChange", "MessageID": "m2",
                                                      "Recipient": "ben@example.org", "SuppressSending": True,
                                                      "SuppressionReason": "ManualSuppression",
                                                      "ChangedAt": "2026-11-26T01:02:03Z"})
    hooks.post("/webhooks/postmark", auth=auth, json={"RecordType": "Bounce", "ID": 3, "Type": "AutoResponder",
                                                      "Email": "cy@example.org"})
    assert get_subscriber(engine, "ana@example.org").status == "complained"
    assert get_subscriber(engine, "ben@example.org").status == "unsubscribed"
    assert not is_suppressed(engine, "ben@example.org")  # an unsubscribe can be undone by its owner
    assert get_subscriber(engine, "cy@example.org").status == "confirmed"


# --- SendGrid ----------------------------------------------------------------------------------

def sendgrid_post(client, key, events, *, timestamp: int | None = None, tamper: bool = False):
    body = json.dumps(events).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = base64.b64encode(key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    if tamper:
        body = body.replace(b"ana@", b"ben@")
    return client.post("/webhooks/sendgrid", content=body, headers={
        "X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "content-type": "application/json"})


def test_a_signed_sendgrid_batch_is_recorded_event_by_event(hooks, engine, sendgrid_key):
    delivery = sent_to(engine)
    for who in ("ben@example.org", "cy@example.org", "di@example.org"):
        person(engine, who)
    now = int(time.time())
    events = [
        {"email": "ana@example.org", "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist", "sg_event_id": "e1",
         "smtp-id": MESSAGE_ID, "timestamp": now},
        {"email": "ben@example.org", "event": "spamreport", "sg_event_id": "e2", "timestamp": now},
        {"email": "cy@example.org", "event": "deferred", "sg_event_id": "e3", "timestamp": now},
        {"email": "di@example.org", "event": "unsubscribe", "sg_event_id": "e4", "timestamp": now},
        {"email": "cy@example.org", "event": "open", "sg_event_id": "e5", "timestamp": now},
    ]
    answer = sendgrid_post(hooks, sendgrid_key, events)
    assert answer.status_code == 200 and answer.json() == {"recorded": 3, "already_recorded": 0}
    (row,) = feedback_of(engine, "ana@example.org")
    assert row.delivery_id == delivery and row.kind == "hard_bounce"
    assert get_subscriber(engine, "ben@example.org").status == "complained"
    assert get_subscriber(engine, "cy@example.org").status == "confirmed"
    assert get_subscriber(engine, "di@example.org").status == "unsubscribed"
    assert sendgrid_post(hooks, sendgrid_key, events).json() == {"recorded": 0, "already_recorded": 3}


@pytest.mark.parametrize("forgery", ["tampered", "old", "other key", "no headers"])
def test_forged_or_replayed_sendgrid_posts_are_refused(hooks, engine, sendgrid_key, forgery):
    sent_to(engine)
    events = [{"email": "ana@example.org", "event": "spamreport", "sg_event_id": "x1", "timestamp": 1}]
    if forgery == "tampered":
        answer = sendgrid_post(hooks, sendgrid_key, events, tamper=True)
    elif forgery == "old":
        answer = sendgrid_post(hooks, sendgrid_key, events, timestamp=int(time.time()) - 3600)
    elif forgery == "other key":
        answer = sendgrid_post(hooks, ec.generate_private_key(ec.SECP256R1()), events)
    else:
        answer = hooks.post("/webhooks/sendgrid", json=events)
    assert answer.status_code == 403
    assert get_subscriber(engine, "ana@example.org").status == "confirmed"


# --- Mailgun -----------------------------------------------------------------------------------

def mailgun_post(client, event_data, *, key: str = MAILGUN_KEY, timestamp: int | None = None,
                 token: str = "tok-abcdef0123456789"):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return client.post("/webhooks/mailgun", json={"signature": {"timestamp": ts, "token": token,
                                                                "signature": signature}, "event-data": event_data})


def test_a_signed_mailgun_failure_is_a_hard_bounce(hooks, engine):
    delivery = sent_to(engine)
    data = {"id": "mg-1", "event": "failed", "severity": "permanent", "reason": "bounce",
            "recipient": "ana@example.org", "timestamp": time.time(),
            "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
            "message": {"headers": {"message-id": MESSAGE_ID.strip("<>")}}}
    answer = mailgun_post(hooks, data)
    assert answer.status_code == 200 and answer.json()["recorded"] == 1
    (row,) = feedback_of(engine, "ana@example.org")
    assert (row.delivery_id, row.kind, row.code) == (delivery, "hard_bounce", "550")
    assert mailgun_post(hooks, data).json()["already_recorded"] == 1


def test_mailgun_retries_of_one_message_are_one_soft_bounce(hooks, engine):
    sent_to(engine)
    for n in range(3):
        mailgun_post(hooks, {"id": f"mg-t{n}", "event": "failed", "severity": "temporary",
                             "recipient": "ana@example.org", "timestamp": time.time(),
                             "delivery-status": {"code": 452, "message": "4.2.2 mailbox full"},
                             "message": {"headers": {"message-id": "msg-1@example.org"}}})
    assert [r.kind for r in feedback_of(engine, "ana@example.org")] == ["soft_bounce"]


@pytest.mark.parametrize("forgery", ["other key", "old", "no signature"])
def test_forged_or_replayed_mailgun_posts_are_refused(hooks, engine, forgery):
    person(engine, "ana@example.org")
    data = {"id": "mg-c", "event": "complained", "recipient": "ana@example.org", "timestamp": time.time()}
    if forgery == "other key":
        answer = mailgun_post(hooks, data, key="key-guessed")
    elif forgery == "old":
        answer = mailgun_post(hooks, data, timestamp=int(time.time()) - 3600)
    else:
        answer = hooks.post("/webhooks/mailgun", json={"event-data": data})
    assert answer.status_code == 403
    assert get_subscriber(engine, "ana@example.org").status == "confirmed"


def test_an_unconfigured_provider_is_not_there(client):
    # the plain project configures no webhook
    for name in ("ses", "postmark", "sendgrid", "mailgun"):
        assert client.post(f"/webhooks/{name}", content=b"{}").status_code == 404
    assert client.get("/webhooks/ses").status_code == 405
