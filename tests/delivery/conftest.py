"""A whole project wired to real services on loopback: SQLite or PostgreSQL, Redis (DB 14,
keys under a per-test prefix), an aiosmtpd server that can be told to refuse, and an HTTP
server answering like the X API."""
from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.settings import load_settings
from outreach.store import add_subscriber
from tests.channels.conftest import smtp_server, x_api  # noqa: F401  (fixtures)
from tests.conftest import delete_keys

REDIS_TEST_URL = "redis://127.0.0.1:6379/14"

CAMPAIGN = """\
name: alert
title: Urgent alert
audience:
  filter:
    tags: [advocacy]
steps:
  - id: mail
    channel: email
    template: alert
    schedule:
      at: 2030-01-15 09:00
      timezone: Europe/Paris
  - id: post
    channel: x
    template: alert
    schedule:
      after: mail
      delay: 5m
"""


class Project:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def settings(self):
        return load_settings(self.root, environ=self.env)


@pytest.fixture
def project(tmp_path: Path, db_url: str, smtp_server, x_api) -> Project:  # noqa: F811
    sink, controller = smtp_server
    env = {"OUTREACH_SECRET_KEY": "test-secret", "OUTREACH_DATABASE_URL": db_url,
           "OUTREACH_REDIS_URL": REDIS_TEST_URL,
           **{f"OUTREACH_X_ORG_{k}": "x" for k in ("CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN",
                                                  "ACCESS_TOKEN_SECRET")}}
    p = Project(tmp_path, env)
    p.write("config/outreach.yaml", f"""\
        organization: {{name: Test Org, postal_address: "1 Test St"}}
        base_url: https://outreach.test
        email:
          accounts:
            news:
              from: "Test Org <news@example.org>"
              host: 127.0.0.1
              port: {controller.port}
              timeout: 5
              limits: ["1000/1s"]
        x:
          accounts:
            org: {{handle: testorg, api_base: "{x_api.base}"}}
        dispatch: {{batch_size: 10, lease: 30s, backoff_base: 1s, max_attempts: 3}}
        """)
    p.write("config/campaigns/alert.yaml", CAMPAIGN)
    p.write("templates/email/alert/subject.txt", "Act now, {{ subscriber.first_name or 'friend' }}")
    p.write("templates/email/alert/body.html", "<p>Dear {{ subscriber.name or 'friend' }},</p>"
            '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>')
    p.write("templates/x/alert.txt", "{{ campaign.title }}: part one\n---\n{{ campaign.title }}: part two")
    return p


@pytest.fixture
def redis_client() -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(REDIS_TEST_URL)
    yield client
    client.close()


@pytest.fixture
def runtime(project: Project, engine, redis_client) -> Iterator[Runtime]:
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    # each test gets limiter keys of its own, and deletes them afterwards (never a FLUSHDB)
    prefix = f"outreach-test:{secrets.token_hex(4)}"
    rt.__dict__["limiter"] = RateLimiter(redis_client, key_prefix=prefix)
    yield rt
    delete_keys(redis_client, prefix)
    from outreach.channels import close_shared
    close_shared()


def add_people(engine, n: int, tags=("advocacy",), **fields) -> list[str]:
    emails = []
    for i in range(n):
        email = f"person{i}@example.org"
        add_subscriber(engine, email, name=f"Person {i}", tags=tags, status="confirmed", **fields)
        emails.append(email)
    return emails
