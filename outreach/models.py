"""The entities every part of outreach talks about, and their states. A leaf: it imports
nothing of ours, so the store, the templates, the importer, the web pages and the CLI can
all use it without pulling each other in.

States are `StrEnum`s: a member is equal to the string stored in the database (so rows
compare to them directly), the schema's CHECK constraints are built from them, and a typo
in code is an AttributeError instead of a new state.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import pycountry


class SubscriberStatus(StrEnum):
    PENDING = "pending"            # signed up, has not confirmed yet (double opt-in)
    CONFIRMED = "confirmed"        # receives campaigns
    UNSUBSCRIBED = "unsubscribed"  # asked to stop
    BOUNCED = "bounced"            # the address does not exist (hard bounce)
    COMPLAINED = "complained"      # marked a message as spam

    @property
    def receives(self) -> bool:
        """Only confirmed subscribers are ever in an audience."""
        return self is SubscriberStatus.CONFIRMED


class RunStatus(StrEnum):
    PLANNING = "planning"    # created; its deliveries are being written
    PLANNED = "planned"      # every delivery exists; they go out as they come due
    PAUSED = "paused"        # an operator (or a circuit breaker) stopped it; resumable
    DONE = "done"            # no delivery is active any more
    SKIPPED = "skipped"      # the occurrence was found too late (past `expires`)
    CANCELLED = "cancelled"  # stopped for good

    @property
    def finished(self) -> bool:
        return self in (RunStatus.DONE, RunStatus.SKIPPED, RunStatus.CANCELLED)


class DeliveryState(StrEnum):
    PENDING = "pending"      # planned, waiting for its due time
    QUEUED = "queued"        # leased to the broker; a worker will claim it
    SENDING = "sending"      # claimed by a worker
    SENT = "sent"            # the provider accepted it
    RETRY = "retry"          # a transient failure or a limit: due again later
    FAILED = "failed"        # refused for good, or out of attempts
    SKIPPED = "skipped"      # not sent on purpose (unsubscribed or suppressed since planning)
    UNKNOWN = "unknown"      # may or may not have arrived: never resent by itself
    CANCELLED = "cancelled"  # its run was cancelled before it went out
    PAUSED = "paused"        # its run is paused: held, sent when the run is resumed

    @property
    def active(self) -> bool:
        """Still on its way: a run with an active delivery is not done."""
        return self in ACTIVE_STATES


ACTIVE_STATES = frozenset({DeliveryState.PENDING, DeliveryState.QUEUED, DeliveryState.SENDING,
                           DeliveryState.RETRY, DeliveryState.PAUSED})
FINAL_STATES = frozenset(DeliveryState) - ACTIVE_STATES


class EventKind(StrEnum):
    """What happened to a delivery, in its event history."""

    QUEUED = "queued"
    SENT = "sent"
    RETRIED = "retried"
    FAILED = "failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    CLICKED = "clicked"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    PROGRESS = "progress"
    REQUEUED = "requeued"


@dataclass(slots=True)
class Subscriber:
    """One person on the list: what the CSV importer and the sign-up pages write, what the
    store keeps and what templates read as `subscriber`. Treated as a value (change one with
    `replace`); not frozen only because a frozen dataclass sets each field through
    object.__setattr__, which made loading a batch for sending ~15% slower (measured).

    A field that is None was not given: an import leaves the stored value as it is (for
    `tags`, None keeps the stored tags and () removes them).
    """

    email: str                          # normalized address (see subscribers.fields)
    name: str | None = None
    city: str | None = None
    region: str | None = None           # state or province, e.g. TX or ON (ISO 3166-2 without the country)
    country: str | None = None          # ISO 3166-1 alpha-2, upper case
    timezone: str | None = None         # IANA name
    language: str | None = None         # BCP 47 tag
    tags: tuple[str, ...] | None = None
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    status: SubscriberStatus | None = None
    consent_source: str | None = None
    consent_at: datetime | None = None
    latitude: float | None = None       # degrees north; with longitude, where the person is
    longitude: float | None = None      # degrees east
    id: int | None = None               # the store's id, once stored
    # The random value that links in this person's email carry instead of the address (see
    # content/links.py); made by the database when the row is inserted, never shown to anyone.
    link_id: str | None = None

    @property
    def first_name(self) -> str | None:
        parts = self.name.split() if self.name else []
        return parts[0] if parts else None

    @property
    def country_name(self) -> str | None:
        if not self.country:
            return None
        found = pycountry.countries.get(alpha_2=self.country.upper())
        return getattr(found, "common_name", None) or getattr(found, "name", None) or self.country

    def replace(self, **changes: Any) -> Subscriber:
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(Subscriber))
# Columns of a subscriber CSV (the rest of a file's columns are custom attributes).
CSV_COLUMNS = tuple(f for f in _FIELDS if f not in ("attrs", "id", "link_id"))
# What a template may read on `subscriber`: personal data it needs, not the bookkeeping.
TEMPLATE_FIELDS = frozenset(_FIELDS) - {"status", "consent_source", "consent_at", "id", "link_id"} | {
    "first_name", "country_name"}
