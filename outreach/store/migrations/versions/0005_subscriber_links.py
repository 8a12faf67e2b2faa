"""The subscriber's side: a random `link_id` per subscriber (what links carry instead of the
address) and `paused_until` (set on the preferences page).

Every existing row gets its own random value. SQLite cannot add a column whose default is
not a constant, so there the table is rebuilt with the new column (the copy fills it from
the default, row by row), like 0004 does for CHECKs; PostgreSQL evaluates a volatile default
once per existing row when the column is added.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Written out, not imported from schema.py: this step of the history must not change.
RANDOM = {"sqlite": "(lower(hex(randomblob(16))))",
          "postgresql": "replace(CAST(gen_random_uuid() AS TEXT), '-', '')"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    link_id = sa.Column("link_id", sa.String(32), nullable=False, server_default=sa.text(RANDOM[dialect]))
    paused = sa.Column("paused_until", sa.DateTime(timezone=True))
    if dialect == "sqlite":
        with warnings.catch_warnings(), op.batch_alter_table("subscribers", recreate="always") as batch:
            # reflection cannot see the lower(email) index: it is created again below
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
            batch.add_column(link_id)
            batch.add_column(paused)
        op.execute("CREATE UNIQUE INDEX IF NOT EXISTS uq_subscribers_lower_email ON subscribers (lower(email))")
    else:
        op.add_column("subscribers", link_id)
        op.add_column("subscribers", paused)
    op.create_index("ix_subscribers_link_id", "subscribers", ["link_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_subscribers_link_id", "subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("link_id")
