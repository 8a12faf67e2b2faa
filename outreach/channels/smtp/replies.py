"""What an SMTP server's replies mean, as classes of the error tree.

A reply refusing a recipient or a message becomes the exception the dispatcher acts on:
a 4xx is transient (a "slow down" one a RateLimited that pauses the account), a 5xx is
permanent (a 5.1.x, or an unknown-user text, a hard bounce that suppresses the address),
and the replies that mean "this account is set up wrong" (authentication, TLS, a refused
sender) stop the account with a message naming the setting to change.
"""
from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass

from ...errors import (
    ChannelConfigurationError,
    DeliveryError,
    PermanentError,
    RateLimited,
    RecipientRejected,
    TransientError,
)

__all__ = ["RATE_RETRY_SECONDS", "Server", "classify_reply", "text_of"]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such user|does not exist|invalid recipient|recipient not found|"
    r"mailbox not found|unknown (?:mailbox|recipient)|no mailbox", re.I)
_RATE = re.compile(r"\brate\b|too many|throttl", re.I)
RATE_RETRY_SECONDS = 60.0  # a 4xx that says "slow down" names no time; wait a minute


def text_of(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def classify_reply(code: int, message: bytes | str, address: str | None = None) -> DeliveryError:
    """Map an SMTP reply refusing a recipient or a message to the exception to raise."""
    text = text_of(message)
    reply = f"{code} {text}".strip()
    enhanced = _ENHANCED.match(text)
    context: dict[str, object] = {"smtp_code": code, "smtp_reply": reply}
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


@dataclass(frozen=True)
class Server:
    """The server of one account, as messages to the operator name it."""

    where: str          # host:port
    key: str            # the account's settings key, email.accounts.NAME
    password_var: str   # the variable holding its password
    envelope_from: str  # the sender address given in MAIL FROM

    def refusal(self, exc: smtplib.SMTPResponseException, to_addr: str | None = None) -> DeliveryError:
        """The error for a reply refusing a command of a message's conversation."""
        code, text = exc.smtp_code, text_of(exc.smtp_error)
        if code == 530 and "starttls" in text.lower():  # "530 5.7.0 Must issue a STARTTLS command first"
            return ChannelConfigurationError(
                f"SMTP server {self.where} accepts mail only over TLS ({code} {text}): set "
                f"{self.key}.security: starttls (or ssl, for a port such as 465)",
                key=f"{self.key}.security", smtp_code=code)
        if code in (530, 534, 535, 538):
            return ChannelConfigurationError(
                f"SMTP server {self.where} wants authentication ({code} {text}): set "
                f"{self.key}.username and {self.password_var}", variable=self.password_var, smtp_code=code)
        if isinstance(exc, smtplib.SMTPSenderRefused) and code >= 500 and code != 552:
            return ChannelConfigurationError(
                f"SMTP server {self.where} refuses the sender {self.envelope_from} ({code} {text}): "
                f"check {self.key}.from", key=f"{self.key}.from", smtp_code=code)
        error = classify_reply(code, exc.smtp_error)
        if isinstance(error, RecipientRejected) and to_addr:  # e.g. 550 5.1.1 only after DATA
            error.context["address"] = to_addr
        return error
