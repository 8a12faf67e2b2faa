"""Dispatcher indexes per channel: (state, channel, due_at) and (state, channel, leased_until).

`due_deliveries` asks, per state and channel, for the oldest N rows; with the channel in the
index that reads N index entries even when a million rows of another channel are pending.
They replace the (state, due_at) and (state, leased_until) indexes of 0001.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_state_channel_due_at", "deliveries", ["state", "channel", "due_at"])
    lease_scan = sa.text("state IN ('queued', 'sending')")  # only rows out with a worker
    op.create_index("ix_deliveries_state_channel_leased_until", "deliveries",
                    ["state", "channel", "leased_until"], postgresql_where=lease_scan, sqlite_where=lease_scan)
    op.drop_index("ix_deliveries_state_due_at", table_name="deliveries")
    op.drop_index("ix_deliveries_state_leased_until", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_state_due_at", "deliveries", ["state", "due_at"])
    op.create_index("ix_deliveries_state_leased_until", "deliveries", ["state", "leased_until"])
    op.drop_index("ix_deliveries_state_channel_due_at", table_name="deliveries")
    op.drop_index("ix_deliveries_state_channel_leased_until", table_name="deliveries")
