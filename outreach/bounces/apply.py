"""From what came back to what changes: find the delivery a finding answers, record it once,
apply the rules (store/feedback.py), and let the circuit breaker look at its run.

Which delivery, best first:
1. the VERP envelope sender the report came back to (or that a complaint's copy of our
   message kept as Return-Path): signed, it names exactly one delivery, and that delivery's
   recipient is the address acted on, whatever address the remote server printed (a
   forwarded mailbox reports its own);
2. the Message-ID of the original message (quoted in the report, or a provider's event);
3. the latest delivery sent to the address the report names.
A finding whose address is not a valid address is left out; one that matches no delivery
is still recorded and still suppresses (the address is known to be bad either way).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from ..content.verp import Verp
from ..errors import DataError
from ..models import FeedbackKind
from ..settings import Settings
from ..store import feedback
from ..store.suppressions import suppression_key
from . import breaker
from .reports import Finding, Report, parse

log = logging.getLogger(__name__)
_WORST = {FeedbackKind.COMPLAINT: 0, FeedbackKind.HARD_BOUNCE: 1, FeedbackKind.SOFT_BOUNCE: 2,
          FeedbackKind.UNSUBSCRIBE: 3}


@dataclass(frozen=True)
class Outcome:
    finding: Finding
    address: str | None                 # the address acted on
    delivery_id: int | None = None
    recorded: feedback.Recorded | None = None
    paused: str | None = None           # the breaker paused the run: why
    note: str = ""                      # why nothing was recorded

    def __str__(self) -> str:
        what = f"{self.finding.kind.value.replace('_', ' ')} {self.address or self.finding.address}"
        where = f" (delivery {self.delivery_id})" if self.delivery_id else " (no delivery found)"
        if self.recorded is None:
            return f"{what}: not recorded: {self.note}"
        if not self.recorded.new:
            return f"{what}{where}: already recorded"
        done = []
        if self.recorded.status:
            done.append(f"subscriber {self.recorded.status}")
        if self.recorded.suppressed:
            done.append("suppressed")
        line = f"{what}{where}: {', '.join(done) or 'recorded'}"
        return line + (f"; run {self.recorded.run_id} paused: {self.paused}" if self.paused else "")


def verp_of(settings: Settings) -> Verp | None:
    if settings.bounces.domain is None or not settings.secret_key:
        return None
    key, previous = settings.link_keys()
    return Verp(key, settings.bounces.domain, settings.bounces.local_part, previous)


def apply_report(engine: Engine, settings: Settings, report: Report) -> list[Outcome]:
    """Record what `report` says (nothing for an auto-reply or a message that is not a report)."""
    if not report.findings:
        return []
    verp = verp_of(settings)
    delivery_id = next((d for a in report.addressed_to if verp and (d := verp.read(a)) is not None), None)
    findings = list(report.findings)
    if delivery_id is not None:
        # one delivery per envelope sender: the worst of what the report says about it
        findings = [min(findings, key=lambda f: _WORST[f.kind])]
    return apply(engine, settings, findings, source=report.type.value, event=report.key, at=report.at,
                 delivery_id=delivery_id, message_id=report.original_message_id)


def apply(engine: Engine, settings: Settings, findings: Iterable[Finding], *, source: str, event: str,
          at: datetime, delivery_id: int | None = None, message_id: str | None = None) -> list[Outcome]:
    """Record each finding of one event (a report, a webhook event), once per address."""
    outcomes = []
    rules = settings.bounces
    for finding in findings:
        delivery = feedback.find_delivery(engine, delivery_id=delivery_id, message_id=message_id,
                                          address=finding.address)
        if delivery is not None and delivery.id != delivery_id and delivery.recipient.lower() != finding.address:
            # the Message-ID named another recipient's copy: look the address up instead
            delivery = feedback.find_delivery(engine, address=finding.address)
        address = delivery.recipient if delivery is not None and delivery.id == delivery_id else finding.address
        try:
            address = suppression_key(address)
        except DataError as exc:
            outcomes.append(Outcome(finding, None, note=str(exc)))
            continue
        entry = feedback.Entry(key=feedback.event_key(source, event, address), source=source, kind=finding.kind,
                               address=address, code=finding.code, text=finding.text, at=at,
                               delivery_id=delivery.id if delivery is not None else None)
        recorded = feedback.record(engine, entry, soft_limit=rules.soft_limit, soft_window=rules.soft_window)
        paused = None
        if recorded.new and recorded.run_id is not None and finding.kind in (FeedbackKind.HARD_BOUNCE,
                                                                            FeedbackKind.COMPLAINT):
            paused = breaker.check(engine, settings, recorded.run_id)
        outcome = Outcome(finding, address, entry.delivery_id, recorded, paused)
        # no address in the log: the delivery id leads an operator to it
        log.info("%s: %s for delivery %s (%s)", source, finding.kind.value, entry.delivery_id or "unknown",
                 "new" if recorded.new else "already recorded",
                 extra={"event": "feedback", "source": source, "kind": finding.kind.value,
                        "delivery": entry.delivery_id, "run": recorded.run_id, "new": recorded.new,
                        "code": finding.code})
        outcomes.append(outcome)
    return outcomes


def ingest(engine: Engine, settings: Settings, raw: bytes, recipients: Iterable[str] = ()
           ) -> tuple[Report, list[Outcome]]:
    """Read one returned message and act on it (DataError when it is not a message)."""
    report = parse(raw, recipients)
    return report, apply_report(engine, settings, report)
