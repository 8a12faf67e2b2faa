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


# --- settings validated like campaigns (issue 11) -------------------------------------------

@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are named relative to where the command runs


ACCOUNT = "email:\n  accounts:\n    news:\n      from: \"Org <news@example.org>\"\n"


def problems_of(tmp_path: Path, yaml_text: str, environ: dict[str, str] | None = None, **overrides: str) -> list[str]:
    write(tmp_path, "config/outreach.yaml", yaml_text)
    with pytest.raises(ValidationFailed) as info:
        load_settings(tmp_path, environ=environ or {}, **overrides)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("text", "field", "expected"), [
    (ACCOUNT.replace("Org <news@example.org>", "not an address"), "email.accounts.news.from", "not an email address"),
    (ACCOUNT + "      reply_to: \"Org <hello@>\"\n", "email.accounts.news.reply_to", "not an email address"),
    (ACCOUNT + "      unsubscribe_mailto: \"Org <u@example.org>\"\n", "email.accounts.news.unsubscribe_mailto",
     "not an email address"),
    (ACCOUNT.replace("news@example.org", "ünicode@example.org"), "email.accounts.news.from", "not an email address"),
    (ACCOUNT + "      port: -1\n", "email.accounts.news.port", "port -1 is not a TCP port"),
    (ACCOUNT + "      port: 70000\n", "email.accounts.news.port", "port 70000 is not a TCP port"),
    (ACCOUNT + "      timeout: 0\n", "email.accounts.news.timeout", "between 0 and 3600"),
    (ACCOUNT + "      limits: [\"14/0s\"]\n", "email.accounts.news.limits", "must be longer than 0"),
    (ACCOUNT + "      limits: [\"0/1s\"]\n", "email.accounts.news.limits", "greater than 0"),
    (ACCOUNT + "    a-b: {from: a@example.org}\n    a_b: {from: b@example.org}\n", "email.accounts",
     "accounts 'a-b' and 'a_b' would share the secret variables"),
    ("base_url: \"javascript:alert(1)\"\n", "base_url", "must use https"),
    ("base_url: http://news.example.org\n", "base_url", "must use https"),
    ("base_url: https://\n", "base_url", "not a site address"),
    ("base_url: https://news.example.org:99999\n", "base_url", "not a URL"),
    ("database_url: postgresql://u:pw@127.0.0.1:abc/x\n", "database_url", "port is not a number"),
    ("redis_url: redis://127.0.0.1:99999999/0\n", "redis_url", "port is not a number"),
    ("dispatch:\n  lease: -5\n", "dispatch.lease", "must be 0 or more"),
    ("dispatch:\n  catch_up: 99999999999999d\n", "dispatch.catch_up", "longer than 3650 days"),
    ("timezone: Asia\n", "timezone", "unknown time zone 'Asia'"),
])
def test_settings_that_would_break_every_send_are_refused_at_their_line(tmp_path, text, field, expected):
    found = problems_of(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith("config/outreach.yaml:") and f"[{field}]" in found[0] and expected in found[0], found


@pytest.mark.parametrize("url", ["http://127.0.0.1:8025", "http://localhost:8000/x", "http://[::1]:80",
                                 "https://news.example.org", "https://example.org/outreach/"])
def test_https_or_loopback_base_urls_are_accepted(tmp_path, url):
    write(tmp_path, "config/outreach.yaml", f"base_url: \"{url}\"\n")
    assert load_settings(tmp_path, environ={}).base_url == url.rstrip("/")  # links add their own /


def test_a_value_from_dotenv_is_blamed_on_its_variable_and_line(tmp_path):
    # given a bad value set in .env (line 3), not in config/outreach.yaml
    write(tmp_path, ".env", "# comment\nOUTREACH_SECRET_KEY=k\nOUTREACH__DISPATCH__BATCH_SIZE=abc\n")
    found = problems_of(tmp_path, "timezone: UTC\n" + ACCOUNT)
    # then the problem names .env, its line and the variable, not a line of the YAML
    assert found == [".env:3: [dispatch.batch_size] Input should be a valid integer, unable to parse string as an "
                     "integer (set by OUTREACH__DISPATCH__BATCH_SIZE)"]


def test_a_value_from_the_environment_names_the_variable_and_never_the_url(tmp_path):
    found = problems_of(tmp_path, ACCOUNT, environ={"OUTREACH_DATABASE_URL": "postgresql://u:s3cret@h:abc/db"})
    assert len(found) == 1 and found[0].startswith("environment variable OUTREACH_DATABASE_URL: [database_url]")
    assert "s3cret" not in found[0]


def test_a_command_line_flag_is_blamed_on_the_flag(tmp_path):
    found = problems_of(tmp_path, ACCOUNT, redis_url="redis://h:port/0")
    assert len(found) == 1 and found[0].startswith("--redis-url: [redis_url]"), found


def test_a_dotenv_that_is_not_utf8_is_one_problem(tmp_path):
    (tmp_path / ".env").write_bytes(b"OUTREACH_SECRET_KEY=ok\nOUTREACH_BASE_URL=https://caf\xe9.example\n")
    found = problems_of(tmp_path, ACCOUNT)
    assert found == [".env:2: not UTF-8 text (invalid continuation byte) (save .env as UTF-8)"]


def test_a_variable_that_is_not_text_is_one_problem(tmp_path):
    # given a value the OS could not decode (os.environ holds it with surrogate escapes)
    found = problems_of(tmp_path, ACCOUNT, environ={"OUTREACH_BASE_URL": "https://caf\udce9.example"})
    assert found == ["OUTREACH_BASE_URL: OUTREACH_BASE_URL is not UTF-8 text (set it again as UTF-8 text)"]


def test_settings_yaml_limits_apply(tmp_path):
    found = problems_of(tmp_path, "a: &a [*a]\n")
    assert len(found) == 1 and "refers to a value that contains it" in found[0]


def test_a_password_pasted_into_base_url_is_not_repeated(tmp_path):
    # found by tests/properties: the message quoted the whole URL
    found = problems_of(tmp_path, ACCOUNT, environ={"OUTREACH_BASE_URL": "postgresql://u:s3cret@h:abc/db"})
    assert len(found) == 1 and "[base_url]" in found[0] and "s3cret" not in found[0], found


def test_a_database_url_in_the_wrong_variable_is_quoted_without_its_password(tmp_path):
    # found by tests/properties: OUTREACH_TIMEZONE=postgresql://u:pw@... was quoted whole
    found = problems_of(tmp_path, ACCOUNT, environ={"OUTREACH_TIMEZONE": "postgresql://u:s3cret@h/db"})
    assert len(found) == 1 and "unknown time zone 'postgresql://u:***@h/db'" in found[0], found
