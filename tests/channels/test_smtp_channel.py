"""SmtpChannel against a real aiosmtpd server on 127.0.0.1."""
from __future__ import annotations

import email
import email.policy
import socket
import types

import pytest

from outreach.channels import OutgoingEmail, SmtpChannel, get_channel
from outreach.errors import (
    ChannelConfigurationError,
    PermanentError,
    RateLimited,
    RecipientRejected,
    TransientError,
)
from tests.channels.conftest import SmtpSink, _start

# aiosmtpd warns that the auth server allows AUTH without TLS; loopback tests want exactly that
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def letter(to: str = "ana@example.net", name: str | None = "Ana Lima", **kw) -> OutgoingEmail:
    values = {"to_addr": to, "to_name": name, "subject": "Mid-year recap",
                  "text": "Thank you for standing with us.\n\nRead the recap online.",
                  "html": "<p>Thank you for standing with us.</p><p>Read the recap online.</p>",
                  "list_unsubscribe_url": "https://rights.example.org/u/abc123?sig=xyz",
                  "list_unsubscribe_mailto": "unsub@example.org", "headers": {"X-Campaign": "recap-2025"}}
    values.update(kw)
    return OutgoingEmail(**values)


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_message_arrives_with_headers_both_parts_and_crlf(smtp_server, smtp_account):
    # given a channel for a running SMTP server
    sink, controller = smtp_server
    with SmtpChannel(smtp_account(controller)) as channel:
        # when one email is sent
        result = channel.send(letter())

    # then the server got exactly that message, for that recipient, in CRLF lines
    assert len(sink.received) == 1
    got = sink.received[0]
    assert got.mail_from == "news@example.org" and got.rcpt_tos == ["ana@example.net"]
    assert b"\n" not in got.data.replace(b"\r\n", b"")
    msg = parsed(got.data)
    assert msg["Message-ID"] == result.provider_id
    assert msg["To"].addresses[0].display_name == "Ana Lima"
    assert msg["From"].addresses[0].addr_spec == "news@example.org"
    assert msg["Subject"] == "Mid-year recap"
    assert msg["List-Unsubscribe"] == "<https://rights.example.org/u/abc123?sig=xyz>, <mailto:unsub@example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Campaign"] == "recap-2025"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and "standing with us" in plain.get_content()
    assert html.get_content_type() == "text/html" and "<p>Read the recap online.</p>" in html.get_content()


def test_connection_is_reused_across_sends(smtp_server, smtp_account):
    # given one channel
    sink, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    # when it sends three emails
    for i in range(3):
        channel.send(letter(to=f"reader{i}@example.net"))
    channel.close()
    # then they went over a single connection
    assert len(sink.received) == 3
    assert sink.connections == 1


def test_reconnects_after_the_server_dropped_the_connection(smtp_server, smtp_account):
    # given a channel whose connection the server has closed (idle timeout)
    sink, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    channel.send(letter(to="first@example.net"))
    sink.drop_connections()
    # when it sends again
    channel.send(letter(to="second@example.net"))
    channel.close()
    # then the second email arrives over a new connection, sent once
    assert [r.rcpt_tos for r in sink.received] == [["first@example.net"], ["second@example.net"]]
    assert sink.connections == 2


def test_421_on_a_reused_connection_reconnects_transparently(smtp_server, smtp_account):
    # given a connection that answers its next MAIL with 421 (e.g. "timeout exceeded")
    sink, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    channel.send(letter(to="first@example.net"))
    sink.next_mail.append("421 4.4.2 Error: timeout exceeded")
    # when the channel sends
    channel.send(letter(to="second@example.net"))
    channel.close()
    # then nothing had been sent on the stale connection, so it retried on a fresh one
    assert len(sink.received) == 2 and sink.connections == 2


def test_421_is_transient_and_the_next_send_reconnects(smtp_server, smtp_account):
    # given a server that answers the first MAIL with 421
    sink, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    sink.next_mail.append("421 4.3.2 Service shutting down")
    # when sending: then a transient error
    with pytest.raises(TransientError) as info:
        channel.send(letter())
    assert not isinstance(info.value, RateLimited)
    assert info.value.context["smtp_code"] == 421
    # and the next send opens a new connection and succeeds
    channel.send(letter())
    channel.close()
    assert len(sink.received) == 1 and sink.connections == 2


def test_451_recipient_refusal_is_transient(smtp_server, smtp_account):
    # given a server that defers the recipient
    sink, controller = smtp_server
    sink.next_rcpt.append("451 4.3.0 Temporary lookup failure")
    with SmtpChannel(smtp_account(controller)) as channel:
        # when sending: then a transient (not rate-limit) error, and nothing was delivered
        with pytest.raises(TransientError) as info:
            channel.send(letter())
        assert type(info.value) is TransientError and info.value.context["smtp_code"] == 451
        # and the connection is still usable
        channel.send(letter())
    assert len(sink.received) == 1 and sink.connections == 1


def test_partial_refusal_dict_is_mapped_like_a_raised_refusal(smtp_server, smtp_account):
    # given smtplib's return value for a partial refusal (it does not raise for those)
    _, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    built = channel.build(letter())
    # when the channel parses it: then 4xx is transient and 5xx a rejection
    with pytest.raises(TransientError):
        channel.parse(built, {"ana@example.net": (451, b"4.7.1 Try again later")})
    with pytest.raises(RecipientRejected) as info:
        channel.parse(built, {"ana@example.net": (550, b"5.1.1 User unknown")})
    assert info.value.hard_bounce is True
    assert channel.parse(built, {}).provider_id == built.message_id


def test_rate_limit_reply_is_rate_limited(smtp_server, smtp_account):
    # given a server that says "slow down"
    sink, controller = smtp_server
    sink.next_rcpt.append("450 4.7.0 Too many messages, slow down")
    with SmtpChannel(smtp_account(controller)) as channel:
        # then the channel raises RateLimited with a wait
        with pytest.raises(RateLimited) as info:
            channel.send(letter())
    assert info.value.retry_after > 0


def test_550_511_is_a_hard_bounce(smtp_server, smtp_account):
    # given a recipient the server does not know
    sink, controller = smtp_server
    sink.rcpt_replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"
    with SmtpChannel(smtp_account(controller)) as channel:
        # when sending to it: then a hard bounce naming the address
        with pytest.raises(RecipientRejected) as info:
            channel.send(letter(to="gone@example.net"))
    assert info.value.hard_bounce is True
    assert info.value.context["address"] == "gone@example.net"
    assert sink.received == []


@pytest.mark.parametrize("reply, hard", [
    ("550 User unknown", True),                 # no enhanced code, but the text says so
    ("552 5.2.2 Mailbox full", False),          # a full mailbox is not a reason to suppress
    ("550 5.7.1 Rejected by policy", False),
])
def test_other_5xx_refusals_are_permanent_and_classified(smtp_server, smtp_account, reply, hard):
    sink, controller = smtp_server
    sink.next_rcpt.append(reply)
    with SmtpChannel(smtp_account(controller)) as channel:
        with pytest.raises(RecipientRejected) as info:
            channel.send(letter())
    assert info.value.hard_bounce is hard


def test_content_rejected_after_data_is_permanent(smtp_server, smtp_account):
    # given a server that refuses the message content
    sink, controller = smtp_server
    sink.next_data.append("554 5.6.0 Message content rejected")
    with SmtpChannel(smtp_account(controller)) as channel:
        with pytest.raises(PermanentError) as info:
            channel.send(letter())
    assert not isinstance(info.value, RecipientRejected)


def test_subscriber_fields_cannot_inject_headers(smtp_server, smtp_account):
    # given a subscriber whose name and rendered subject carry CRLF and a Bcc header
    sink, controller = smtp_server
    evil = letter(name="Eve\r\nBcc: x@evil.example", subject="Hi\r\nBcc: y@evil.example\nX-Evil: 1",
                  headers={"X-Campaign": "recap\r\nBcc: z@evil.example"})
    with SmtpChannel(smtp_account(controller)) as channel:
        channel.send(evil)
    # then the message has no Bcc/X-Evil header, one recipient, and the text stayed in its field
    got = sink.received[0]
    msg = parsed(got.data)
    assert got.rcpt_tos == ["ana@example.net"]
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["To"].addresses[0].display_name == "Eve Bcc: x@evil.example"
    assert msg["Subject"] == "Hi Bcc: y@evil.example X-Evil: 1"
    assert not msg.defects


def test_recipient_address_with_crlf_is_rejected_before_sending(smtp_server, smtp_account):
    sink, controller = smtp_server
    with SmtpChannel(smtp_account(controller)) as channel:
        with pytest.raises(RecipientRejected) as info:
            channel.send(letter(to="ana@example.net\r\nRCPT TO:<x@evil.example>"))
    assert info.value.hard_bounce is False
    assert sink.received == [] and sink.connections == 0


def test_login_with_the_right_password_sends(smtp_auth_server, smtp_account):
    sink, controller = smtp_auth_server
    account = smtp_account(controller, username="mailer", password="s3cret")
    with SmtpChannel(account) as channel:
        channel.send(letter())
    assert len(sink.received) == 1


def test_wrong_password_is_a_configuration_error_naming_the_variable(smtp_auth_server, smtp_account):
    # given an account with the wrong password
    _, controller = smtp_auth_server
    account = smtp_account(controller, name="news-letters", username="mailer", password="wrong")
    # when sending: then the error says which variable to fix
    with pytest.raises(ChannelConfigurationError) as info:
        SmtpChannel(account).send(letter())
    assert "OUTREACH_SMTP_NEWS_LETTERS_PASSWORD" in str(info.value)


def test_server_requiring_auth_without_credentials_is_a_configuration_error(smtp_auth_server, smtp_account):
    _, controller = smtp_auth_server
    with pytest.raises(ChannelConfigurationError) as info:
        SmtpChannel(smtp_account(controller)).send(letter())
    assert "OUTREACH_SMTP_NEWS_PASSWORD" in str(info.value)


def test_unreachable_server_is_transient(smtp_account):
    # given an account pointing at a loopback port nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = types.SimpleNamespace(port=port)
    # when sending: then a transient error naming the server
    with pytest.raises(TransientError) as info:
        SmtpChannel(smtp_account(closed)).send(letter())
    assert f"127.0.0.1:{port}" in str(info.value)


def test_registry_builds_the_smtp_channel(smtp_server, smtp_account):
    _, controller = smtp_server
    channel = get_channel("email", smtp_account(controller))
    assert isinstance(channel, SmtpChannel) and channel.per_recipient and channel.limit_key == "email:news"
    with pytest.raises(ChannelConfigurationError):
        get_channel("carrier-pigeon", None)


def test_pipelining_server_gets_mail_rcpt_data_in_one_write(smtp_account, monkeypatch):
    # given a server that offers PIPELINING
    sink = SmtpSink()
    sink.pipelining = True
    controller = _start(sink)
    try:
        channel = SmtpChannel(smtp_account(controller))
        conn = channel._connection.current()
        conn.ehlo_or_helo_if_needed()
        writes: list[bytes] = []
        real_send = conn.send
        monkeypatch.setattr(conn, "send", lambda data: (
            writes.append(data if isinstance(data, bytes) else data.encode()), real_send(data))[1])
        # when a message whose text has a line starting with a dot is sent
        channel.send(OutgoingEmail(to_addr="ana@example.org", to_name="Ana", subject="Hi", html="<p>x</p>",
                                   text="see below\n.signature"))
        # then the envelope went in one write and the body in one more, dot-stuffed
        assert writes[0] == b"MAIL FROM:<news@example.org>\r\nRCPT TO:<ana@example.org>\r\nDATA\r\n"
        assert len(writes) == 2 and writes[1].endswith(b"\r\n.\r\n") and b"\r\n..signature" in writes[1]
        # and the server received it, unstuffed
        assert [m.rcpt_tos for m in sink.received] == [["ana@example.org"]]
        assert b"\r\n.signature" in sink.received[0].data
        channel.close()
    finally:
        controller.stop()
