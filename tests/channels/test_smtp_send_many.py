"""SmtpChannel.send_many: many messages back to back on one connection, pipelined across
messages when the server offers PIPELINING; every message gets exactly one outcome."""
from __future__ import annotations

import pytest

from outreach.channels import SendResult, SmtpChannel
from outreach.errors import (
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RecipientRejected,
    TransientError,
)
from tests.channels.test_smtp_channel import letter


def addresses(n: int) -> list[str]:
    return [f"reader{i}@example.net" for i in range(n)]


def send_all(channel: SmtpChannel, to: list[str]) -> dict[str, object]:
    outcomes: dict[str, object] = {}
    for key, outcome in channel.send_many((addr, letter(to=addr)) for addr in to):
        assert key not in outcomes, f"two outcomes for {key}"
        outcomes[key] = outcome
    assert set(outcomes) == set(to), "a message without an outcome"
    return outcomes


def received(sink) -> list[str]:
    return [r for m in sink.received for r in m.rcpt_tos]


def test_every_message_arrives_once_in_order_over_one_connection(smtp_server, smtp_account, monkeypatch):
    # given a channel
    sink, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    conn = channel._connection.current()
    writes: list[bytes] = []
    real_send = conn.send
    monkeypatch.setattr(conn, "send", lambda data: (writes.append(data), real_send(data))[1])
    to = addresses(25)
    # when it sends 25 messages with send_many
    outcomes = send_all(channel, to)
    channel.close()
    # then each was accepted, with its own Message-ID, and arrived once, in order, on one connection
    assert all(isinstance(o, SendResult) for o in outcomes.values())
    assert len({o.provider_id for o in outcomes.values()}) == 25
    assert received(sink) == to and sink.connections == 1
    if sink.pipelining:
        # and with PIPELINING each write carried one message's end and the next one's envelope
        writes = [w for w in writes if isinstance(w, bytes)]  # (EHLO and QUIT are written as str)
        assert len(writes) == 26
        assert writes[0].startswith(b"MAIL FROM:") and writes[-1].endswith(b"\r\n.\r\n")
        assert all(w.endswith(b"DATA\r\n") and b"\r\n.\r\nMAIL FROM:<news@example.org>\r\n" in w
                   for w in writes[1:-1])


def test_a_refused_recipient_fails_that_message_only(smtp_server, smtp_account):
    # given a server that does not know one recipient in the middle of the stream
    sink, controller = smtp_server
    to = addresses(9)
    sink.rcpt_replies[to[4]] = "550 5.1.1 No such user"
    # when all are sent
    with SmtpChannel(smtp_account(controller)) as channel:
        outcomes = send_all(channel, to)
    # then that one bounced for good and the others, before and after it, arrived
    bounce = outcomes[to[4]]
    assert isinstance(bounce, RecipientRejected) and bounce.hard_bounce
    assert all(isinstance(outcomes[a], SendResult) for a in to if a != to[4])
    assert received(sink) == [a for a in to if a != to[4]]


@pytest.mark.parametrize("reply, error", [("451 4.3.0 Try again later", TransientError),
                                          ("554 5.7.1 Message content rejected", PermanentError)])
def test_a_refused_message_body_fails_that_message_only(smtp_server, smtp_account, reply, error):
    sink, controller = smtp_server
    to = addresses(7)
    sink.data_replies[to[3]] = reply
    with SmtpChannel(smtp_account(controller)) as channel:
        outcomes = send_all(channel, to)
    assert isinstance(outcomes[to[3]], error)
    assert not isinstance(outcomes[to[3]], RecipientRejected)
    assert received(sink) == [a for a in to if a != to[3]]


def test_a_connection_lost_mid_stream_loses_and_duplicates_nothing(smtp_server, smtp_account):
    # given a server that hangs up right after receiving one message, before confirming it
    sink, controller = smtp_server
    to = addresses(12)
    sink.drop_after_data.add(to[5])
    # when the stream is sent
    with SmtpChannel(smtp_account(controller)) as channel:
        outcomes = send_all(channel, to)
    # then that message's outcome is unknown (it did arrive, but nobody said so) ...
    lost = outcomes[to[5]]
    assert isinstance(lost, OutcomeUnknown)
    # ... and every other message was sent exactly once, the rest over a new connection
    assert all(isinstance(outcomes[a], SendResult) for a in to if a != to[5])
    assert sorted(received(sink)) == sorted(to) and sink.connections == 2


def test_a_stale_connection_is_replaced_without_failing_anything(smtp_server, smtp_account):
    # given a channel whose connection worked, then went stale: the server answers the next MAIL with 421
    sink, controller = smtp_server
    channel = SmtpChannel(smtp_account(controller))
    send_all(channel, addresses(2))
    sink.next_mail.append("421 4.4.2 Error: timeout exceeded")
    # when the next stream is sent
    outcomes = send_all(channel, [f"later{i}@example.net" for i in range(4)])
    channel.close()
    # then nothing had been sent on the stale connection, so all of it went on a fresh one
    assert all(isinstance(o, SendResult) for o in outcomes.values())
    assert len(received(sink)) == 6 and sink.connections == 2


def test_a_message_that_cannot_be_built_fails_alone(smtp_server, smtp_account):
    # given a stream with an invalid recipient address in the middle
    sink, controller = smtp_server
    items = [("a", letter(to="a@example.net")), ("bad", letter(to="not an address")),
             ("b", letter(to="b@example.net"))]
    with SmtpChannel(smtp_account(controller)) as channel:
        outcomes = dict(channel.send_many(iter(items)))
    # then it fails without reaching the server, and the others are sent
    assert isinstance(outcomes["bad"], RecipientRejected) and not outcomes["bad"].hard_bounce
    assert isinstance(outcomes["a"], SendResult) and isinstance(outcomes["b"], SendResult)
    assert received(sink) == ["a@example.net", "b@example.net"]


def test_an_unreachable_server_fails_each_message_as_transient(smtp_account):
    # given an account pointing at a loopback port nobody listens on
    from tests.channels.conftest import free_port

    class Nowhere:
        port = free_port()

    channel = SmtpChannel(smtp_account(Nowhere, timeout=2.0))
    # when a stream is sent: then every message has its own transient outcome, nothing raises
    outcomes = dict(channel.send_many((a, letter(to=a)) for a in addresses(3)))
    assert all(isinstance(o, TransientError) and "cannot reach" in str(o) for o in outcomes.values())


def test_every_sample_email_passes_a_strict_server_and_parses_back(smtp_server, smtp_account, monkeypatch):
    # given every email step of the sample campaigns, for every sample subscriber (CSS lines
    # starting with dots, emoji, names in many scripts), on a server that refuses bare line
    # ends, long lines and undeclared 8-bit content (conftest.strict_problem)
    from email import message_from_bytes, policy
    from html import unescape

    from outreach.authoring.events import outside_step
    from outreach.authoring.validation import validate
    from outreach.content.compose import Composer
    from outreach.content.links import LinkSigner
    from outreach.settings import load_settings
    from outreach.subscribers.samples import sample_subscribers
    from tests.content.test_render_cache import ROOT

    monkeypatch.chdir(ROOT)
    settings = load_settings(ROOT, environ={"OUTREACH_SECRET_KEY": "k"})
    composer = Composer(settings, LinkSigner("k", settings.base_url))
    letters = [((c.name, s.id, r.email), SmtpChannel.compose(composer, c, s, r))
               for c in validate(settings).campaigns.campaigns.values()
               for s in c.steps if s.channel_class is SmtpChannel for r in sample_subscribers(settings)
               if not outside_step(c, s, r)]  # (a tour's steps never render for people beyond its stops)
    sink, controller = smtp_server
    # when they are sent as one stream
    with SmtpChannel(smtp_account(controller)) as channel:
        outcomes = dict(channel.send_many(iter(letters)))
    # then the server accepted every one, and each parses back to what was composed
    assert len(letters) >= 75 and all(isinstance(o, SendResult) for o in outcomes.values()), \
        [str(o) for o in outcomes.values() if not isinstance(o, SendResult)][:3]
    assert len(sink.received) == len(letters)
    for (_, letter_), got in zip(letters, sink.received, strict=True):
        msg = message_from_bytes(got.data, policy=policy.default)
        plain, html = msg.iter_parts()
        assert not msg.defects and msg["Subject"] == letter_.subject
        assert plain.get_content().replace("\r\n", "\n") == letter_.text
        assert unescape(html.get_content().replace("\r\n", "\n")) == unescape(letter_.html)


def test_a_server_closing_with_slow_down_on_a_new_connection_is_a_rate_limit(smtp_server, smtp_account):
    # given a server that answers the first MAIL of a fresh connection "421 ... slow down"
    sink, controller = smtp_server
    sink.next_mail.append("421 4.7.0 Too many messages, slow down")
    channel = SmtpChannel(smtp_account(controller))
    # when a stream is sent
    outcomes = send_all(channel, addresses(3))
    channel.close()
    # then the first message's outcome is a rate limit (the dispatcher pauses the account on it)
    assert isinstance(outcomes["reader0@example.net"], RateLimited)
    assert "reader0@example.net" not in received(sink)
