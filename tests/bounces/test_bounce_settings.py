"""The bounces section of the settings: defaults, each mistake named with its key and how to
fix it, webhook secrets only from the environment."""
from __future__ import annotations

from datetime import timedelta

import pytest

from outreach.errors import ValidationFailed
from outreach.settings import load_settings


def write(tmp_path, text: str) -> None:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "outreach.yaml").write_text(text)


def test_defaults(tmp_path):
    b = load_settings(tmp_path, environ={}).bounces
    assert (b.domain, b.local_part, b.soft_limit, b.soft_window) == (None, "bounces", 3, timedelta(days=7))
    assert (b.breaker.min_sent, b.breaker.hard_bounce_rate, b.breaker.complaint_rate) == (500, 0.05, 0.001)
    assert not b.webhooks.ses_topics and b.webhooks.sns_schemes == ["https"]


@pytest.mark.parametrize(("yaml", "words"), [
    ("bounces: {domain: 'not a domain'}", "bounces.domain"),
    ("bounces: {local_part: 'Bounces+x'}", "bounces.local_part"),
    ("bounces: {soft_limit: 0}", "bounces.soft_limit"),
    ("bounces: {soft_window: forever}", "bounces.soft_window"),
    ("bounces: {breaker: {complaint_rate: 3}}", "bounces.breaker.complaint_rate"),
    ("bounces: {webhooks: {sns_hosts: '(['}}", "bounces.webhooks.sns_hosts"),
    ("bounces: {webhooks: {sns_schemes: [ftp]}}", "bounces.webhooks.sns_schemes"),
    ("bounces: {domian: x.org}", "bounces.domian"),
    ("bounces: {tls_cert: mx.crt}", "set both tls_cert and tls_key"),
])
def test_each_mistake_names_its_key_and_line(tmp_path, yaml, words):
    write(tmp_path, yaml + "\n")
    with pytest.raises(ValidationFailed) as failed:
        load_settings(tmp_path, environ={})
    assert words in str(failed.value) and "outreach.yaml:1" in str(failed.value)


@pytest.mark.parametrize(("key", "variable"), [("postmark_password", "OUTREACH_POSTMARK_WEBHOOK_PASSWORD"),
                                               ("mailgun_signing_key", "OUTREACH_MAILGUN_WEBHOOK_KEY")])
def test_webhook_secrets_come_only_from_the_environment(tmp_path, key, variable):
    write(tmp_path, f"bounces:\n  webhooks:\n    {key}: oops\n")
    with pytest.raises(ValidationFailed, match=f"secrets may not live in YAML.*{variable}"):
        load_settings(tmp_path, environ={})
    write(tmp_path, "bounces: {domain: Bounces.Example.org}\n")
    settings = load_settings(tmp_path, environ={variable: "s3cret"})
    assert getattr(settings.bounces.webhooks, key) == "s3cret" and settings.bounces.domain == "bounces.example.org"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()
