"""Bounces and complaints: the `feedback` table (what bounce reports, feedback loops and
provider webhooks said, one row per event and address, unique by the event's key), and an
index on deliveries.provider_id, by which a provider's report names the message.

The value list is written out here, not imported from models.py: a migration describes one
step of the schema's history and must not change when the code does.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KINDS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("delivery_id", BigId),
        sa.Column("run_id", BigId),
        sa.Column("account", sa.String(100)),
        sa.Column("code", sa.String(32)),
        sa.Column("text", sa.Text),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("key", name="uq_feedback_key"),
        sa.CheckConstraint("kind IN ({})".format(", ".join(repr(k) for k in KINDS)), name="ck_feedback_kind"),
    )
    op.create_index("ix_feedback_address_kind_at", "feedback", ["address", "kind", "at"])
    op.create_index("ix_feedback_run_id_kind", "feedback", ["run_id", "kind"])
    op.create_index("ix_feedback_account_kind_at", "feedback", ["account", "kind", "at"])
    op.create_index("ix_deliveries_provider_id", "deliveries", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_provider_id", "deliveries")
    op.drop_table("feedback")
