"""`outreach bounces serve`: an SMTP server (aiosmtpd) for the bounce domain's MX.

It accepts mail only for the bounce address (`bounces.local_part`, with or without a VERP
token: `bounces+TOKEN@...`) and refuses every other recipient, so it is no relay and no
mailbox. Each message is read and acted on before the reply, so a 250 means it was recorded:

    250  recorded (or recognized and ignored: an auto-reply, a message that is no report)
    451  the database did not answer: the sending server keeps the message and tries again
    554  not an email message at all

With `bounces.tls_cert` and `tls_key` it offers STARTTLS, as senders expect of an MX (they
fall back to clear text where it is not offered, and most then say so in the headers).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine

from ..errors import ConfigurationError, DataError, ServiceUnavailable
from ..settings import Settings
from .apply import ingest
from .reports import MAX_REPORT

log = logging.getLogger(__name__)


class BounceHandler:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.local_part = settings.bounces.local_part
        self.received = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        local = address.rpartition("@")[0].lower()
        if local != self.local_part and not local.startswith(self.local_part + "+"):
            return "550 5.1.1 no such mailbox here: this server only takes bounces"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            report, outcomes = await loop.run_in_executor(None, ingest, self.engine, self.settings, raw,
                                                          list(envelope.rcpt_tos))
        except DataError as exc:
            return f"554 5.6.0 {exc}"[:500]
        except (sa.exc.OperationalError, sa.exc.InterfaceError, ServiceUnavailable) as exc:
            log.error("could not record a bounce, asking the sender to retry: %s", type(exc).__name__)
            return "451 4.3.0 temporary failure, try again later"
        self.received += 1
        if not outcomes:
            return f"250 2.6.0 ignored: {report.why or report.type.value}"[:500]
        return f"250 2.6.0 recorded {len(outcomes)} {report.type.value} finding(s)"


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context STARTTLS uses, from bounces.tls_cert and tls_key (relative to the
    project); None when they are unset. ConfigurationError when they cannot be loaded."""
    cert, key = settings.bounces.tls_cert, settings.bounces.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.path(cert), settings.path(key))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"cannot load bounces.tls_cert {cert} with bounces.tls_key {key}: {reason}; give a PEM certificate "
            "(chain) and its private key, readable by this process") from None
    return context


class BounceServer:
    """The server on `host:port` (port 0: any free port) in a thread of its own, offering
    STARTTLS when `tls` is given."""

    def __init__(self, engine: Engine, settings: Settings, host: str = "127.0.0.1", port: int = 2525,
                 tls: ssl.SSLContext | None = None) -> None:
        self.handler = BounceHandler(engine, settings)
        self.host = host
        self._controller = _Controller(self.handler, hostname=host, port=port, decode_data=False,
                                       data_size_limit=MAX_REPORT, enable_SMTPUTF8=True,
                                       server_hostname="outreach-bounces", tls_context=tls)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> BounceServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> BounceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Controller(Controller):
    """aiosmtpd's Controller, made to work with port 0 (as the demo's sink does)."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        super()._trigger_server()  # type: ignore[no-untyped-call]
