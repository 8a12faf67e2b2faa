"""Initial schema: subscribers, tags, suppressions, runs, deliveries, delivery events.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Time = sa.DateTime(timezone=True)


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("city", sa.String(200)),
        sa.Column("country", sa.String(2)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("language", sa.String(35)),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("consent_source", sa.String(200)),
        sa.Column("consent_at", Time),
        sa.Column("attrs", Json, nullable=False, server_default="{}"),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.CheckConstraint(_in("status", "pending", "confirmed", "unsubscribed", "bounced"),
                           name="ck_subscribers_status"),
    )
    op.create_index("ix_subscribers_status_country", "subscribers", ["status", "country"])
    op.create_index("ix_subscribers_timezone", "subscribers", ["timezone"])
    op.create_index("uq_subscribers_lower_email", "subscribers", [sa.text("lower(email)")], unique=True)

    op.create_table(
        "subscriber_tags",
        sa.Column("subscriber_id", BigId, nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "tag", name="pk_subscriber_tags"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name="fk_subscriber_tags_subscriber_id_subscribers"),
    )
    op.create_index("ix_subscriber_tags_tag_subscriber_id", "subscriber_tags", ["tag", "subscriber_id"])

    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200)),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_suppressions"),
    )

    op.create_table(
        "runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("occurrence", Time, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("planned_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("note", sa.Text),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("planned_at", Time),
        sa.Column("finished_at", Time),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("campaign", "step", "occurrence", name="uq_runs_campaign_step_occurrence"),
        sa.CheckConstraint(_in("status", "planning", "planned", "done", "skipped", "cancelled"),
                           name="ck_runs_status"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])

    op.create_table(
        "deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("run_id", BigId, nullable=False),
        sa.Column("subscriber_id", BigId),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("account", sa.String(100)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("due_at", Time, nullable=False),
        sa.Column("leased_until", Time),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("provider_id", sa.String(500)),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", Time),
        sa.Column("progress", Json),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("run_id", "recipient", "channel", name="uq_deliveries_run_id_recipient_channel"),
        sa.CheckConstraint(_in("state", "pending", "queued", "sending", "sent", "retry", "failed",
                               "skipped", "unknown"), name="ck_deliveries_state"),
    )
    op.create_index("ix_deliveries_state_due_at", "deliveries", ["state", "due_at"])
    op.create_index("ix_deliveries_state_leased_until", "deliveries", ["state", "leased_until"])
    op.create_index("ix_deliveries_run_id_state", "deliveries", ["run_id", "state"])
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"])

    op.create_table(
        "delivery_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("delivery_id", BigId, nullable=False),
        sa.Column("run_id", BigId, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_events"),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE",
                                name="fk_delivery_events_delivery_id_deliveries"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_delivery_events_run_id_runs"),
        sa.CheckConstraint(_in("kind", "queued", "sent", "retried", "failed", "bounced", "unsubscribed",
                               "clicked", "unknown", "skipped", "progress", "requeued"),
                           name="ck_delivery_events_kind"),
    )
    op.create_index("ix_delivery_events_delivery_id", "delivery_events", ["delivery_id"])
    op.create_index("ix_delivery_events_run_id_kind", "delivery_events", ["run_id", "kind"])
    op.create_index("ix_delivery_events_at", "delivery_events", ["at"])


def downgrade() -> None:
    for table in ("delivery_events", "deliveries", "runs", "suppressions", "subscriber_tags", "subscribers"):
        op.drop_table(table)
