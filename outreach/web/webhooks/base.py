"""The provider webhook extension point: one base class owns the sequence, one module per
provider fills in its hooks (as django-anymail's tracking webhooks do).

    POST /webhooks/<provider>
      read the body (bounded) → configured? (404) → verify (401/403: nothing recorded)
      → events (400: malformed) → apply each (store/feedback: recorded once per event and
      address) → 200 with what was recorded → an optional follow-up after the answer

Every request is verified before anything is parsed into a decision: a signature (SNS,
SendGrid, Mailgun) or basic auth (Postmark); signed timestamps older or newer than
`bounces.webhooks.tolerance` are refused as replays, and a replay within it records nothing
new, since each event is keyed by the provider's id. The work per event is one small
transaction, done in a worker thread before the answer, so a 200 means it is recorded and a
provider's retry after a failure is harmless.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...bounces.apply import apply, verp_of
from ...bounces.reports import Finding
from ...settings import Settings, Webhooks
from ..pages import site_of

log = logging.getLogger(__name__)
MAX_BODY = 5 * 1024 * 1024  # bytes: SendGrid posts events in batches; none comes near this


class Refused(Exception):
    """The request is not acted on: `status` and a short reason (never a secret)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


@dataclass(frozen=True)
class Event:
    """One provider event: what it says about which addresses."""

    id: str                                # the provider's id of the event: the idempotency key
    findings: tuple[Finding, ...]
    at: datetime
    message_id: str | None = None          # the Message-ID the message was sent with
    envelope_sender: str | None = None     # the MAIL FROM it was sent with (a VERP address)


@dataclass
class Accepted:
    events: list[Event] = field(default_factory=list)
    follow_up: Callable[[], None] | None = None  # run after the answer (SNS: confirm a subscription)
    note: str = ""


class Webhook:
    name: ClassVar[str] = ""

    def configured(self, hooks: Webhooks) -> bool:
        raise NotImplementedError

    def accept(self, headers: Mapping[str, str], body: bytes, hooks: Webhooks, now: datetime) -> Accepted:
        """Verify the request (raise Refused) and read its events."""
        raise NotImplementedError

    # --- the sequence -----------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        site = site_of(request)
        hooks = site.settings.bounces.webhooks
        if not self.configured(hooks):
            return _answer(404, f"the {self.name} webhook is not configured")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _answer(413, "request body too large")
        try:
            accepted = await run_in_threadpool(self.accept, request.headers, body, hooks, datetime.now(UTC))
        except Refused as refused:
            log.warning("%s webhook refused (%d): %s", self.name, refused.status, refused.why)
            headers = {"www-authenticate": 'Basic realm="webhooks"'} if refused.status == 401 else None
            return _answer(refused.status, refused.why, headers)
        recorded, repeated = await run_in_threadpool(self._record, site.settings, site.engine, accepted.events)
        answer = JSONResponse({"recorded": recorded, "already_recorded": repeated,
                               **({"note": accepted.note} if accepted.note else {})},
                              background=BackgroundTask(accepted.follow_up) if accepted.follow_up else None)
        return answer

    def _record(self, settings: Settings, engine: Any, events: list[Event]) -> tuple[int, int]:
        verp = verp_of(settings)
        recorded = repeated = 0
        for event in events:
            delivery_id = verp.read(event.envelope_sender) if verp and event.envelope_sender else None
            for outcome in apply(engine, settings, event.findings, source=self.name, event=event.id, at=event.at,
                                 delivery_id=delivery_id, message_id=event.message_id):
                if outcome.recorded is not None and outcome.recorded.new:
                    recorded += 1
                elif outcome.recorded is not None:
                    repeated += 1
        return recorded, repeated


def _answer(status: int, why: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": why}, status_code=status, headers=headers)


# --- helpers for providers -----------------------------------------------------------------

def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None


def fresh(at: datetime, now: datetime, tolerance: timedelta) -> None:
    """Refuse a signed timestamp outside the tolerance: a replay of an old request, or a clock
    far off."""
    if abs(now - at) > tolerance:
        raise Refused(403, "the signed timestamp is too old or in the future (replayed?)")


def epoch(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Refused(400, "malformed timestamp") from None


def when(value: Any, default: datetime) -> datetime:
    """An event's own time (seconds since the epoch), else `default`: one odd field in a
    verified batch must not cost the batch."""
    try:
        return epoch(value)
    except Refused:
        return default


def iso(value: Any, default: datetime) -> datetime:
    if not isinstance(value, str):
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def obj(value: Any) -> dict[str, Any]:
    """A JSON object the provider sent, or {} for anything else."""
    return value if isinstance(value, dict) else {}


def text(value: Any, limit: int = 500) -> str | None:
    """A provider's string, one line, bounded (None when absent or not a string)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    cleaned = " ".join(str(value).split())
    return cleaned[:limit] or None


def address(value: Any) -> str | None:
    found = text(value, 320)
    return found.strip("<>").lower() if found and "@" in found else None


def message_id(value: Any) -> str | None:
    found = text(value, 500)
    if not found:
        return None
    return found if found.startswith("<") else f"<{found}>"
