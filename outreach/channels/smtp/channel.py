"""Email over SMTP: one reused connection per channel instance (keep one instance per worker
process), CRLF bytes from mime.py, optional DKIM, replies mapped to the error tree
(replies.py), several messages in flight when the server offers PIPELINING (pipeline.py).

A step of this channel sends one email per recipient, made of
`templates/email/NAME/subject.txt`, `body.html` and optionally `body.txt` (else the text
part is derived from the HTML).
"""
from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from email.utils import parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ...content.templating import one_line
from ...errors import ChannelConfigurationError, DeliveryError
from ...settings import Limit, SmtpAccount, account_env_name
from ..base import Channel, OutgoingEmail, SendResult
from .connection import BuiltEmail, Refused, SmtpConnection
from .mime import (
    build_email,
    check_address,
    make_message_id,
    normalize_message_id,
    sign_dkim,
)
from .pipeline import pipelined
from .replies import Server, classify_reply

if TYPE_CHECKING:
    from ...authoring.campaigns import Campaign, Step
    from ...content.compose import Composer
    from ...models import Subscriber

__all__ = ["BuiltEmail", "SmtpChannel"]


@lru_cache(maxsize=256)
def _template_files(template: str) -> dict[str, str]:  # asked once per message: made once (do not mutate)
    return {"subject": f"email/{template}/subject.txt", "html": f"email/{template}/body.html",
            "text": f"email/{template}/body.txt"}


class SmtpChannel(Channel):
    name = "email"
    noun = "email"
    queue = "email"
    per_recipient = True
    template_dir = "email"
    optional_templates = frozenset({"text"})
    payload_type = OutgoingEmail
    default_limits = (Limit.parse("14/1s"), Limit.parse("50000/1d"))
    idempotent = False

    def __init__(self, account: SmtpAccount) -> None:
        self.account = account
        key = f"email.accounts.{account.name or '<name>'}"
        _, addr = parseaddr(account.from_)
        try:
            envelope_from = check_address(addr)
        except ValueError:
            raise ChannelConfigurationError(
                f"{key}.from = {account.from_!r} is not a valid sender; write e.g. "
                "'Org Name <news@example.org>'", key=f"{key}.from") from None
        self.domain = account.dkim.domain if account.dkim else envelope_from.rpartition("@")[2]
        self.server = Server(where=f"{account.host}:{account.port}", key=key, envelope_from=envelope_from,
                             password_var=f"OUTREACH_SMTP_{account_env_name(account.name or 'NAME')}_PASSWORD")
        self._connection = SmtpConnection(account, self.server)
        self._lock = threading.Lock()  # one SMTP conversation at a time on the shared connection

    # --- what a step of this channel is ------------------------------------------------

    @classmethod
    def template_files(cls, template: str) -> dict[str, str]:
        return _template_files(template)

    @classmethod
    def compose(cls, composer: Composer, campaign: Campaign, step: Step, subscriber: Subscriber | None,
                progress: Mapping[str, Any] | None = None) -> OutgoingEmail:
        if subscriber is None:
            raise ValueError("an email is composed for one subscriber")
        account = cls.account_for(composer.settings, step.account)
        links = composer.links(subscriber, campaign, step, account.unsubscribe_mailto)
        files = cls.template_files(step.template)
        names = [files["subject"], files["html"]] + ([files["text"]] if composer.exists(files["text"]) else [])
        subject, html, *text = composer.render(campaign, step, names, subscriber, links)
        return OutgoingEmail(
            to_addr=subscriber.email,
            to_name=subscriber.name,
            subject=one_line(subject),
            html=html,
            text=(text[0] if text else composer.html_to_text(html)).strip() + "\n",
            list_unsubscribe_url=links.unsubscribe,
            list_unsubscribe_mailto=links.unsubscribe_mailto,
            headers={"X-Outreach-Campaign": f"{campaign.name}/{step.id}"},
        )

    @classmethod
    def for_delivery(cls, composer: Composer, payload: OutgoingEmail, delivery_id: int) -> OutgoingEmail:
        return_path = composer.return_path(delivery_id)
        return replace(payload, return_path=return_path) if return_path else payload

    # --- hooks ------------------------------------------------------------------------

    def build(self, email: OutgoingEmail) -> BuiltEmail:
        message_id = normalize_message_id(email.message_id) if email.message_id else make_message_id(self.domain)
        if message_id != email.message_id:
            email = replace(email, message_id=message_id)
        data = build_email(email, self.account.from_, self.account.reply_to, self.domain)
        if self.account.dkim is not None:
            data = sign_dkim(data, self.account.dkim)
        envelope_from = check_address(email.return_path) if email.return_path else None
        return BuiltEmail(message_id, check_address(email.to_addr), data, envelope_from)

    def transmit(self, built: BuiltEmail) -> Refused:
        """Return smtplib's dict of refused recipients (empty: accepted). One message is a
        stream of one: the same conversation, pipelined or not, as `transmit_many`."""
        with self._lock:
            ((_, _, response),) = pipelined(self._connection, iter([(None, built, None)]))
        if isinstance(response, DeliveryError):
            raise response
        return response  # type: ignore[no-any-return]

    def transmit_many(self, built: Iterator[tuple[Any, BuiltEmail, DeliveryError | None]]
                      ) -> Iterator[tuple[Any, BuiltEmail, Any]]:
        """Messages back to back on the shared connection, several in flight when the server
        offers PIPELINING (see pipeline.py)."""
        with self._lock:
            yield from pipelined(self._connection, built)

    def parse(self, built: BuiltEmail, refused: Refused) -> SendResult:
        if not refused:
            return SendResult(provider_id=built.message_id)
        code, message = refused.get(built.to_addr) or next(iter(refused.values()))
        raise classify_reply(code, message, built.to_addr)

    # --- for people -------------------------------------------------------------------

    def _unsigned(self, payload: OutgoingEmail) -> bytes:
        return build_email(payload, self.account.from_, self.account.reply_to, self.domain)

    def describe(self, payload: OutgoingEmail) -> str:
        """Headers as sent, then each part decoded, so a person can read it."""
        raw = self._unsigned(payload)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").replace("\r\n", "\n")
        parts = [head, ""]
        for part in msg.walk():
            if part.get_content_maintype() == "multipart":
                continue
            parts.append(f"--- part {part.get_content_type()} ({part['Content-Transfer-Encoding']}) ---")
            parts.append(part.get_content())
        return "\n".join(parts)

    def preview_files(self, payload: OutgoingEmail) -> dict[str, bytes]:
        return {".eml": self._unsigned(payload), ".html": payload.html.encode("utf-8"),
                ".txt": payload.text.encode("utf-8")}

    # --- connection -------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            self._connection.current()

    def close(self) -> None:
        with self._lock:
            self._connection.close()
