"""The store's side of the subscriber pages: link ids, pauses, who a step may reach."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from outreach.models import SubscriberStatus
from outreach.store import add_subscriber, get_subscriber, load_for_sending, make_engine, upgrade, utcnow
from outreach.store.audience import audience_count, audience_select
from outreach.store.schema import subscribers


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_the_migration_gives_every_existing_row_its_own_random_link_id(db_url):
    # given subscribers stored before revision 0005
    engine = make_engine(db_url)
    upgrade(engine, "0004")
    with engine.begin() as conn:
        for i in range(50):
            conn.exec_driver_sql("INSERT INTO subscribers (email, status, attrs, created_at, updated_at) "
                                 f"VALUES ('p{i}@example.org', 'confirmed', '{{}}', '2026-01-01', '2026-01-01')")
    # when migrated, and when a row is inserted afterwards by plain SQL
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO subscribers (email, status, attrs, created_at, updated_at) "
                             "VALUES ('new@example.org', 'confirmed', '{}', '2026-01-01', '2026-01-01')")
        ids = list(conn.execute(sa.select(subscribers.c.link_id)).scalars())
    # then every row has a distinct 128-bit value in hex, made by the database
    assert len(ids) == 51 == len(set(ids))
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # and two rows can never share one
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.update(subscribers).values(link_id=ids[0]))
    engine.dispose()


def test_paused_subscribers_are_in_no_audience_and_skipped_at_send_time(engine):
    sid = add_subscriber(engine, "ana@example.org")
    assert audience_count(engine, audience_select(None, {})) == 1
    with engine.begin() as conn:
        conn.execute(sa.update(subscribers).values(paused_until=utcnow() + timedelta(days=3)))
    assert audience_count(engine, audience_select(None, {})) == 0
    loaded = load_for_sending(engine, [sid])[sid]
    assert loaded.excluded is not None and loaded.excluded.startswith("paused until")
    assert loaded.subscriber.link_id == get_subscriber(engine, "ana@example.org").link_id
    # once the date passes they are back
    with engine.begin() as conn:
        conn.execute(sa.update(subscribers).values(paused_until=utcnow() - timedelta(seconds=1)))
    assert audience_count(engine, audience_select(None, {})) == 1
    assert load_for_sending(engine, [sid])[sid].excluded is None


def test_a_step_reaches_only_the_statuses_it_names(engine):
    pending = add_subscriber(engine, "new@example.org", status="pending")
    confirmed = add_subscriber(engine, "old@example.org")
    campaign = load_for_sending(engine, [pending, confirmed])
    assert campaign[pending].excluded == "subscriber is pending" and campaign[confirmed].excluded is None
    confirm = load_for_sending(engine, [pending, confirmed], statuses={SubscriberStatus.PENDING})
    assert confirm[pending].excluded is None and confirm[confirmed].excluded == "subscriber is confirmed"
