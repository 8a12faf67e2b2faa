"""An advocacy project on real services: the web tests' project (tests/web/conftest.py) plus a
call-to-action campaign with a target file, a letter, actions, a reminder to those who have
not acted, and a tour with two stops."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from outreach.web import create_app
from tests.web.conftest import BASE, REDIS_TEST_URL, Project, redis_prefix, write_project  # noqa: F401

TARGETS = """\
salutation: "Dear Consul,"
countries:
  US:
    name: the United States
    contacts:
      - label: Embassy
        city: Washington, DC
        serves: "DC, the South and Texas"
        email: embassy@example.gov
        x: EmbassyX
        phone: "+1 202 555 0100"
        web_form: https://embassy.example.gov/contact
        coordinates: [38.94, -77.07]
      - label: Consulate
        city: Chicago
        serves: "IL, WI and CO"
        email: chicago@example.gov
always:
  - label: UN mission
    city: Geneva, CH
    email: un@example.gov
    coordinates: [46.2, 6.14]
fallback:
  advice: Look up the embassy in your country.
"""

CTA = """\
name: cta
title: Write today
audience:
  filter:
    tags: [supporter]
targets: targets/offices.yaml
letter:
  subject: [Please act, Act now please]
  paragraphs:
    - [First version one., First version two., First version three.]
    - Second paragraph.
actions: [sent_letter, posted]
quiet_hours: "21:00-08:00"
events:
  radius: 150 km
  stops:
    - id: dallas
      venue: Hall
      city: Dallas
      region: TX
      country: US
      start: 2030-03-10 18:00
    - id: chicago
      venue: Center
      city: Chicago
      country: US
      coordinates: [41.88, -87.63]
      start: 2030-03-12 19:00
      timezone: America/Chicago
steps:
  - id: alert
    channel: email
    template: cta
    urgent: true
    schedule:
      at: 2030-03-01 09:00
      timezone: America/New_York
  - id: reminder
    channel: email
    template: cta
    audience:
      not_acted: {action: sent_letter}
    schedule:
      at: 2030-03-03 10:00
      timezone: America/New_York
      local_time: true
  - id: thanks
    channel: email
    template: cta
    audience:
      acted: {action: sent_letter}
    schedule:
      at: 2030-03-03 10:00
      timezone: America/New_York
  - id: invite
    channel: email
    template: invite
    audience:
      near_event: true
    schedule:
      at: 2030-03-01 10:00
      timezone: America/New_York
      local_time: true
  - id: livestream
    channel: email
    template: cta
    audience:
      near_event: false
    schedule:
      at: 2030-03-01 10:00
      timezone: America/New_York
  - id: day-before
    channel: email
    template: invite
    schedule:
      before_event: 1d
"""


def write_advocacy(project: Project) -> Project:
    project.write("config/targets/offices.yaml", TARGETS)
    project.write("config/campaigns/cta.yaml", CTA)
    project.write("templates/email/cta/subject.txt", "{{ letter.subject }}")
    project.write("templates/email/cta/body.html", """\
        {% extends "layouts/email.html" %}
        {% block content %}<p>{{ target.label }} {{ target.email }}</p><p><a href="{{ letter.mailto }}">open</a>
        <a href="{{ actions.sent_letter }}">sent</a> <a href="{{ letter.page }}">page</a></p>
        {% endblock %}
        """)
    project.write("templates/email/invite/subject.txt", "{{ event.city }}")
    project.write("templates/email/invite/body.html", """\
        {% extends "layouts/email.html" %}
        {% block content %}<p>{{ event.venue }}: {{ event.starts_local }} / {{ event.starts_yours }}</p>{% endblock %}
        """)
    return project


@pytest.fixture
def advocacy_project(tmp_path: Path, db_url: str) -> Project:
    env = {"OUTREACH_SECRET_KEY": "web-test-secret", "OUTREACH_DATABASE_URL": db_url,
           "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    return write_advocacy(write_project(tmp_path, env))


@pytest.fixture
def act_app(advocacy_project, engine, redis_prefix):  # noqa: F811
    application = create_app(advocacy_project.settings(), engine=engine, limiter_prefix=redis_prefix)
    yield application
    application.state.site.runtime.redis.close()


@pytest.fixture
def act_client(act_app) -> Iterator[TestClient]:
    with TestClient(act_app, base_url=BASE) as c:
        yield c

