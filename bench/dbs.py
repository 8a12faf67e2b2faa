"""Throw-away ledgers: a SQLite file under the bench's work directory, or a PostgreSQL
database `outreach_bench_<random>_<label>` on the server at 127.0.0.1:5432 (trust auth),
dropped at the end. Redis: the broker's own DB, where only the queue keys are cleared."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from outreach.store import make_engine, upgrade

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RUN_TOKEN = secrets.token_hex(4)
QUEUE_KEYS = ("email", "social", "control")
QUEUE_PATTERNS = ("unacked*", "_kombu.binding.*")


def _pg_admin(admin_url: str):
    import psycopg

    return psycopg.connect(admin_url, autocommit=True)


@contextmanager
def ledger(kind: str, label: str, workdir: Path, pg_admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A fresh, migrated ledger; yields its URL and removes it afterwards."""
    if kind == "sqlite":
        path = workdir / f"{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        _migrate(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"outreach_bench_{RUN_TOKEN}_{label}".lower().replace("-", "_")
    admin = sa.engine.make_url(pg_admin_url)
    with _pg_admin(pg_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        _migrate(url)
        yield url
    finally:
        with _pg_admin(pg_admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def pg_server_version(pg_admin_url: str = PG_ADMIN_URL) -> str:
    try:
        with _pg_admin(pg_admin_url) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:
        return f"unavailable ({exc.__class__.__name__})"


def clear_queues(redis_url: str) -> int:
    """Delete the broker's queue keys (and only those) in the benchmark's Redis DB."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = [k for k in QUEUE_KEYS if client.exists(k)]
    for pattern in QUEUE_PATTERNS:
        keys += [k.decode() for k in client.scan_iter(match=pattern, count=1000)]
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)
