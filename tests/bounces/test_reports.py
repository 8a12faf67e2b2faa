"""Reading what comes back: every shape of the corpus maps to the right address, class and
code; auto-replies are ignored; garbage is refused with a clear message."""
from __future__ import annotations

import pytest

from outreach.bounces.reports import ReportType, bounce_kind, parse
from outreach.errors import DataError
from outreach.models import FeedbackKind

from . import corpus

SENDER = "bounces+aeaqcaibaeaqcaib@bounces.example.org"
RCPT = "ana@example.com"

HARD = [
    (corpus.postfix_user_unknown, ReportType.DSN, "5.1.1"),
    (corpus.gmail_no_such_account, ReportType.DSN, "5.1.1"),
    (corpus.exchange_online_not_found, ReportType.DSN, "5.1.10"),
    (corpus.ses_bounce, ReportType.DSN, "5.1.1"),
    (corpus.exim_failed, ReportType.HEURISTIC, "5.1.1"),
    (corpus.exchange_2003_ndr, ReportType.HEURISTIC, "5.1.1"),
]


@pytest.mark.parametrize(("make", "kind", "code"), HARD, ids=[m.__name__ for m, _, _ in HARD])
def test_each_hard_bounce_names_the_address_the_class_and_the_code(make, kind, code):
    # given a bounce as that server sends it, for a message sent with a VERP envelope sender
    report = parse(make(SENDER, RCPT))
    # then it is read as a hard bounce of that one address, with the server's code and words
    assert report.type is kind
    assert [(f.kind, f.address, f.code) for f in report.findings] == [(FeedbackKind.HARD_BOUNCE, RCPT, code)]
    assert report.findings[0].text
    # and it points back at the VERP address it came back to
    assert SENDER in report.addressed_to


def test_a_yahoo_failure_notice_is_a_hard_bounce():
    report = parse(corpus.yahoo_failure_notice(SENDER, RCPT))
    assert report.type is ReportType.HEURISTIC
    (finding,) = report.findings
    assert (finding.kind, finding.address, finding.code) == (FeedbackKind.HARD_BOUNCE, RCPT, "554")
    assert "doesn't have a yahoo.com account" in (finding.text or "")


def test_the_original_message_id_is_read_from_the_returned_headers():
    for make in (corpus.postfix_user_unknown, corpus.gmail_no_such_account, corpus.exim_failed):
        assert parse(make(SENDER, RCPT)).original_message_id == corpus.ORIGINAL_ID, make.__name__


def test_a_full_mailbox_is_soft_and_a_delay_warning_is_nothing():
    full = parse(corpus.postfix_mailbox_full(SENDER, RCPT))
    assert [(f.kind, f.code) for f in full.findings] == [(FeedbackKind.SOFT_BOUNCE, "4.2.2")]
    delayed = parse(corpus.postfix_delayed(SENDER, RCPT))
    assert delayed.type is ReportType.DSN and delayed.findings == () and "delayed" in delayed.why


def test_an_arf_report_is_a_complaint_pointing_at_the_verp_address():
    report = parse(corpus.arf_complaint(SENDER, RCPT))
    assert report.type is ReportType.ARF
    (finding,) = report.findings
    assert (finding.kind, finding.address, finding.code) == (FeedbackKind.COMPLAINT, RCPT, "abuse")
    assert "Yahoo" in (finding.text or "")
    assert SENDER in report.addressed_to  # the original's Return-Path and Original-Mail-From


@pytest.mark.parametrize("make", [corpus.out_of_office, corpus.vacation_no_headers, corpus.challenge_response])
def test_auto_replies_are_recognized_and_ignored(make):
    report = parse(make(SENDER, RCPT))
    assert report.type is ReportType.AUTO_REPLY and report.findings == () and report.why


def test_a_person_writing_to_the_bounce_address_is_no_report():
    raw = (f"From: {RCPT}\r\nTo: {SENDER}\r\nSubject: hello\r\nMessage-ID: <x@example.com>\r\n\r\n"
           "Please take me off your list, user unknown 550.\r\n").encode()
    report = parse(raw)
    assert report.type is ReportType.OTHER and report.findings == ()


@pytest.mark.parametrize(("raw", "words"), [
    (b"", "empty"),
    (b"   \r\n", "empty"),
    (b"\x00\x01\x02binary" * 10, "binary"),
    (b"just some words, no headers at all\n", "no mail headers"),
    (b"x" * (10 * 1024 * 1024 + 1), "at most"),
])
def test_garbage_is_refused_with_a_clear_message(raw, words):
    with pytest.raises(DataError, match=words):
        parse(raw)


def test_the_same_report_has_the_same_key_and_another_report_another():
    a = parse(corpus.postfix_mailbox_full(SENDER, RCPT, 1))
    assert parse(corpus.postfix_mailbox_full(SENDER, RCPT, 1)).key == a.key
    assert parse(corpus.postfix_mailbox_full(SENDER, RCPT, 2)).key != a.key


@pytest.mark.parametrize(("status", "text", "kind"), [
    ("5.1.1", "", FeedbackKind.HARD_BOUNCE),
    ("5.2.1", "mailbox disabled", FeedbackKind.HARD_BOUNCE),
    ("5.4.4", "unable to route", FeedbackKind.HARD_BOUNCE),
    ("5.2.2", "over quota", FeedbackKind.SOFT_BOUNCE),
    ("5.7.1", "blocked for spam", FeedbackKind.SOFT_BOUNCE),
    ("4.2.2", "mailbox full", FeedbackKind.SOFT_BOUNCE),
    ("5.0.0", "550 user unknown", FeedbackKind.HARD_BOUNCE),
    ("", "550 no such user here", FeedbackKind.HARD_BOUNCE),
    ("", "554 message rejected", FeedbackKind.SOFT_BOUNCE),
])
def test_hard_or_soft(status, text, kind):
    assert bounce_kind(status, text) is kind
