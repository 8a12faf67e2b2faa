"""Settings of the web side: keys, topics, origins; and `outreach web` refusing to start wrong."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from outreach.cli import Context, cli
from outreach.errors import ValidationFailed
from outreach.settings import load_settings


def test_previous_keys_come_from_the_environment_only(tmp_path):
    settings = load_settings(tmp_path, environ={"OUTREACH_SECRET_KEY": "new",
                                                "OUTREACH_PREVIOUS_SECRET_KEYS": " old1, old2 ,"})
    assert settings.link_keys() == ("new", ["old1", "old2"])
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "outreach.yaml").write_text("previous_secret_keys: [leaked]\n")
    with pytest.raises(ValidationFailed, match="OUTREACH_PREVIOUS_SECRET_KEYS"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize("yaml_text, field", [
    ("web: {embed_origins: ['https://example.org/path']}\n", "embed_origins"),
    ("web: {embed_origins: ['example.org']}\n", "embed_origins"),
    ("topics: {'a;b': A}\n", "topics"),
    ("base_url: 'not a url'\n", "base_url"),
    ("web: {signup_limits_per_client: ['lots']}\n", "signup_limits_per_client"),
])
def test_bad_web_settings_name_the_field(tmp_path, yaml_text, field):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "outreach.yaml").write_text(yaml_text)
    with pytest.raises(ValidationFailed, match=field):
        load_settings(tmp_path, environ={})


def test_topic_labels_per_language(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "outreach.yaml").write_text("topics: {events: {en: Events, ko: 행사}, news: News}\n")
    s = load_settings(tmp_path, environ={})
    assert [s.topic_label("events", "ko"), s.topic_label("events", "fr"), s.topic_label("news", "ko")] == [
        "행사", "Events", "News"]


def test_outreach_web_refuses_to_start_without_a_key_or_on_an_unmigrated_database(tmp_path):
    runner = CliRunner()
    no_key = load_settings(tmp_path, environ={"OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    result = runner.invoke(cli, ["web"], obj=Context.of(no_key))
    assert result.exit_code == 1 and "OUTREACH_SECRET_KEY" in result.output
    unmigrated = load_settings(tmp_path, environ={"OUTREACH_SECRET_KEY": "k",
                                                  "OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    result = runner.invoke(cli, ["web"], obj=Context.of(unmigrated))
    assert result.exit_code == 1 and "outreach db upgrade" in result.output
