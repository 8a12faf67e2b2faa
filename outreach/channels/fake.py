"""A channel that sends nothing and remembers everything: for tests, dry runs and the demo's
X sandbox.

It stands in for a real channel class (`imitates`, email by default) and checks payloads with
that class's own `validate`, so what the fake accepts the real channel would too; emails
are still assembled with the SMTP channel's MIME builder. What was "sent" is kept in `sent`,
and optionally appended as JSON lines to a file and written as .eml files, so other
processes (a demo worker, a test) can inspect it.
"""
from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..settings import Limit
from .base import Channel, OutgoingEmail, OutgoingTweet, SendResult
from .smtp.mime import build_email, make_message_id

__all__ = ["FakeChannel", "FakeSend"]

ErrorFactory = BaseException | Callable[[], BaseException]


@dataclass(frozen=True)
class FakeSend:
    provider_id: str
    payload: OutgoingEmail | OutgoingTweet
    progress: tuple[str, ...]
    data: bytes | None  # the MIME bytes of an email


class FakeChannel(Channel):
    name = "fake"
    payload_type = (OutgoingEmail, OutgoingTweet)
    idempotent = True  # nothing leaves: sending again is harmless

    def __init__(self, account: Any = None, *, imitates: type[Channel] | None = None,
                 record_path: str | os.PathLike[str] | None = None, eml_dir: str | os.PathLike[str] | None = None,
                 from_: str = "outreach <outreach@localhost>") -> None:
        self.account = account
        self.imitates = imitates
        self.from_ = getattr(account, "from_", None) or from_
        self.reply_to = getattr(account, "reply_to", None)
        self.domain = self.from_.rpartition("@")[2].rstrip(">").strip() or "localhost"
        self.record_path = Path(record_path) if record_path else None
        self.eml_dir = Path(eml_dir) if eml_dir else None
        self.sent: list[FakeSend] = []
        self._failures: deque[ErrorFactory] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def limits(self) -> list[Limit]:
        configured = getattr(self.account, "limits", None)
        return list(configured or (self.imitates.default_limits if self.imitates else ()))

    @property
    def limit_key(self) -> str:
        # the limiter key the real channel would use: a sandbox shares the account's limits
        kind = self.imitates.name if self.imitates else self.name
        return f"{kind}:{getattr(self.account, 'name', '') or 'default'}"

    def fail_next(self, count: int, error: ErrorFactory) -> None:
        """Make the next `count` sends raise `error`: an exception instance (raised each
        time) or a zero-argument factory such as `lambda: RateLimited("slow", 30)`."""
        with self._lock:
            self._failures.extend([error] * count)

    def build(self, payload: OutgoingEmail | OutgoingTweet) -> tuple[Any, bytes | None]:
        # what the real channel would refuse, the fake refuses too (send runs validate first,
        # with the fake's own, payload-type-only checks)
        self._real(payload).validate(payload)
        if isinstance(payload, OutgoingEmail):
            if payload.message_id is None:
                payload = replace(payload, message_id=make_message_id(self.domain))
            return payload, build_email(payload, self.from_, self.reply_to, self.domain)
        return payload, None

    def _real(self, payload: Any) -> type[Channel]:
        if self.imitates is not None:
            return self.imitates
        from . import CHANNELS  # the registry imports this module

        return next((c for c in CHANNELS.values() if isinstance(payload, c.payload_type)), Channel)

    def transmit(self, built: tuple[Any, bytes | None]) -> FakeSend:
        payload, data = built
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            if failure is not None:
                raise failure() if callable(failure) and not isinstance(failure, BaseException) else failure
            if isinstance(payload, OutgoingTweet):
                new = [f"fake-{os.getpid()}-{next(self._ids)}" for _ in payload.parts[len(payload.posted_ids):]]
                progress = tuple(payload.posted_ids) + tuple(new)
                record = FakeSend(progress[0], payload, progress, None)
            else:
                record = FakeSend(payload.message_id or "", payload, (), data)
            self.sent.append(record)
            self._persist(record)
        return record

    def parse(self, built: Any, record: FakeSend) -> SendResult:
        return SendResult(provider_id=record.provider_id, progress=record.progress)

    def _persist(self, record: FakeSend) -> None:
        p = record.payload
        if self.eml_dir is not None and record.data is not None:
            self.eml_dir.mkdir(parents=True, exist_ok=True)
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.provider_id.strip("<>"))
            (self.eml_dir / f"{name}.eml").write_bytes(record.data)
        if self.record_path is not None:
            line: dict[str, Any] = {"time": time.time(), "pid": os.getpid(), "provider_id": record.provider_id}
            if isinstance(p, OutgoingEmail):
                line.update(kind="email", to=p.to_addr, name=p.to_name, subject=p.subject,
                            headers=dict(p.headers))
            else:
                line.update(kind="tweet", parts=list(p.parts), progress=list(record.progress))
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            # one write() of one line with O_APPEND: lines from several processes do not interleave
            with open(self.record_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
