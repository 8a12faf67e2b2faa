"""Settings are layered defaults < YAML < .env < environment < CLI flags, typed, and every
mistake names the key or variable to fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from outreach.errors import ConfigurationError, ValidationFailed
from outreach.settings import load_settings


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_layers_in_order(tmp_path):
    # given a value at every layer
    write(tmp_path, "config/outreach.yaml", "base_url: https://yaml.example\ntimezone: Europe/Paris\n"
                                            "redis_url: redis://yaml:6379/0\ndatabase_url: sqlite:///yaml.db\n")
    write(tmp_path, ".env", "OUTREACH_BASE_URL=https://dotenv.example\nOUTREACH_REDIS_URL=redis://dotenv:6379/0\n"
                            "OUTREACH_DATABASE_URL=sqlite:///dotenv.db\n")
    env = {"OUTREACH_REDIS_URL": "redis://env:6379/0", "OUTREACH_DATABASE_URL": "sqlite:///env.db"}
    # when loaded with a CLI flag for one of them
    s = load_settings(tmp_path, environ=env, database_url="sqlite:///flag.db")
    # then each key comes from the highest layer that sets it
    assert s.timezone == "Europe/Paris"                 # YAML over default
    assert s.base_url == "https://dotenv.example"       # .env over YAML
    assert s.redis_url == "redis://env:6379/0"          # environment over .env
    assert s.database_url == "sqlite:///flag.db"        # CLI flag over everything
    assert s.dispatch.batch_size == 200                 # default


def test_nested_override_and_typed_durations(tmp_path):
    s = load_settings(tmp_path, environ={"OUTREACH__DISPATCH__LEASE": "2m", "OUTREACH__DISPATCH__BATCH_SIZE": "50"})
    assert s.dispatch.lease.total_seconds() == 120 and s.dispatch.batch_size == 50


def test_nested_override_finds_an_account_whose_name_a_variable_cannot_spell(tmp_path):
    # given accounts named with a dash and with capitals
    write(tmp_path, "config/outreach.yaml", "email:\n  accounts:\n    news-letters:\n      from: a@example.org\n"
                                            "    Alerts:\n      from: b@example.org\n")
    # when their ports are overridden from the environment
    s = load_settings(tmp_path, environ={"OUTREACH__EMAIL__ACCOUNTS__NEWS_LETTERS__PORT": "2525",
                                         "OUTREACH__EMAIL__ACCOUNTS__ALERTS__PORT": "2526"})
    # then the accounts themselves changed; no look-alike account appeared
    assert sorted(s.email.accounts) == ["Alerts", "news-letters"]
    assert s.account("email", "news-letters").port == 2525 and s.account("email", "Alerts").port == 2526


def test_secrets_come_from_the_environment_only(tmp_path):
    write(tmp_path, "config/outreach.yaml", "email:\n  accounts:\n    news:\n      from: a@example.org\n"
                                            "      password: hunter2\n")
    with pytest.raises(ValidationFailed) as info:
        load_settings(tmp_path, environ={})
    assert "OUTREACH_SMTP_NEWS_PASSWORD" in str(info.value)
    write(tmp_path, "config/outreach.yaml", "email:\n  accounts:\n    news:\n      from: a@example.org\n")
    s = load_settings(tmp_path, environ={"OUTREACH_SMTP_NEWS_PASSWORD": "hunter2"})
    assert s.account("email", "news").password == "hunter2"
    assert "hunter2" not in repr(s)


def test_wrong_values_name_the_key(tmp_path):
    write(tmp_path, "config/outreach.yaml", "timezone: Mars/Base\ndispatch:\n  batch_size: -1\n"
                                            "email:\n  accounts:\n    news:\n      from: a@example.org\n"
                                            "      limits: [\"fast\"]\n")
    with pytest.raises(ValidationFailed) as info:
        load_settings(tmp_path, environ={})
    text = str(info.value)
    assert "config/outreach.yaml:1: [timezone] unknown time zone 'Mars/Base'" in text
    assert "config/outreach.yaml:3: [dispatch.batch_size]" in text
    assert "'fast' is not a rate limit" in text


def test_missing_secret_key_says_what_to_set(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        load_settings(tmp_path, environ={}).require_secret_key()
    assert "OUTREACH_SECRET_KEY" in str(info.value)


def test_unknown_account_lists_the_defined_ones(tmp_path):
    write(tmp_path, "config/outreach.yaml", "x:\n  accounts:\n    org: {handle: org}\n    other: {handle: o2}\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings(tmp_path, environ={}).account("x", "nope")
    assert "unknown x account 'nope'" in str(info.value) and "org, other" in str(info.value)
