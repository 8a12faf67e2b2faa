from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from outreach.errors import ConfigurationError
from outreach.models import (
    CSV_COLUMNS,
    TEMPLATE_FIELDS,
    DeliveryState,
    RunStatus,
    Subscriber,
    SubscriberStatus,
)
from outreach.store import (
    current_revision,
    head_revision,
    make_engine,
    metadata,
    normalize_url,
    require_current,
    upgrade,
)
from outreach.store.ledger import create_run, get_run
from outreach.store.schema import deliveries, runs, subscribers


def test_relative_sqlite_path_is_under_root_and_its_directory_is_created(tmp_path):
    # given a relative SQLite URL and a project root whose var/ does not exist yet
    url = "sqlite:///var/outreach.db"
    # when an engine is built and used
    engine = make_engine(url, root=tmp_path)
    with engine.connect() as conn:
        conn.exec_driver_sql("select 1")
    # then the file lives under the root, not the working directory
    assert normalize_url(url, tmp_path).database == str(tmp_path / "var" / "outreach.db")
    assert (tmp_path / "var" / "outreach.db").exists()
    engine.dispose()


def test_plain_postgresql_urls_use_psycopg3():
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"


def test_unsupported_url_names_the_setting():
    with pytest.raises(ConfigurationError, match="database_url"):
        normalize_url("mysql://x@y/z")


def test_sqlite_pragmas(tmp_path):
    # given a fresh SQLite engine
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    # when connecting, then WAL, foreign keys and a busy timeout are on
    with engine.connect() as conn:
        assert conn.exec_driver_sql("pragma journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("pragma busy_timeout").scalar() >= 10_000
    engine.dispose()


@pytest.mark.filterwarnings("ignore:.*expression-based index")  # SQLite cannot reflect lower(email)
def test_migrations_apply_on_empty_database_and_are_idempotent(db_url):
    # given an empty database
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    with pytest.raises(ConfigurationError, match="outreach db upgrade"):
        require_current(engine)
    # when upgrading twice
    first = upgrade(engine)
    second = upgrade(engine)
    # then both end at the head and the schema is exactly the metadata
    assert first == second == head_revision()
    require_current(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    engine.dispose()


def _upgrade_in_child(url: str) -> None:
    upgrade(url)


def test_concurrent_upgrades_from_two_processes_both_succeed(db_url):
    # given two processes starting at once on an empty database
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_upgrade_in_child, args=(db_url,)) for _ in range(2)]
    # when both upgrade
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    # then neither failed (one waited for the other's lock) and the schema is at the head
    assert [p.exitcode for p in procs] == [0, 0]
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()

def test_timestamps_are_aware_utc_and_naive_ones_are_refused(engine):
    # given an occurrence in another zone
    occurrence = datetime(2026, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    # when stored and read back
    run_id = create_run(engine, "c", "s", occurrence)
    row = get_run(engine, run_id)
    # then it is the same instant, in UTC
    assert row.occurrence == occurrence and row.occurrence.tzinfo == UTC
    assert row.created_at.tzinfo == UTC
    # and a naive datetime is an error, not a guess
    with pytest.raises(sa.exc.StatementError, match="naive"):
        with engine.begin() as conn:
            conn.execute(sa.select(runs.c.id).where(runs.c.occurrence == datetime(2026, 5, 1)))


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_upgrading_a_filled_database_keeps_every_row_and_takes_the_new_states(db_url):
    # given a database at revision 0003 holding a subscriber, a run, a delivery and its event
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO subscribers (email, status, attrs, created_at, updated_at) "
                             "VALUES ('a@example.org', 'confirmed', '{}', '2026-01-01', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO runs (id, campaign, step, occurrence, status, planned_count, created_at) "
                             "VALUES (1, 'c', 's', '2026-01-01', 'planned', 1, '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO deliveries (id, run_id, recipient, channel, state, attempts, due_at, "
                             "created_at, updated_at) VALUES (1, 1, 'a@example.org', 'email', 'sent', 1, "
                             "'2026-01-01', '2026-01-01', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO delivery_events (delivery_id, run_id, kind, at) "
                             "VALUES (1, 1, 'sent', '2026-01-01')")
    # when upgraded to the head (SQLite rebuilds the tables to change their CHECKs)
    upgrade(engine)
    # then no row was lost (dropping the old deliveries table must not cascade to the events),
    # foreign keys are enforced again, and the states of models.py are accepted
    with engine.begin() as conn:
        counts = [conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                  for t in ("subscribers", "runs", "deliveries", "delivery_events")]
        assert counts == [1, 1, 1, 1]
        conn.execute(sa.update(subscribers).values(status=SubscriberStatus.COMPLAINED, region="TX"))
        conn.execute(sa.update(runs).values(status=RunStatus.PAUSED))
        conn.execute(sa.update(deliveries).values(state=DeliveryState.CANCELLED))
        conn.execute(sa.update(deliveries).values(state=DeliveryState.PAUSED))
        conn.execute(sa.update(runs).values(reason="an operator paused it", counts={"sent": 1}))
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # and a state it does not know is still refused
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.update(runs).values(status="exploded"))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
    engine.dispose()


def test_the_model_and_the_table_agree_on_a_subscriber():
    # given the Subscriber model and the subscribers table
    columns = {c.name for c in subscribers.c}
    # then every field of the model is a column, and every CSV column is a field
    assert {f.name for f in dataclasses.fields(Subscriber)} - {"tags"} <= columns
    assert set(CSV_COLUMNS) <= {f.name for f in dataclasses.fields(Subscriber)}
    # and templates see personal data, never the bookkeeping
    assert {"email", "first_name", "region", "country_name"} <= TEMPLATE_FIELDS
    assert not {"status", "consent_at", "consent_source", "id"} & TEMPLATE_FIELDS
