"""Provider events are read from JSON that only a signature vouches for: any shape (missing
fields, wrong types, nesting, huge numbers) gives an Event or None, never an exception; and
every finding names an address."""
from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.web.webhooks.mailgun import mailgun_event
from outreach.web.webhooks.postmark import postmark_event
from outreach.web.webhooks.sendgrid import sendgrid_event
from outreach.web.webhooks.ses import ses_event
from tests.properties.conftest import bounded

NOW = datetime(2026, 11, 26, tzinfo=UTC)
KEYS = ["notificationType", "eventType", "bounce", "complaint", "mail", "bounceType", "bouncedRecipients",
        "complainedRecipients", "emailAddress", "status", "diagnosticCode", "feedbackId", "timestamp",
        "commonHeaders", "messageId", "source", "RecordType", "Type", "Email", "Recipient", "ID", "Details",
        "SuppressSending", "SuppressionReason", "ChangedAt", "BouncedAt", "email", "event", "reason", "sg_event_id",
        "smtp-id", "recipient", "severity", "delivery-status", "code", "message", "headers", "message-id",
        "envelope", "sender", "id", "complaintFeedbackType"]
VALUES = ["Bounce", "Complaint", "Permanent", "Transient", "HardBounce", "SpamComplaint", "SubscriptionChange",
          "bounce", "dropped", "spamreport", "unsubscribe", "failed", "complained", "unsubscribed", "permanent",
          "temporary", "ana@example.org", "<a@b>", "5.1.1", "Bounced Address", "not-spam", "2026-11-26T01:02:03Z"]
scalars = (st.sampled_from(VALUES) | st.text(max_size=20) | st.integers() | st.floats(allow_nan=True) | st.booleans()
           | st.none())
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6),
                           max_leaves=30)
objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=10)


@settings(max_examples=300)
@given(objects)
def test_any_json_gives_an_event_or_none(data):
    with bounded(5):
        for read in (lambda d: ses_event(d, "sns-1", NOW), lambda d: postmark_event(d, NOW),
                     lambda d: sendgrid_event(d, NOW), lambda d: mailgun_event(d, NOW)):
            event = read(data)
            if event is not None:
                assert event.id and all("@" in f.address for f in event.findings)


def test_an_odd_timestamp_costs_nothing_but_the_time():
    # found while writing the property: a malformed timestamp in one event of a verified batch
    # would have refused the whole batch with a 400
    event = sendgrid_event({"email": "ana@example.org", "event": "spamreport", "sg_event_id": "e1",
                            "timestamp": "yesterday"}, NOW)
    assert event is not None and event.at == NOW
    event = mailgun_event({"id": "m1", "event": "complained", "recipient": "ana@example.org",
                           "timestamp": [1]}, NOW)
    assert event is not None and event.at == NOW
