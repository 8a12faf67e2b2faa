"""The states of models.py: subscribers may be `complained`, runs `paused`, deliveries
`cancelled`, events `complained`/`cancelled`; subscribers get a `region` (state or province).

The value lists are written out here, not imported from models.py: a migration describes
one step of the schema's history and must not change when the code does.

SQLite cannot alter a CHECK constraint, so there the tables are rebuilt (Alembic's batch
mode copies the rows); indexes that reflection cannot see (the expression index on
lower(email), the partial lease index) are created again afterwards.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NEW = {
    ("subscribers", "status"): ("pending", "confirmed", "unsubscribed", "bounced", "complained"),
    ("runs", "status"): ("planning", "planned", "paused", "done", "skipped", "cancelled"),
    ("deliveries", "state"): ("pending", "queued", "sending", "sent", "retry", "failed", "skipped",
                              "unknown", "cancelled"),
    ("delivery_events", "kind"): ("queued", "sent", "retried", "failed", "bounced", "complained",
                                  "unsubscribed", "clicked", "unknown", "skipped", "cancelled", "progress",
                                  "requeued"),
}
OLD = {
    ("subscribers", "status"): ("pending", "confirmed", "unsubscribed", "bounced"),
    ("runs", "status"): ("planning", "planned", "done", "skipped", "cancelled"),
    ("deliveries", "state"): ("pending", "queued", "sending", "sent", "retry", "failed", "skipped", "unknown"),
    ("delivery_events", "kind"): ("queued", "sent", "retried", "failed", "bounced", "unsubscribed", "clicked",
                                  "unknown", "skipped", "progress", "requeued"),
}
LEASE_SCAN = "state IN ('queued', 'sending')"


def _check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _set_checks(lists: dict[tuple[str, str], tuple[str, ...]]) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for (table, column), values in lists.items():
        name = f"ck_{table}_{column}"
        if sqlite:
            with warnings.catch_warnings(), op.batch_alter_table(table, recreate="always") as batch:
                # reflection cannot see the lower(email) index: it is created again below
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
                batch.drop_constraint(name, type_="check")
                batch.create_check_constraint(op.f(name), _check(column, values))
        else:
            op.drop_constraint(name, table, type_="check")
            op.create_check_constraint(op.f(name), table, _check(column, values))
    if sqlite:
        op.execute("CREATE UNIQUE INDEX IF NOT EXISTS uq_subscribers_lower_email ON subscribers (lower(email))")
        op.execute("DROP INDEX IF EXISTS ix_deliveries_state_channel_leased_until")
        op.execute("CREATE INDEX ix_deliveries_state_channel_leased_until ON deliveries "
                   f"(state, channel, leased_until) WHERE {LEASE_SCAN}")


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("region", sa.String(100)))
    _set_checks(NEW)


def downgrade() -> None:
    _set_checks(OLD)
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("region")
