"""Alembic environment: runs on the connection `outreach.store.migrations.upgrade` passes in."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from outreach.store.db import make_engine
from outreach.store.migrations import ADVISORY_LOCK_ID
from outreach.store.schema import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        transactional_ddl=True,  # true on SQLite too: db.py lets SQLAlchemy own BEGIN/COMMIT
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two processes upgrading at once: the second waits here, then sees the new revision.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_ID})")
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic -x` style use with sqlalchemy.url set on the Config
    engine = make_engine(config.get_main_option("sqlalchemy.url", ""))
    with engine.connect() as conn:
        with conn.begin():
            _run(conn)
    engine.dispose()
