"""Several messages in flight on one SMTP connection (RFC 2920 PIPELINING).

smtplib waits for a reply to every command: four round trips a message. Here MAIL, RCPT and
DATA go together, and, as Postfix's own client does, the end of one message's data travels
in the same write as the next message's MAIL, RCPT and DATA; while the server works on that
write the caller composes and builds the message after it. One write and one read per
message, and the round trip is spent building instead of waiting. A single send is a
stream of one (SmtpChannel.transmit); a server without PIPELINING gets smtplib, one message
at a time (SmtpConnection.send_one).

    write: <A's data>.  MAIL/RCPT/DATA(C)     read: 250 (A)  250 250 354 (C)
           (the caller builds D meanwhile)    write: <C's data>.  MAIL/RCPT/DATA(D)  ...

RFC 2920 allows exactly this: DATA ends a group, and the message content (with its final
dot) may start the next one. What is owed is tracked in order, so every reply is matched to
its message, and what each message's outcome is stays exact when things go wrong:
- a refused MAIL/RCPT/DATA fails that message only; an RSET (after a bare "." if the server
  said 354 anyway) goes ahead of the next envelope;
- the connection drops (or the server says 421) with data written but no final reply: that
  message's outcome is unknown (never resent here); envelopes without data were not sent:
  they go again on a new connection when the dropped one had worked before (an idle
  timeout), else they fail as transient.
"""
from __future__ import annotations

import smtplib
from collections import deque
from collections.abc import Iterator
from itertools import chain
from typing import Any

from ...errors import DeliveryError, OutcomeUnknown, TransientError
from .connection import BuiltEmail, Smtp, SmtpConnection, data_bytes
from .replies import classify_reply

Item = tuple[Any, BuiltEmail, DeliveryError | None]  # (key, built, build error)
Outcome = tuple[Any, BuiltEmail, Any]  # (key, built, {} | DeliveryError)


class _Closed(Exception):
    """The server closed the conversation (421) after a reply that was already handled."""


def pipelined(connection: SmtpConnection, items: Iterator[Item]) -> Iterator[Outcome]:
    """The body of SmtpChannel.transmit_many (the caller holds the channel's lock): messages
    back to back on `connection`, pipelined when the server offers it. Yields (key, built,
    {} | DeliveryError) for every item, in the order outcomes become known."""
    server = connection.server
    retry: deque[Item] = deque()   # not sent: they go again on a new connection
    while True:
        try:
            conn = connection.current()
        except DeliveryError as exc:
            item = retry.popleft() if retry else next(items, None)
            if item is None:
                return
            yield item[0], item[1], item[2] or exc
            continue
        if not conn.has_extn("pipelining"):  # one message at a time, through smtplib
            for key, b, error in chain(retry, items):
                if error is None:
                    try:
                        yield key, b, connection.send_one(b)
                        continue
                    except DeliveryError as exc:
                        error = exc
                yield key, b, error
            return
        session = _Session(connection, conn)
        try:
            yield from session.run(retry, items)
        finally:
            if not session.done:  # replies may still be owed: this connection cannot be reused
                connection.drop()
        if session.done:
            return
        if session.proven:  # the connection had worked: an idle timeout or a per-connection cap
            retry = session.unsent
            continue
        for key, b, _ in session.unsent:
            if session.closing is not None:  # the server's own 421, e.g. "slow down": RateLimited
                yield key, b, server.refusal(smtplib.SMTPResponseException(*session.closing), b.to_addr)
            else:
                yield key, b, TransientError(f"SMTP server {server.where} closed the connection "
                                             f"before the message was sent: {session.reason}")
        retry = deque()


class _Session:
    """One connection's share of the conversation."""

    def __init__(self, connection: SmtpConnection, conn: Smtp) -> None:
        self.server = connection.server
        self.conn = conn
        self.proven = getattr(conn, "sends", 0) > 0
        self.done = False
        self.reason = ""
        self.closing: tuple[int, bytes] | None = None  # the 421 reply that ended the session
        self.unsent: deque[Item] = deque()
        # replies owed, in the order the server will send them: ("final", item) after a
        # message's data, ("env", item) after its MAIL/RCPT/DATA, ("ack", None) after a bare
        # "." or an RSET, whose replies change nothing
        self.owed: deque[tuple[str, Item | None]] = deque()
        self.ready: Item | None = None   # envelope accepted (354): its data goes next
        self.cleanup: list[bytes] = []   # "." / RSET to send after a refused envelope

    def run(self, retry: deque[Item], items: Iterator[Item]) -> Iterator[Outcome]:
        item: Item | None = None
        try:
            while True:
                # taking the next item is where the caller composes and builds it: the
                # server is busy with the last write meanwhile
                item = retry.popleft() if retry else next(items, None)
                if item is not None and item[2] is not None:
                    yield item  # failed to build: its outcome is that error
                    item = None
                    continue
                while self.owed:
                    yield from self._read_one()
                parts: list[bytes] = []
                if self.ready is not None:
                    parts.append(data_bytes(self.ready[1].data))
                    self.owed.append(("final", self.ready))
                    self.ready = None
                for command in self.cleanup:
                    parts.append(command)
                    self.owed.append(("ack", None))
                self.cleanup.clear()
                if item is not None:
                    sender = item[1].envelope_from or self.server.envelope_from
                    parts.append(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{item[1].to_addr}>\r\n"
                                 "DATA\r\n".encode("ascii"))
                    self.owed.append(("env", item))
                    item = None
                if not parts:
                    self.done = True
                    return
                self.conn.send(b"".join(parts))
        except (_Closed, smtplib.SMTPException, OSError) as exc:
            self.reason = str(exc) or type(exc).__name__
            yield from self._settle(item)

    def _read_one(self) -> Iterator[Outcome]:
        kind, item = self.owed[0]
        if kind == "ack":
            self.conn.getreply()
            self.owed.popleft()
            return
        assert item is not None
        key, b, _ = item
        if kind == "final":
            code, reply = self.conn.getreply()
            self.owed.popleft()
            if code == 250:
                self.conn.sends += 1
                self.proven = True
                yield key, b, {}
                return
            yield key, b, self.server.refusal(smtplib.SMTPDataError(code, reply), b.to_addr)
            if code == 421:
                self.closing = (code, reply)
                raise _Closed(f"{code} {reply.decode('utf-8', 'replace')}")
            return
        # an envelope: all three replies are read before anything is decided
        mail, rcpt, data = (self.conn.getreply() for _ in range(3))
        self.owed.popleft()
        if mail[0] == 250 and rcpt[0] in (250, 251) and data[0] == 354:
            self.ready = item
            return
        closing = next((r for r in (mail, rcpt, data) if r[0] == 421), None)
        if closing is not None:
            # the server is closing: nothing of this message was sent, so it may go again on
            # a new connection like any envelope still in flight
            self.unsent.append(item)
            self.closing = closing
            raise _Closed(f"421 {closing[1].decode('utf-8', 'replace')}")
        if mail[0] != 250:
            error = self.server.refusal(
                smtplib.SMTPSenderRefused(mail[0], mail[1], self.server.envelope_from), b.to_addr)
        elif rcpt[0] not in (250, 251):
            error = classify_reply(rcpt[0], rcpt[1], b.to_addr)
        else:
            error = self.server.refusal(smtplib.SMTPDataError(*data), b.to_addr)
        yield key, b, error
        if data[0] == 354:  # DATA accepted although nobody may receive it: end an empty message
            self.cleanup.append(b".\r\n")
        self.cleanup.append(b"RSET\r\n")

    def _settle(self, current: Item | None) -> Iterator[Outcome]:
        """The connection is gone: say what became of everything in flight, oldest first."""
        if self.ready is not None:
            self.unsent.appendleft(self.ready)
            self.ready = None
        for kind, item in self.owed:
            if item is None:
                continue
            if kind == "final":
                yield item[0], item[1], OutcomeUnknown(
                    f"SMTP server {self.server.where} closed the connection after the message "
                    f"was sent, before confirming it: {self.reason}")
            else:
                self.unsent.append(item)
        self.owed.clear()
        self.cleanup.clear()
        if current is not None:
            self.unsent.append(current)
