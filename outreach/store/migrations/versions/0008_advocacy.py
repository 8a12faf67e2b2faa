"""Advocacy: where a subscriber is (latitude, longitude: the region column exists since 0001)
and the actions supporters record ("I sent it", "I posted it") from their signed links.

Adding nullable columns without a default needs no table rebuild on SQLite.

Revision ID: 0008
Revises: 0006 (0005 before issue-14a's 0006 was merged in)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("latitude", sa.Float()))
    op.add_column("subscribers", sa.Column("longitude", sa.Float()))
    op.create_table(
        "actions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("subscriber_id", BigId, sa.ForeignKey("subscribers.id", ondelete="CASCADE",
                                                        name="fk_actions_subscriber_id_subscribers"),
                  nullable=False),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
        sa.UniqueConstraint("subscriber_id", "campaign", "action",
                            name="uq_actions_subscriber_id_campaign_action"),
    )
    op.create_index("ix_actions_campaign_action", "actions", ["campaign", "action"])


def downgrade() -> None:
    op.drop_index("ix_actions_campaign_action", "actions")
    op.drop_table("actions")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("longitude")
        batch.drop_column("latitude")
