"""The web app on real services: SQLite or PostgreSQL (db_url), Redis DB 14 with a key
prefix per test (deleted afterwards, never a FLUSHDB), the project's own templates, and
Starlette's TestClient speaking to the app in-process as https://outreach.test (base_url)."""
from __future__ import annotations

import re
import secrets
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from starlette.testclient import TestClient

from outreach.content.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, VIEW
from outreach.settings import load_settings
from outreach.store import add_subscriber, get_subscriber
from outreach.web import create_app
from tests.conftest import delete_keys

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST_URL = "redis://127.0.0.1:6379/14"
BASE = "https://outreach.test"

CAMPAIGN = """\
name: news
title: Spring newsletter
audience:
  filter:
    tags: [supporter]
steps:
  - id: letter
    channel: email
    template: news
    schedule:
      at: 2030-01-15 09:00
      timezone: Europe/Paris
"""
# the campaign, and a follow-up two days after its letter
TWO_STEPS = CAMPAIGN + """\
  - id: followup
    channel: email
    template: news
    schedule:
      after: letter
      delay: 2d
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


def write_project(root: Path, env: dict[str, str], smtp_port: int = 2525, base_url: str = BASE) -> Project:
    p = Project(root, env)
    p.write("config/outreach.yaml", f"""\
        organization: {{name: Test Org, postal_address: "1 Test St"}}
        base_url: {base_url}
        email:
          accounts:
            news:
              from: "Test Org <news@example.org>"
              host: 127.0.0.1
              port: {smtp_port}
              timeout: 5
              limits: ["1000/1s"]
              unsubscribe_mailto: unsubscribe@example.org
        topics:
          supporter: {{en: General news, ko: 일반 소식}}
          events: Events near you
        web:
          embed_origins: ["https://www.example.org"]
          signup_limits_per_address: ["3/1h"]
          signup_limits_per_client: ["5/1h"]
        dispatch: {{batch_size: 10, lease: 30s, backoff_base: 1s, max_attempts: 3}}
        """)
    p.write("config/campaigns/news.yaml", CAMPAIGN)
    shutil.copytree(ROOT / "templates" / "layouts", root / "templates" / "layouts")
    shutil.copytree(ROOT / "templates" / "email" / "system", root / "templates" / "email" / "system")
    p.write("templates/email/news/subject.txt", "News for {{ subscriber.first_name or 'you' }}")
    p.write("templates/email/news/body.html", """\
        {% extends "layouts/email.html" %}
        {% block content %}<p>Dear {{ subscriber.name or 'friend' }}, spring is here.</p>{% endblock %}
        """)
    return p


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Project:
    env = {"OUTREACH_SECRET_KEY": "web-test-secret", "OUTREACH_DATABASE_URL": db_url,
           "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    return write_project(tmp_path, env)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"outreach-test:{secrets.token_hex(4)}"
    yield prefix
    client = redis_lib.Redis.from_url(REDIS_TEST_URL)
    delete_keys(client, prefix)
    client.close()


@pytest.fixture
def app(project: Project, engine, redis_prefix):
    application = create_app(project.settings(), engine=engine, limiter_prefix=redis_prefix)
    yield application
    application.state.site.runtime.redis.close()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture
def site(app):
    return app.state.site


def person(engine, email: str = "ana@example.org", **fields):
    add_subscriber(engine, email, name=fields.pop("name", "Ana Lee"), tags=fields.pop("tags", ["supporter"]),
                   status=fields.pop("status", "confirmed"), **fields)
    return get_subscriber(engine, email)


def path_of(url: str) -> str:
    return urlsplit(url).path


def link(site, kind: str, subscriber, **context) -> str:
    """The path of a link of `kind` for `subscriber`, as an email would carry it."""
    if kind == VIEW:
        context.setdefault("campaign", "news")
        context.setdefault("step", "letter")
    if kind == UNSUBSCRIBE:
        context.setdefault("campaign", "news")
    return path_of(site.signer.url(kind, subscriber.link_id, **context))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


__all__ = ["CONFIRM", "PREFERENCES", "UNSUBSCRIBE", "VIEW", "Project", "csrf_of", "link", "person", "path_of",
           "write_project"]
