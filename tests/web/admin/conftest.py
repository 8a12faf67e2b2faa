"""What the dashboard's tests share: an app with admin credentials in its environment, a
client that does not follow redirects, signing in, and runs made straight in the ledger."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from outreach.passwords import hash_password
from outreach.store import add_delivery, add_subscriber, create_run, mark_run_planned
from outreach.store.schema import deliveries
from outreach.web import create_app

from ..conftest import BASE, csrf_of, write_project

PASSWORD = "correct horse battery staple"
TOKEN = "t" * 20 + "0123456789abcdefghijkl"
HASH = hash_password(PASSWORD)
ADMIN_ENV = {"OUTREACH_ADMIN_USER": "ops", "OUTREACH_ADMIN_PASSWORD_HASH": HASH, "OUTREACH_ADMIN_TOKEN": TOKEN,
             "OUTREACH_METRICS_TOKEN": "m" * 40}


def admin_settings(tmp_path, db_url, smtp_port: int = 2525, **env):
    """Settings of a test project with the admin credentials (a variable given as None: unset)."""
    base = {"OUTREACH_SECRET_KEY": "admin-test-secret", "OUTREACH_DATABASE_URL": db_url,
            "OUTREACH_REDIS_URL": "redis://127.0.0.1:6379/14", **ADMIN_ENV}
    base.update(env)
    return write_project(tmp_path, {k: v for k, v in base.items() if v is not None}, smtp_port=smtp_port).settings()


@pytest.fixture
def admin_app(tmp_path, db_url, engine, redis_prefix):
    app = create_app(admin_settings(tmp_path, db_url), engine=engine, limiter_prefix=redis_prefix)
    yield app
    app.state.site.runtime.redis.close()


@pytest.fixture
def browser_client(admin_app):
    with TestClient(admin_app, base_url=BASE, follow_redirects=False) as c:
        yield c


def sign_in(client: TestClient, user: str = "ops", password: str = PASSWORD, token: str = "", **extra):
    page = client.get("/admin/login", headers={"accept": "text/html"})
    return client.post("/admin/login", data={"csrf": csrf_of(page.text), "user": user, "password": password,
                                             "token": token, **extra},
                       headers={"origin": BASE})


def admin_paths(app) -> list[tuple[str, str]]:
    """Every (method, path) under /admin but signing in and out, with sample ids."""
    found = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/admin") or path in ("/admin/login", "/admin/logout"):  # open to all
            continue
        for method in sorted(getattr(route, "methods", None) or ["GET"]):
            if method != "HEAD":
                found.append((method, re.sub(r"\{[^}]+\}", "1", path)))
    return found




def make_run(engine, n: int, campaign: str = "news", step: str = "letter",
             occurrence: datetime = datetime(2030, 1, 15, 8, tzinfo=UTC),
             due: datetime | None = None, people: bool = False) -> tuple[int, list[int]]:
    """A planned run of `n` email deliveries, due at `due` (now when not given); to
    subscribers r0@, r1@, ... made for it when `people` (a worker can then send them)."""
    run_id = create_run(engine, campaign, step, occurrence)
    due = due or datetime.now(UTC)
    for i in range(n):
        who = add_subscriber(engine, f"r{i}@example.org", name=f"R {i}", tags=["supporter"],
                             status="confirmed") if people else None
        add_delivery(engine, run_id, f"r{i}@example.org", "email", "news", due, subscriber_id=who)
    mark_run_planned(engine, run_id)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == run_id)
                                .order_by(deliveries.c.id)).scalars())
    return run_id, ids


@pytest.fixture
def metrics_key(monkeypatch):
    """The send path's counters under a key of this test's own (other test runs share Redis)."""
    import secrets

    import redis as redis_lib

    from outreach import telemetry

    key = f"outreach-test:metrics:{secrets.token_hex(4)}"
    monkeypatch.setattr(telemetry, "KEY", key)
    telemetry.TALLY.take()  # nothing counted by an earlier test in this process
    yield key
    client = redis_lib.Redis.from_url("redis://127.0.0.1:6379/14")
    client.delete(key)
    client.close()


@pytest.fixture
def operator(browser_client):
    """A client signed in with the password."""
    assert sign_in(browser_client).status_code == 303
    return browser_client


DAILY = """\
name: daily
title: Daily digest
audience:
  filter:
    tags: [supporter]
steps:
  - id: digest
    channel: email
    template: news
    schedule:
      cron: "0 9 * * *"
      timezone: Asia/Seoul
"""
