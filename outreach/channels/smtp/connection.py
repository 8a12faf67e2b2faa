"""The one SMTP connection of a channel instance: connecting (TLS, login) with every way that
can fail turned into an error naming what to change, reconnecting after a drop, and the
plain smtplib conversation for a server that does not offer PIPELINING.

A dropped connection is told apart by whether DATA had started: before it nothing was sent
(reconnect and go again at once); after it, the outcome is unknown.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...errors import ChannelConfigurationError, OutcomeUnknown, TransientError
from ...settings import SmtpAccount
from .replies import Server, text_of

__all__ = ["BuiltEmail", "SmtpConnection", "data_bytes"]

Refused = dict[str, tuple[int, bytes]]  # smtplib's refused recipients: address → (code, reply)


@dataclass(frozen=True)
class BuiltEmail:
    message_id: str
    to_addr: str
    data: bytes
    envelope_from: str | None = None  # MAIL FROM (VERP); None: the account's address


def data_bytes(msg: bytes) -> bytes:
    """The DATA content as sent: dot-stuffed (RFC 5321 4.5.2) and ended with CRLF.CRLF."""
    if msg.startswith(b".") or b"\n." in msg:
        msg = (b"." if msg.startswith(b".") else b"") + msg.replace(b"\n.", b"\n..")
    return msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n")


class _Tracking:
    """Remembers whether DATA was started, so a dropped connection can be told apart, and how
    many messages the connection has sent (one that has worked before may just have idled out)."""

    data_started = False
    sends = 0

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        if not isinstance(msg, bytes):
            return super().data(msg)  # type: ignore[misc, no-any-return]
        # smtplib dot-stuffs with a regex over the whole message; data_bytes writes the same
        # bytes (CRLF lines already) without one.
        self.putcmd("data")  # type: ignore[attr-defined]
        code, repl = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        self.send(data_bytes(msg))  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined, no-any-return]

    # Addresses reach here already checked as plain ASCII addr-specs (mime.check_address), so
    # smtplib's quoteaddr, which re-parses each with email.utils.parseaddr (about a tenth of
    # the CPU of a send), is skipped.
    def mail(self, sender: str, options: Any = ()) -> tuple[int, bytes]:
        extra = " " + " ".join(options) if options and self.does_esmtp else ""  # type: ignore[attr-defined]
        self.putcmd("mail", f"FROM:<{sender}>{extra}")  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined, no-any-return]

    def rcpt(self, recip: str, options: Any = ()) -> tuple[int, bytes]:
        extra = " " + " ".join(options) if options and self.does_esmtp else ""  # type: ignore[attr-defined]
        self.putcmd("rcpt", f"TO:<{recip}>{extra}")  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined, no-any-return]


class Smtp(_Tracking, smtplib.SMTP):
    pass


class _SmtpSsl(_Tracking, smtplib.SMTP_SSL):
    pass


@lru_cache(maxsize=1)
def _helo_name() -> str:
    return socket.getfqdn()


class SmtpConnection:
    """Connects on first use and again after `drop()`. Not thread-safe: the channel holds a
    lock around every conversation."""

    def __init__(self, account: SmtpAccount, server: Server) -> None:
        self.account = account
        self.server = server
        self._conn: Smtp | None = None

    def current(self) -> Smtp:
        """The open connection, connecting first if there is none (raises a DeliveryError)."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def drop(self) -> None:
        """Forget the connection without a goodbye (it is broken, or owes replies)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """QUIT politely when possible."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    def send_one(self, built: BuiltEmail) -> Refused:
        """One message through smtplib (a server without PIPELINING); returns the refused
        recipients (empty: accepted). smtplib reports partial refusals as this return value,
        and a refusal of every recipient as an exception of the same shape."""
        for attempt in (1, 2):
            conn = self.current()
            reused = conn.sends > 0
            conn.data_started = False
            try:
                refused: Refused = conn.sendmail(built.envelope_from or self.server.envelope_from, [built.to_addr],
                                                     built.data)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            except smtplib.SMTPServerDisconnected as exc:
                self.drop()
                if reused and attempt == 1 and not conn.data_started:
                    continue  # idle connection closed by the server; nothing was sent
                raise self._lost(f"SMTP server {self.server.where} closed the connection: {exc}",
                                 conn.data_started) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:
                    self.drop()
                    if reused and attempt == 1 and not conn.data_started:
                        continue  # e.g. "421 timeout exceeded" on a stale connection
                raise self.server.refusal(exc, built.to_addr) from None
            except (OSError, smtplib.SMTPException) as exc:
                self.drop()
                raise self._lost(f"SMTP send to {self.server.where} failed: {exc}", conn.data_started) from None
            conn.sends += 1
            if any(code == 421 for code, _ in refused.values()):
                self.drop()
            return refused
        raise AssertionError("unreachable")

    @staticmethod
    def _lost(message: str, data_started: bool) -> TransientError | OutcomeUnknown:
        return OutcomeUnknown(message) if data_started else TransientError(message)

    def _connect(self) -> Smtp:
        a, server = self.account, self.server
        if a.password and not a.username:
            raise ChannelConfigurationError(f"{server.key}.username is not set but a password is",
                                            key=f"{server.key}.username")
        if a.username and not a.password:
            raise ChannelConfigurationError(
                f"no SMTP password for {server.key}: set {server.password_var} in the environment or .env",
                variable=server.password_var)
        conn: smtplib.SMTP | None = None
        try:
            if a.security == "ssl":
                conn = _SmtpSsl(a.host, a.port, local_hostname=_helo_name(), timeout=a.timeout,
                                context=ssl.create_default_context())
            else:
                conn = Smtp(a.host, a.port, local_hostname=_helo_name(), timeout=a.timeout)
            conn.ehlo_or_helo_if_needed()  # what the server offers (PIPELINING, STARTTLS, AUTH)
            if a.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if a.username:
                conn.login(a.username, a.password or "")
            return conn  # type: ignore[return-value]
        except smtplib.SMTPAuthenticationError as exc:
            _abandon(conn)
            raise ChannelConfigurationError(
                f"SMTP server {server.where} refused the login of {a.username!r} "
                f"({exc.smtp_code} {text_of(exc.smtp_error)}): check {server.password_var} "
                f"and {server.key}.username", variable=server.password_var, smtp_code=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            _abandon(conn)
            raise ChannelConfigurationError(
                f"SMTP server {server.where} does not support what {server.key} asks for ({exc}); "
                f"check {server.key}.security (none, starttls, ssl) and username",
                key=f"{server.key}.security") from None
        except ssl.SSLCertVerificationError as exc:
            _abandon(conn)
            raise ChannelConfigurationError(
                f"TLS certificate of {server.where} not trusted: {exc.verify_message}; "
                f"check {server.key}.host", key=f"{server.key}.host") from None
        except smtplib.SMTPResponseException as exc:
            _abandon(conn)
            if 400 <= exc.smtp_code < 500:
                raise TransientError(f"SMTP server {server.where} is not accepting now: "
                                     f"{exc.smtp_code} {text_of(exc.smtp_error)}", smtp_code=exc.smtp_code) from None
            raise ChannelConfigurationError(
                f"SMTP server {server.where} refuses this client: {exc.smtp_code} {text_of(exc.smtp_error)}",
                smtp_code=exc.smtp_code, key=f"{server.key}.host") from None
        except (OSError, smtplib.SMTPException) as exc:
            _abandon(conn)
            raise TransientError(f"cannot reach SMTP server {server.where}: {exc}") from None


def _abandon(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        conn.close()
