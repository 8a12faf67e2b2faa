"""Bounce, complaint and auto-reply messages in the shapes real servers send them (Postfix,
Exim, Exchange/Outlook, Gmail, Yahoo, Amazon SES, feedback loops), written here rather than
downloaded. Each takes the envelope sender the original went out with (a VERP address) and
the recipient that failed, and returns the bytes a bounce server would receive."""
from __future__ import annotations

ORIGINAL_ID = "<20261126.abc123@example.org>"


def _original_headers(sender: str, rcpt: str, message_id: str = ORIGINAL_ID) -> str:
    return (f"Return-Path: <{sender}>\r\nFrom: Test Org <news@example.org>\r\nTo: {rcpt}\r\n"
            f"Subject: Spring newsletter\r\nMessage-ID: {message_id}\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n")


def _dsn(*, reporter: str, from_: str, sender: str, rcpt: str, status: str, diagnostic: str, human: str,
         action: str = "failed", boundary: str = "=_bnd", headers_part: str = "text/rfc822-headers",
         extra_fields: str = "", message_id: str = ORIGINAL_ID, bounce_id: str = "<dsn-1@mx.example.net>") -> bytes:
    original = _original_headers(sender, rcpt, message_id)
    if headers_part == "message/rfc822":
        original += "\r\nHello, spring is here.\r\n"
    return (
        f"Return-Path: <>\r\nDelivered-To: {sender}\r\nFrom: {from_}\r\nTo: {sender}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nDate: Thu, 26 Nov 2026 01:02:03 +0000\r\n"
        f"Message-ID: {bounce_id}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"This is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{human}\r\n\r\n--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {reporter}\r\n"
        f"Arrival-Date: Wed, 25 Nov 2026 09:00:01 +0000\r\n{extra_fields}\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\nAction: {action}\r\n"
        f"Status: {status}\r\nRemote-MTA: dns; mx.{rcpt.split('@')[1]}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n"
        f"\r\n--{boundary}\r\nContent-Type: {headers_part}\r\n\r\n{original}\r\n--{boundary}--\r\n"
    ).encode()


def postfix_user_unknown(sender: str, rcpt: str) -> bytes:
    return _dsn(reporter="mail.example.net", from_="MAILER-DAEMON@mail.example.net (Mail Delivery System)",
                sender=sender, rcpt=rcpt, status="5.1.1",
                diagnostic=f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
                human="This is the mail system at host mail.example.net.\r\n\r\nI'm sorry to have to inform you "
                      "that your message could not\r\nbe delivered to one or more recipients.",
                extra_fields="X-Postfix-Queue-ID: 4ABCD1234\r\nX-Postfix-Sender: rfc822; " + sender + "\r\n")


def postfix_mailbox_full(sender: str, rcpt: str, n: int = 1) -> bytes:
    return _dsn(reporter="mail.example.net", from_="MAILER-DAEMON@mail.example.net (Mail Delivery System)",
                sender=sender, rcpt=rcpt, status="4.2.2",
                diagnostic="452 4.2.2 Mailbox full", bounce_id=f"<dsn-full-{n}@mail.example.net>",
                human="This is the mail system at host mail.example.net.\r\n\r\nThe mailbox is full.")


def postfix_delayed(sender: str, rcpt: str) -> bytes:
    return _dsn(reporter="mail.example.net", from_="MAILER-DAEMON@mail.example.net (Mail Delivery System)",
                sender=sender, rcpt=rcpt, status="4.4.1", action="delayed",
                diagnostic="connect to mx: Connection timed out", bounce_id="<delay-1@mail.example.net>",
                human="This is the mail system at host mail.example.net.\r\n\r\n"
                      "####################################################################\r\n"
                      "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #")


def gmail_no_such_account(sender: str, rcpt: str) -> bytes:
    return _dsn(reporter="googlemail.com", from_="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                sender=sender, rcpt=rcpt, status="5.1.1", headers_part="message/rfc822",
                diagnostic="550-5.1.1 The email account that you tried to reach does not exist. Please try "
                           "550-5.1.1 double-checking the recipient's email address for typos or "
                           "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser",
                bounce_id="<gmail-1@mx.google.com>",
                human=f"** Address not found **\r\n\r\nYour message wasn't delivered to {rcpt} because the "
                      "address couldn't be found, or is unable to receive mail.")


def exchange_online_not_found(sender: str, rcpt: str) -> bytes:
    return _dsn(reporter="BN8PR04MB1234.namprd04.prod.outlook.com", sender=sender, rcpt=rcpt,
                from_="Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.com>",
                status="5.1.10", headers_part="text/rfc822-headers", bounce_id="<exo-1@outlook.com>",
                diagnostic="smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
                           "lookup",
                human=f"Delivery has failed to these recipients or groups:\r\n\r\n{rcpt}\r\nThe email address you "
                      "entered couldn't be found.")


def ses_bounce(sender: str, rcpt: str) -> bytes:
    return _dsn(reporter="a8-30.smtp-out.amazonses.com", from_="MAILER-DAEMON@amazonses.com", sender=sender,
                rcpt=rcpt, status="5.1.1", diagnostic="smtp; 550 5.1.1 user unknown",
                bounce_id="<0100018c-ses-bounce@email.amazonses.com>",
                human="An error occurred while trying to deliver the mail to the following recipients:\r\n" + rcpt)


def exim_failed(sender: str, rcpt: str) -> bytes:
    return (
        f"Return-Path: <>\r\nDelivered-To: {sender}\r\nFrom: Mail Delivery System <Mailer-Daemon@mx.example.net>\r\n"
        f"To: {sender}\r\nSubject: Mail delivery failed: returning message to sender\r\n"
        f"Message-Id: <E1abc-0001@mx.example.net>\r\nX-Failed-Recipients: {rcpt}\r\nAuto-Submitted: auto-replied\r\n"
        "Date: Thu, 26 Nov 2026 01:02:03 +0000\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        f"  {rcpt}\r\n    SMTP error from remote mail server after RCPT TO:<{rcpt}>:\r\n"
        "    host mx.example.com [192.0.2.1]: 550 5.1.1 User unknown\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n\r\n"
        + _original_headers(sender, rcpt) + "\r\nHello, spring is here.\r\n"
    ).encode()


def exchange_2003_ndr(sender: str, rcpt: str) -> bytes:
    return (
        f"Return-Path: <>\r\nFrom: System Administrator <postmaster@corp.example.com>\r\nTo: {sender}\r\n"
        "Subject: Undeliverable: Spring newsletter\r\nMessage-ID: <ndr-2003@corp.example.com>\r\n"
        "Date: Thu, 26 Nov 2026 01:02:03 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
        "Your message\r\n\r\n  To:      " + rcpt + "\r\n  Subject: Spring newsletter\r\n\r\n"
        "did not reach the following recipient(s):\r\n\r\n"
        f"{rcpt} on 11/26/2026 1:02 AM\r\n"
        "            The e-mail account does not exist at the organization this message was sent to.\r\n"
        "            <corp.example.com #5.1.1>\r\n\r\nMSEXCH:IMS:Corp:Site:SERVER 0 (000C05A6) Unknown Recipient\r\n"
    ).encode()


def yahoo_failure_notice(sender: str, rcpt: str) -> bytes:
    return (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@yahoo.com\r\nTo: {sender}\r\nSubject: failure notice\r\n"
        "Message-ID: <yahoo-fn-1@mta1234.mail.ne1.yahoo.com>\r\nDate: Thu, 26 Nov 2026 01:02:03 +0000\r\n\r\n"
        "Sorry, we were unable to deliver your message to the following address.\r\n\r\n"
        f"<{rcpt}>:\r\nRemote host said: 554 delivery error: dd This user doesn't have a yahoo.com account "
        f"({rcpt}) [0] - mta1234.mail.ne1.yahoo.com\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n"
        + _original_headers(sender, rcpt) + "\r\nHello\r\n"
    ).encode()


def arf_complaint(sender: str, rcpt: str, agent: str = "Yahoo!-Mail-Feedback/2.0") -> bytes:
    b = "=_arf"
    return (
        "Return-Path: <>\r\nFrom: feedback@arf.mail.yahoo.com\r\nTo: fbl@example.org\r\n"
        "Subject: FW: Spring newsletter\r\nMessage-ID: <arf-1@arf.mail.yahoo.com>\r\n"
        "Date: Thu, 26 Nov 2026 01:02:03 +0000\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{b}"\r\n\r\n'
        f"--{b}\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report for an email message received "
        f"from IP 192.0.2.10.\r\n\r\n--{b}\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: {agent}\r\nVersion: 1\r\nOriginal-Mail-From: <{sender}>\r\n"
        f"Original-Rcpt-To: <{rcpt}>\r\nArrival-Date: Wed, 25 Nov 2026 09:00:02 +0000\r\n"
        f"Source-IP: 192.0.2.10\r\n\r\n--{b}\r\nContent-Type: message/rfc822\r\n\r\n"
        + _original_headers(sender, rcpt) + f"\r\nHello\r\n\r\n--{b}--\r\n"
    ).encode()


def out_of_office(sender: str, rcpt: str) -> bytes:
    return (
        f"Return-Path: <>\r\nFrom: Ana Lee <{rcpt}>\r\nTo: {sender}\r\nSubject: Automatic reply: Spring newsletter\r\n"
        "Message-ID: <ooo-1@example.com>\r\nDate: Thu, 26 Nov 2026 01:02:03 +0000\r\n"
        "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n\r\n"
        "I am out of the office until December 1 with limited access to email. The message to "
        f"{rcpt} will be read when I return. Delivery failed? No: 550 is my room number.\r\n"
    ).encode()


def vacation_no_headers(sender: str, rcpt: str) -> bytes:
    return (
        f"From: {rcpt}\r\nTo: {sender}\r\nSubject: Out of Office: Spring newsletter\r\n"
        "Message-ID: <ooo-2@example.com>\r\nDate: Thu, 26 Nov 2026 01:02:03 +0000\r\n\r\nBack Monday.\r\n"
    ).encode()


def challenge_response(sender: str, rcpt: str) -> bytes:
    return (
        f"From: Ana's spam filter <{rcpt}>\r\nTo: {sender}\r\nSubject: Please confirm your message\r\n"
        "Message-ID: <cr-1@example.com>\r\nDate: Thu, 26 Nov 2026 01:02:03 +0000\r\nX-Boxtrapper: yes\r\n\r\n"
        "To confirm that you are a human, reply to this message.\r\n"
    ).encode()
