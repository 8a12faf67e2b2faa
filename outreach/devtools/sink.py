"""A local SMTP sink for the demo and staging: accepts every message on loopback and keeps it.

Each accepted message is saved once per envelope recipient as an `.eml` file under the outbox,
named `<UTC timestamp>-<counter>-<recipient>.eml`: a `Return-Path:` line holding the envelope
sender (MAIL FROM), as a final mail server adds it, then the DATA bytes exactly as the client
sent them (after SMTP dot-unstuffing; CRLF line endings are kept). Files are written to
a hidden temporary name and renamed, so a reader never sees half a message. Nothing is
relayed anywhere.

    with SmtpSink("var/outbox") as sink:        # port 0: the OS picks a free port
        send_to("127.0.0.1", sink.port)
    python -m outreach.devtools.sink --port 1025 --outbox var/outbox   # foreground; Ctrl-C stops
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from aiosmtpd.controller import Controller

LOOPBACK = "127.0.0.1"
# Generous: a newsletter with inline images stays far below this; a runaway client does not.
DATA_SIZE_LIMIT = 64 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")
_UNSAFE_HEADER = re.compile(r"[\x00-\x20<>\x7f]")  # a header line cannot be split or broken by it


def _safe_name(recipient: str) -> str:
    """An address as a file-name part: no separators, no leading dots, bounded length."""
    name = _UNSAFE.sub("_", recipient).strip("._") or "unknown"
    return name[:100]


class _Handler:
    """aiosmtpd handler: writes one file per RCPT, then replies 250."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.saved = 0
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or b""
        # what a final mail server records (RFC 5321 4.4): the envelope sender, where bounces go
        sender = _UNSAFE_HEADER.sub("", envelope.mail_from or "")
        data = f"Return-Path: <{sender}>\r\n".encode("utf-8", "replace") + data
        for recipient in envelope.rcpt_tos:
            self._save(recipient, data)
        return "250 Message accepted for delivery"

    def _save(self, recipient: str, data: bytes) -> Path:
        with self._lock:
            number = next(self._counter)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{number:06d}-{_safe_name(recipient)}.eml"
        final = self.outbox / name
        tmp = self.outbox / f".{name}.tmp"
        # No fsync: this is a demo/staging catcher; the rename only guarantees that readers
        # (the demo's report, a mail client) never see a partial file.
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, final)
        with self._lock:
            self.saved += 1
        return final


class _Controller(Controller):
    """aiosmtpd's Controller, made to work with port 0 (it would otherwise connect to port 0
    to trigger its lazy server set-up)."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            # aiosmtpd declares an AbstractServer; it holds the asyncio.Server create_server made
            self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated


class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives as .eml files."""

    def __init__(self, outbox: Path | str, port: int = 0, host: str = LOOPBACK) -> None:
        self.outbox = Path(outbox).resolve()
        self.host = host
        self._requested_port = port
        self._handler = _Handler(self.outbox)
        self._controller: _Controller | None = None

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the SMTP sink is not running; call start() first")
        return self._controller.port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        self.outbox.mkdir(parents=True, exist_ok=True)
        controller = _Controller(
            self._handler, hostname=self.host, port=self._requested_port,
            decode_data=False, data_size_limit=DATA_SIZE_LIMIT, enable_SMTPUTF8=True,
            server_hostname="outreach-sink")
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Close the listening socket and stop the server thread; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def count(self) -> int:
        """Files (one per recipient) this sink has saved since it was created."""
        return self._handler.saved

    def files(self) -> list[Path]:
        """Every .eml in the outbox (also those of earlier runs), oldest first."""
        return sorted(self.outbox.glob("*.eml"))

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m outreach.devtools.sink",
                                     description="Run a local SMTP sink that keeps every message as .eml.")
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=1025, help="port (default: %(default)s; 0 = any free port)")
    parser.add_argument("--outbox", type=Path, default=Path("var/outbox"),
                        help="directory for the .eml files (default: %(default)s)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sink = SmtpSink(args.outbox, port=args.port, host=args.host).start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"SMTP sink on {sink.host}:{sink.port}, saving to {sink.outbox} (Ctrl-C stops)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop()
    print(f"stopped; {sink.count()} file(s) saved", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
