"""Schema migrations (Alembic), run from code: no alembic.ini on disk is needed.

`upgrade()` is idempotent and safe when several processes start at once: the whole upgrade
runs in one transaction that first takes a lock (a PostgreSQL advisory lock, SQLite's write
lock), so the second process waits and then finds nothing to do.
"""
from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ...errors import ServiceUnavailable
from ..db import display_url, immediate, make_engine

HERE = Path(__file__).resolve().parent
ADVISORY_LOCK_ID = 0x6F75747265616368  # "outreach"
_LOCAL = threading.Lock()  # Alembic loads env.py as a module: not thread-safe within a process


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def _engine(engine_or_url: Engine | str, root: Path | str | None) -> tuple[Engine, bool]:
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return make_engine(engine_or_url, root), True


def _sqlite_pragma(conn: sa.Connection, pragma: str) -> None:
    """Run a PRAGMA on the sqlite3 connection itself, outside SQLAlchemy (which would begin a
    transaction first, and `foreign_keys` cannot change inside one)."""
    driver_conn = conn.connection.driver_connection
    assert driver_conn is not None  # None only once the connection is invalidated
    driver_conn.execute(f"PRAGMA {pragma}")


def upgrade(engine_or_url: Engine | str, revision: str = "head", root: Path | str | None = None) -> str | None:
    """Bring the database to `revision` (default: latest); return the revision it is now at."""
    engine, owned = _engine(engine_or_url, root)
    try:
        cfg = _config()
        with _LOCAL, engine.connect() as conn:
            immediate(conn)
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # SQLite rebuilds a table to change it, and dropping the old copy with foreign
                # keys on would cascade-delete the rows that refer to it (every delivery
                # event). Its documented procedure: keys off outside the transaction, a
                # foreign_key_check before commit (env.py), keys on again.
                _sqlite_pragma(conn, "foreign_keys = OFF")
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, revision)
            finally:
                if sqlite:
                    _sqlite_pragma(conn, "foreign_keys = ON")
        return current_revision(engine)
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_current(engine: Engine) -> None:
    """Raise ServiceUnavailable, saying what to run or set, when the database cannot be
    reached or its schema is not the latest."""
    try:
        current = current_revision(engine)
    except sa.exc.DBAPIError as exc:
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise ServiceUnavailable(f"cannot open the database {display_url(engine)}: {reason} (check "
                                 "OUTREACH_DATABASE_URL and that the server is running)") from None
    head = head_revision()
    if current != head:
        state = "has no outreach tables" if current is None else f"is at revision {current}, not {head}"
        raise ServiceUnavailable(f"the database {display_url(engine)} {state}: run `outreach db upgrade`")
