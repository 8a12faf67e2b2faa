"""Email over SMTP: one reused connection per channel instance (keep one instance per worker
process), CRLF bytes from outreach.channels.smtp.mime, optional DKIM, SMTP replies mapped to the error tree.
"""
from __future__ import annotations

import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from ...errors import (ChannelConfigurationError, DeliveryError, PermanentError, RateLimited,
                       RecipientRejected, TransientError)
from .mime import build_email, check_address, make_message_id, normalize_message_id, sign_dkim
from ...settings import Limit, SmtpAccount, account_env_name
from ..base import Channel, OutgoingEmail, SendResult
from .pipeline import data_bytes, pipelined

__all__ = ["SmtpChannel", "classify_reply"]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such user|does not exist|invalid recipient|recipient not found|"
    r"mailbox not found|unknown (?:mailbox|recipient)|no mailbox", re.I)
_RATE = re.compile(r"\brate\b|too many|throttl", re.I)
RATE_RETRY_SECONDS = 60.0  # a 4xx that says "slow down" names no time; wait a minute


@dataclass(frozen=True)
class BuiltEmail:
    message_id: str
    to_addr: str
    data: bytes


class _Tracking:
    """Remembers whether DATA was started, so a dropped connection can be told apart:
    before DATA nothing was sent (reconnect and retry at once); after, the outcome is unknown."""

    data_started = False
    sends = 0

    def data(self, msg):  # type: ignore[override]
        self.data_started = True
        if not isinstance(msg, bytes):
            return super().data(msg)  # type: ignore[misc]
        # smtplib dot-stuffs with a regex over the whole message; data_bytes writes the same
        # bytes (CRLF lines already) without one.
        self.putcmd("data")  # type: ignore[attr-defined]
        code, repl = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        self.send(data_bytes(msg))  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined]

    # Addresses reach here already checked as plain ASCII addr-specs (mime.check_address), so
    # smtplib's quoteaddr, which re-parses each with email.utils.parseaddr (about a tenth of
    # the CPU of a send), is skipped.
    def mail(self, sender, options=()):  # type: ignore[override]
        extra = " " + " ".join(options) if options and self.does_esmtp else ""  # type: ignore[attr-defined]
        self.putcmd("mail", f"FROM:<{sender}>{extra}")  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined]

    def rcpt(self, recip, options=()):  # type: ignore[override]
        extra = " " + " ".join(options) if options and self.does_esmtp else ""  # type: ignore[attr-defined]
        self.putcmd("rcpt", f"TO:<{recip}>{extra}")  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined]


class _SMTP(_Tracking, smtplib.SMTP):
    pass


class _SMTP_SSL(_Tracking, smtplib.SMTP_SSL):
    pass


@lru_cache(maxsize=1)
def _helo_name() -> str:
    return socket.getfqdn()


def classify_reply(code: int, message: bytes | str, address: str | None = None) -> DeliveryError:
    """Map an SMTP reply refusing a recipient or a message to the exception to raise."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    reply = f"{code} {text}".strip()
    enhanced = _ENHANCED.match(text)
    context = {"smtp_code": code, "smtp_reply": reply}
    if address:
        context["address"] = address
    if 400 <= code < 500:
        # Only an explicit "slow down" is a rate limit (the caller may pause the whole account);
        # other 4xx (greylisting, mailbox busy) concern this message only.
        if _RATE.search(text):
            return RateLimited(f"SMTP server asks to slow down: {reply}", RATE_RETRY_SECONDS, **context)
        return TransientError(f"SMTP server deferred: {reply}", **context)
    if enhanced:
        hard = enhanced.group(2) == "1"  # 5.1.x: bad mailbox / domain / address syntax
    else:
        hard = code in (550, 551, 553) and bool(_UNKNOWN_USER.search(text))
    if address is not None or hard:
        who = f"recipient {address}" if address else "recipient"
        return RecipientRejected(f"{who} refused: {reply}", hard_bounce=hard, **context)
    return PermanentError(f"SMTP server refused the message: {reply}", **context)


class SmtpChannel(Channel):
    name = "email"
    payload_type = OutgoingEmail
    supports_html = True
    default_limits = (Limit.parse("14/1s"), Limit.parse("50000/1d"))
    idempotent = False

    def __init__(self, account: SmtpAccount) -> None:
        self.account = account
        self._key = f"email.accounts.{account.name or '<name>'}"
        self._password_var = f"OUTREACH_SMTP_{account_env_name(account.name or 'NAME')}_PASSWORD"
        _, addr = parseaddr(account.from_)
        try:
            self.envelope_from = check_address(addr)
        except ValueError:
            raise ChannelConfigurationError(
                f"{self._key}.from = {account.from_!r} is not a valid sender; write e.g. "
                "'Org Name <news@example.org>'", key=f"{self._key}.from") from None
        self.domain = account.dkim.domain if account.dkim else self.envelope_from.rpartition("@")[2]
        self._conn: _SMTP | None = None
        self._lock = threading.Lock()  # one SMTP conversation at a time on the shared connection

    # --- hooks ------------------------------------------------------------------------

    def build(self, email: OutgoingEmail) -> BuiltEmail:
        message_id = normalize_message_id(email.message_id) if email.message_id else make_message_id(self.domain)
        if message_id != email.message_id:
            email = replace(email, message_id=message_id)
        data = build_email(email, self.account.from_, self.account.reply_to, self.domain)
        if self.account.dkim is not None:
            data = sign_dkim(data, self.account.dkim)
        return BuiltEmail(message_id, check_address(email.to_addr), data)

    def transmit(self, built: BuiltEmail) -> dict[str, tuple[int, bytes]]:
        """Return smtplib's dict of refused recipients (empty: accepted). One message is a
        stream of one: the same conversation, pipelined or not, as `transmit_many`."""
        with self._lock:
            ((_, _, response),) = pipelined(self, iter([(None, built, None)]))
        if isinstance(response, DeliveryError):
            raise response
        return response

    def transmit_many(self, built: Iterator[tuple[Any, BuiltEmail, DeliveryError | None]]
                      ) -> Iterator[tuple[Any, BuiltEmail, Any]]:
        """Messages back to back on the shared connection, several in flight when the server
        offers PIPELINING (see smtp_pipeline.py)."""
        with self._lock:
            yield from pipelined(self, built)

    def _transmit_one(self, built: BuiltEmail) -> dict[str, tuple[int, bytes]]:
        """One message through smtplib, for a server without PIPELINING (the caller holds
        the lock)."""
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sends > 0
            conn.data_started = False
            try:
                refused = conn.sendmail(self.envelope_from, [built.to_addr], built.data)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients  # all refused: same shape as a partial refusal
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if reused and attempt == 1 and not conn.data_started:
                    continue  # idle connection closed by the server; nothing was sent
                raise TransientError(f"SMTP server {self._where} closed the connection: {exc}",
                                     outcome_unknown=conn.data_started) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:
                    self._drop()
                    if reused and attempt == 1 and not conn.data_started:
                        continue  # e.g. "421 timeout exceeded" on a stale connection
                raise self._response_error(exc, built) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise TransientError(f"SMTP send to {self._where} failed: {exc}",
                                     outcome_unknown=conn.data_started) from None
            conn.sends += 1
            if any(code == 421 for code, _ in refused.values()):
                self._drop()
            return refused
        raise AssertionError("unreachable")

    def parse(self, built: BuiltEmail, refused: dict[str, tuple[int, bytes]]) -> SendResult:
        if not refused:
            return SendResult(provider_id=built.message_id)
        code, message = refused.get(built.to_addr) or next(iter(refused.values()))
        raise classify_reply(code, message, built.to_addr)

    # --- connection -------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            self._connection()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    conn.close()

    @property
    def _where(self) -> str:
        return f"{self.account.host}:{self.account.port}"

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> _SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> _SMTP:
        a = self.account
        if a.password and not a.username:
            raise ChannelConfigurationError(f"{self._key}.username is not set but a password is",
                                            key=f"{self._key}.username")
        if a.username and not a.password:
            raise ChannelConfigurationError(
                f"no SMTP password for {self._key}: set {self._password_var} in the environment or .env",
                variable=self._password_var)
        conn: _SMTP | None = None
        try:
            if a.security == "ssl":
                conn = _SMTP_SSL(a.host, a.port, local_hostname=_helo_name(), timeout=a.timeout,
                                 context=ssl.create_default_context())
            else:
                conn = _SMTP(a.host, a.port, local_hostname=_helo_name(), timeout=a.timeout)
            conn.ehlo_or_helo_if_needed()  # what the server offers (PIPELINING, STARTTLS, AUTH)
            if a.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if a.username:
                conn.login(a.username, a.password or "")
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon(conn)
            raise ChannelConfigurationError(
                f"SMTP server {self._where} refused the login of {a.username!r} "
                f"({exc.smtp_code} {_text(exc.smtp_error)}): check {self._password_var} "
                f"and {self._key}.username", variable=self._password_var, smtp_code=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            self._abandon(conn)
            raise ChannelConfigurationError(
                f"SMTP server {self._where} does not support what {self._key} asks for ({exc}); "
                f"check {self._key}.security (none, starttls, ssl) and username",
                key=f"{self._key}.security") from None
        except ssl.SSLCertVerificationError as exc:
            self._abandon(conn)
            raise ChannelConfigurationError(
                f"TLS certificate of {self._where} not trusted: {exc.verify_message}; "
                f"check {self._key}.host", key=f"{self._key}.host") from None
        except smtplib.SMTPResponseException as exc:
            self._abandon(conn)
            if 400 <= exc.smtp_code < 500:
                raise TransientError(f"SMTP server {self._where} is not accepting now: "
                                     f"{exc.smtp_code} {_text(exc.smtp_error)}", smtp_code=exc.smtp_code) from None
            raise ChannelConfigurationError(
                f"SMTP server {self._where} refuses this client: {exc.smtp_code} {_text(exc.smtp_error)}",
                smtp_code=exc.smtp_code, key=f"{self._key}.host") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._abandon(conn)
            raise TransientError(f"cannot reach SMTP server {self._where}: {exc}") from None

    @staticmethod
    def _abandon(conn: smtplib.SMTP | None) -> None:
        if conn is not None:
            conn.close()

    def _response_error(self, exc: smtplib.SMTPResponseException, built: BuiltEmail) -> DeliveryError:
        code, text = exc.smtp_code, _text(exc.smtp_error)
        if code == 530 and "starttls" in text.lower():  # "530 5.7.0 Must issue a STARTTLS command first"
            return ChannelConfigurationError(
                f"SMTP server {self._where} accepts mail only over TLS ({code} {text}): set "
                f"{self._key}.security: starttls (or ssl, for a port such as 465)",
                key=f"{self._key}.security", smtp_code=code)
        if code in (530, 534, 535, 538):
            return ChannelConfigurationError(
                f"SMTP server {self._where} wants authentication ({code} {text}): set "
                f"{self._key}.username and {self._password_var}", variable=self._password_var, smtp_code=code)
        if isinstance(exc, smtplib.SMTPSenderRefused) and code >= 500 and code != 552:
            return ChannelConfigurationError(
                f"SMTP server {self._where} refuses the sender {self.envelope_from} ({code} {text}): "
                f"check {self._key}.from", key=f"{self._key}.from", smtp_code=code)
        error = classify_reply(code, exc.smtp_error)
        if isinstance(error, RecipientRejected):  # e.g. 550 5.1.1 only after DATA
            error.context["address"] = built.to_addr
        return error


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
