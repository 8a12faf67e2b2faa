"""Shared fixtures: real SQLite and real PostgreSQL databases, no mocks.

`db_url` runs a test once on a fresh SQLite file and once on a fresh PostgreSQL schema (inside
one temporary database created for the test session and dropped at its end). Without a
PostgreSQL server the PostgreSQL variants are skipped locally, and fail when `CI` is set.
Point OUTREACH_TEST_PG_URL at another server (default: postgres@127.0.0.1:5432/test).
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("OUTREACH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_connect(url: str, **kwargs):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=3, **kwargs)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[sa.URL]:
    """URL of a PostgreSQL database created for this test session (dropped afterwards)."""
    import psycopg

    try:
        admin = _pg_connect(PG_ADMIN_URL)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).strip()}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must provide PostgreSQL)")
        pytest.skip(message)
    name = f"outreach_test_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name)
    finally:
        with _pg_connect(PG_ADMIN_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database URL: a new SQLite file, or a new schema in the session's PostgreSQL
    database (the URL sets search_path to it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outreach.db'}"
        return
    base: sa.URL = request.getfixturevalue("pg_database")
    schema = f"t_{secrets.token_hex(6)}"
    with _pg_connect(base.render_as_string(hide_password=False)) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with _pg_connect(base.render_as_string(hide_password=False)) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on `db_url` with the migrations applied."""
    from outreach.store import make_engine, upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def delete_keys(client, prefix: str) -> None:
    """Delete the Redis keys a test made under its own `prefix` (never a FLUSHDB: other test
    runs and the machine's own users share the server)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
