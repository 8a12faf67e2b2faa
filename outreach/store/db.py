"""Engines for the one SQL store: SQLite (embedded default) or PostgreSQL (production).

Every process builds its engine here so that SQLite always gets the same pragmas (WAL so
readers never block the writer, a busy timeout so concurrent writers wait instead of failing,
foreign keys on) and PostgreSQL always goes through psycopg 3.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL

from ..errors import ConfigurationError

# An engine (each call runs its own transaction) or a connection (the caller's transaction).
Bind = Engine | sa.Connection
# Rows and SELECTs over whole tables or mixed columns: SQLAlchemy types their columns as Any.
AnyRow = sa.Row[*tuple[Any, ...]]
AnySelect = sa.Select[*tuple[Any, ...]]
# An INSERT that can say ON CONFLICT: the two dialects' classes share that API, not a base.
UpsertInsert = postgresql.Insert | sqlite.Insert

SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BEGIN = "sqlite_begin"  # execution option: "IMMEDIATE" takes the write lock at BEGIN


def normalize_url(url: str | URL, root: Path | str | None = None) -> URL:
    """Parse a database URL, pick the psycopg 3 driver for PostgreSQL and anchor a relative
    SQLite path at `root` (the project directory), so `sqlite:///var/outreach.db` means the same
    file whatever directory a worker was started from."""
    try:
        parsed = make_url(str(url)) if not isinstance(url, URL) else url
    except sa.exc.ArgumentError:
        raise ConfigurationError(
            f"database_url {str(url)!r} is not a database URL; set OUTREACH_DATABASE_URL to e.g. "
            "sqlite:///var/outreach.db or postgresql://user@host/dbname") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = Path(root or ".").resolve() / path
            parsed = parsed.set(database=str(path))
        return parsed
    raise ConfigurationError(
        f"unsupported database {backend!r} in database_url; use sqlite:///PATH or postgresql://...")


def make_engine(url: str | URL, root: Path | str | None = None, **kwargs: Any) -> Engine:
    """Build an engine for `url`; see `normalize_url` for how the URL is read."""
    parsed = normalize_url(url, root)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)


def engine_for(settings: Any, **kwargs: Any) -> Engine:
    """The engine described by `settings.database_url`, relative paths under `settings.root`."""
    return make_engine(settings.database_url, settings.root, **kwargs)


def display_url(engine_or_url: Engine | str | URL) -> str:
    """The URL without its password, for messages."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(str(engine_or_url))
    return url.render_as_string(hide_password=True)


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    if sqlite3.sqlite_version_info < (3, 35):
        raise ConfigurationError(
            f"SQLite {sqlite3.sqlite_version} is too old: outreach needs 3.35+ (RETURNING); "
            "upgrade Python/SQLite or use PostgreSQL")
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # `?timeout=SECONDS` in the URL (the sqlite3 module's own parameter) sets how long a
    # writer waits for another one's lock before "database is locked"
    try:
        busy_ms = round(float(url.query.get("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)) * 1000)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigurationError(f"database_url: timeout={url.query['timeout']!r} is not a number of seconds; "
                                 "write e.g. ?timeout=30") from None
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin: the module's
        # own implicit BEGIN breaks SAVEPOINT and transactional DDL (migrations).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; durable at checkpoints
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def immediate(conn: sa.Connection) -> sa.Connection:
    """Options for a connection whose transaction must hold SQLite's write lock from BEGIN
    (read-then-write sequences; a deferred BEGIN would fail with SQLITE_BUSY instead of
    waiting). No effect on PostgreSQL."""
    return conn.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})


def dialect_insert(bind: Bind, table: sa.Table) -> UpsertInsert:
    """INSERT with ON CONFLICT support (`on_conflict_do_nothing/do_update`) for the bind's
    database; both dialects spell it the same way in SQLAlchemy."""
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    if bind.dialect.name == "sqlite":
        return sqlite.insert(table)
    # normalize_url refuses other databases
    raise ConfigurationError(f"unsupported database {bind.dialect.name!r}")  # pragma: no cover
