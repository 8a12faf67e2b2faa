"""Operators control runs: a run keeps why it was paused or cancelled (`runs.reason`) and,
once finished, its deliveries by state (`runs.counts`, so status pages do not count them
again on every look), its
deliveries may be held `paused` until it is resumed, and the newest error events are found
by kind and time without reading the `sent` ones around them.

Values are written out, not imported from models.py (see 0004). SQLite cannot alter a CHECK
constraint, so there `deliveries` is rebuilt (Alembic's batch mode copies the rows) and the
partial lease index, which reflection cannot see, is created again.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = ("pending", "queued", "sending", "sent", "retry", "failed", "skipped", "unknown", "cancelled")
NEW_STATES = (*STATES, "paused")
LEASE_SCAN = "state IN ('queued', 'sending')"
CHECK = "ck_deliveries_state"


def _check(values: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(v) for v in values)})"


def _set_states(values: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("deliveries", recreate="always") as batch:
            batch.drop_constraint(op.f(CHECK), type_="check")
            batch.create_check_constraint(op.f(CHECK), _check(values))
        op.execute("DROP INDEX IF EXISTS ix_deliveries_state_channel_leased_until")
        op.execute("CREATE INDEX ix_deliveries_state_channel_leased_until ON deliveries "
                   f"(state, channel, leased_until) WHERE {LEASE_SCAN}")
    else:
        op.drop_constraint(op.f(CHECK), "deliveries", type_="check")
        op.create_check_constraint(op.f(CHECK), "deliveries", _check(values))


def upgrade() -> None:
    op.add_column("runs", sa.Column("reason", sa.Text))
    json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    op.add_column("runs", sa.Column("counts", json))
    _set_states(NEW_STATES)
    op.create_index("ix_delivery_events_kind_at", "delivery_events", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_events_kind_at", "delivery_events")
    # held deliveries go back to what they were before the pause: due as planned
    op.execute("UPDATE deliveries SET state = CASE WHEN attempts > 0 THEN 'retry' ELSE 'pending' END "
               "WHERE state = 'paused'")
    _set_states(STATES)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("counts")
        batch.drop_column("reason")
