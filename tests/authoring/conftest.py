"""A tiny, valid project in a temp dir; each test breaks one thing in it."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import cli

SETTINGS = """\
organization:
  name: Test Org
  postal_address: 1 Test Street, Testville
base_url: https://outreach.test
email:
  accounts:
    news:
      from: "Test Org <news@example.org>"
      port: 1025
      unsubscribe_mailto: unsubscribe@example.org
x:
  accounts:
    org:
      handle: testorg
subscribers:
  attributes: [chapter]
"""

CAMPAIGN = """\
name: hello
title: Hello campaign
audience:
  segment: everyone
data:
  greeting: Welcome
steps:
  - id: mail
    channel: email
    template: hello
    schedule:
      at: 2030-01-15 09:00
      timezone: Europe/Paris
  - id: tweet
    channel: x
    template: hello
    schedule:
      after: mail
      delay: 5m
"""

TEMPLATES = {
    "email/hello/subject.txt": "{{ campaign.data.greeting }}, {{ subscriber.first_name or 'friend' }}",
    "email/hello/body.html": '{% extends "layouts/base.html" %}{% block content %}'
                             "<p>{{ campaign.data.greeting }} {{ subscriber.name }} from {{ subscriber.city }}</p>"
                             "{% endblock %}",
    "layouts/base.html": "<html><body>{% block content %}{% endblock %}"
                         '<a href="{{ links.unsubscribe }}">Unsubscribe</a></body></html>',
    "x/hello.txt": "{{ campaign.title }} is live: https://example.org/hello",
}


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def campaign(self, text: str, name: str = "hello") -> Path:
        return self.write(f"config/campaigns/{name}.yaml", text)

    def validate(self, *args: str):
        return CliRunner().invoke(cli, ["--root", str(self.root), "validate", *args])

    def run(self, *args: str):
        return CliRunner().invoke(cli, ["--root", str(self.root), *args])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    for var in ("OUTREACH_SECRET_KEY", "OUTREACH_DATABASE_URL", "OUTREACH_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    p = Project(tmp_path)
    p.write("config/outreach.yaml", SETTINGS)
    p.write("config/segments.yaml", "everyone: {}\nsupporters:\n  tags: [supporter]\n")
    p.write("config/subscribers.csv",
            "email,name,city,country,timezone,language,tags,chapter\n"
            "ana@example.org,Ana Lima,Toronto,CA,America/Toronto,en,supporter,toronto\n"
            "kim@example.org,김민지,Seoul,KR,Asia/Seoul,ko,supporter,\n")
    p.campaign(CAMPAIGN)
    for rel, text in TEMPLATES.items():
        p.write(f"templates/{rel}", text)
    return p
