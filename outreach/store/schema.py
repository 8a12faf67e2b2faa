"""The tables of the store, as SQLAlchemy Core metadata.

The migrations in `migrations/versions/` create exactly these tables; a test compares the two.
Timestamps are timezone-aware UTC in Python on both databases (`UTCDateTime`), and every state
column carries a CHECK constraint so a typo in code cannot invent a state.
"""
from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from ..models import DeliveryState, EventKind, RunStatus, SubscriberStatus

# Ids: BIGINT on PostgreSQL (deliveries grow by audience x runs), INTEGER on SQLite where only
# INTEGER PRIMARY KEY is the auto-incrementing rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime in Python; TIMESTAMPTZ on PostgreSQL, canonical UTC text on SQLite
    (so equality and ordering work on the stored strings). Naive datetimes are refused: a
    scheduler that guesses a time zone sends at the wrong hour."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class random_link_id(sa.sql.functions.GenericFunction[str]):
    """A new random 128-bit value as 32 hex digits, made by the database itself, so every way a
    row is inserted (an import, the sign-up page, plain SQL) gets one. Both sources are the
    database's cryptographic generator: SQLite's randomblob (ChaCha20 seeded from the OS) and
    PostgreSQL's gen_random_uuid (built in since 13; 122 of its bits are random)."""

    type = sa.String()
    inherit_cache = True


# The same SQL as migration 0005 writes (a migration must not change when the code does).
LINK_ID_DEFAULT = {"sqlite": "lower(hex(randomblob(16)))",
                   "postgresql": "replace(CAST(gen_random_uuid() AS TEXT), '-', '')"}


@compiles(random_link_id, "sqlite")
def _random_link_id_sqlite(element: random_link_id, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({LINK_ID_DEFAULT['sqlite']})"  # SQLite wants an expression default in parentheses


@compiles(random_link_id, "postgresql")
def _random_link_id_pg(element: random_link_id, compiler: SQLCompiler, **kw: Any) -> str:
    return LINK_ID_DEFAULT["postgresql"]


def _in(column: str, values: type[StrEnum]) -> str:
    """The CHECK of a state column: one of the enum's values (models.py is the one list)."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

subscribers = sa.Table(
    "subscribers", metadata,
    sa.Column("id", BigId, primary_key=True),
    # email_validator's normalized form (domain lower-cased, local part as first written);
    # unique case-insensitively (index below): John@ and john@ are one person.
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("city", sa.String(200)),
    sa.Column("region", sa.String(100)),                  # state or province
    sa.Column("country", sa.String(2)),                   # ISO 3166-1 alpha-2, upper case
    sa.Column("timezone", sa.String(64)),                 # IANA name
    sa.Column("language", sa.String(35)),                 # BCP 47 tag
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("consent_source", sa.String(200)),
    sa.Column("consent_at", UTCDateTime()),
    sa.Column("attrs", Json, nullable=False, server_default="{}"),  # custom attributes (strings)
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # What links in this person's email carry instead of the address (content/links.py): the
    # unsubscribe, view-online and preferences pages find the subscriber by it.
    sa.Column("link_id", sa.String(32), nullable=False, server_default=random_link_id()),
    # Chosen on the preferences page: left out of every audience, and skipped at send time,
    # until then.
    sa.Column("paused_until", UTCDateTime()),
    # Where the person is (given in the CSV, or derived from city and country by the
    # importer): the advocacy target and the nearest event are found by distance from here.
    sa.Column("latitude", sa.Float()),
    sa.Column("longitude", sa.Float()),
    sa.CheckConstraint(_in("status", SubscriberStatus), name="status"),
    sa.Index(None, "status", "country"),
    sa.Index(None, "timezone"),
    sa.Index(None, "link_id", unique=True),
)
# The upsert key of imports (ON CONFLICT (lower(email))) and of every lookup by address.
sa.Index("uq_subscribers_lower_email", sa.func.lower(subscribers.c.email), unique=True)

subscriber_tags = sa.Table(
    "subscriber_tags", metadata,
    sa.Column("subscriber_id", BigId, sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tag", sa.String(100), primary_key=True),
    sa.Index(None, "tag", "subscriber_id"),  # EXISTS (... WHERE tag IN ...) probes
)

suppressions = sa.Table(
    "suppressions", metadata,
    # Lower-cased normalized address: a suppression covers every spelling of the address.
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("source", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("campaign", sa.String(200), nullable=False),
    sa.Column("step", sa.String(200), nullable=False),
    sa.Column("occurrence", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("planned_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("note", sa.Text),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("planned_at", UTCDateTime()),
    sa.Column("finished_at", UTCDateTime()),
    # Why an operator paused or cancelled it (`outreach runs pause RUN --why ...`), for the
    # status and the dashboard; cleared on resume.
    sa.Column("reason", sa.Text),
    # Its deliveries by state, kept once it is finished and none is active (store/overview.py):
    # `outreach status` and the dashboard then read one row instead of counting the run's
    # deliveries again. NULL while they can change; cleared when the run is reopened.
    sa.Column("counts", Json),
    # At most one run per occurrence of a step, however many beats race (see ledger.create_run).
    sa.UniqueConstraint("campaign", "step", "occurrence"),
    sa.CheckConstraint(_in("status", RunStatus), name="status"),
    sa.Index(None, "status"),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", BigId, primary_key=True),
    # No foreign keys on these two: PostgreSQL checks a foreign key with a trigger per row,
    # which made planning a million deliveries take twice as long (measured: 33 s -> 17 s
    # without them). Deliveries are only created by planning a run; a delivery whose
    # subscriber is gone is skipped at send time (subscribers.load_for_sending).
    sa.Column("run_id", BigId, nullable=False),
    sa.Column("subscriber_id", BigId),
    # Normalized email, or the X handle for a step's single tweet: the idempotency key.
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("account", sa.String(100)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    sa.Column("leased_until", UTCDateTime()),
    sa.Column("claimed_by", sa.String(200)),
    sa.Column("provider_id", sa.String(500)),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("progress", Json),  # e.g. ids of the tweets of a thread already posted
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("run_id", "recipient", "channel"),
    sa.CheckConstraint(_in("state", DeliveryState), name="state"),
    # The dispatcher's scans, per state and channel in due_at / leased_until order, so
    # "the oldest N due" reads N index entries however many millions are pending.
    sa.Index(None, "state", "channel", "due_at"),
    # only rows out with a worker have a lease worth scanning
    sa.Index(None, "state", "channel", "leased_until",
             postgresql_where=sa.text("state IN ('queued', 'sending')"),
             sqlite_where=sa.text("state IN ('queued', 'sending')")),
    sa.Index(None, "run_id", "state"),        # progress counts per run
    sa.Index(None, "subscriber_id"),
)

delivery_events = sa.Table(
    "delivery_events", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("delivery_id", BigId, sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("run_id", BigId, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.CheckConstraint(_in("kind", EventKind), name="kind"),
    sa.Index(None, "delivery_id"),
    sa.Index(None, "run_id", "kind"),
    sa.Index(None, "at"),
    # "the last errors": the newest failed/retried/unknown events without reading the millions
    # of `sent` ones around them
    sa.Index(None, "kind", "at"),
)

actions = sa.Table(
    "actions", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("subscriber_id", BigId, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("campaign", sa.String(200), nullable=False),
    # A name the campaign declares under `actions:` (e.g. sent_letter, posted).
    sa.Column("action", sa.String(64), nullable=False),
    # The office the supporter's letter went to, as resolved when they acted (for counts per target).
    sa.Column("target", sa.String(200)),
    sa.Column("at", UTCDateTime(), nullable=False),
    # An action is recorded once: a second click, a retried POST or two tabs change nothing.
    sa.UniqueConstraint("subscriber_id", "campaign", "action"),
    sa.Index(None, "campaign", "action"),
)

scheduler_state = sa.Table(
    "scheduler_state", metadata,
    # One row per cursor (e.g. "tick": occurrences up to `value` have runs).
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", UTCDateTime(), nullable=False),
)
