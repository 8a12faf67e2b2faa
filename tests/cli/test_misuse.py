"""Command-line misuse a person might try ends in one line and exit 1 (2 for usage), never a
traceback. Run as a person would: a real `outreach` process on a copy of the sample project."""
from __future__ import annotations

import shutil

import pytest

from tests.cli.test_error_boundary import REPO, outreach


@pytest.fixture
def sample(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path


def one_error(result, code: int = 1) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_dry_run_of_a_step_that_does_not_exist(sample):
    db = f"sqlite:///{sample / 'x.db'}"
    assert outreach(sample, "db", "upgrade", OUTREACH_DATABASE_URL=db).returncode == 0
    line = one_error(outreach(sample, "send", "forced-repatriation", "--dry-run", "--step", "nosuch",
                              OUTREACH_DATABASE_URL=db))
    assert "has no step 'nosuch'" in line and "alert-email" in line


def test_an_absurd_sample_size_is_a_usage_error(sample):
    line = one_error(outreach(sample, "audience", "forced-repatriation", "--sample", "99999999999999999999"), 2)
    assert "--sample" in line


def test_preview_into_a_folder_that_cannot_be_made(sample):
    line = one_error(outreach(sample, "preview", "forced-repatriation", "--out", "/proc/nope"))
    assert "/proc/nope" in line


@pytest.mark.parametrize(("variable", "url"), [
    ("OUTREACH_DATABASE_URL", "postgresql://u:pw@127.0.0.1:abc/x"),
    ("OUTREACH_DATABASE_URL", "postgresql://u:pw@127.0.0.1:99999999/x"),
    ("OUTREACH_REDIS_URL", "redis://127.0.0.1:abc/0"),
])
def test_a_malformed_port_names_the_variable(sample, variable, url):
    line = one_error(outreach(sample, "status", **{variable: url}))
    assert variable in line and "port" in line and "pw" not in line


def test_a_root_that_does_not_exist(tmp_path):
    line = one_error(outreach(tmp_path / "nonexistent", "validate"), 2)
    assert "no such directory" in line


def test_a_root_that_holds_no_project(tmp_path):
    result = outreach(tmp_path, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "settings file not found" in result.stderr and "ok:" not in result.stdout


def test_preview_of_data_with_a_lone_surrogate(sample):
    path = sample / "config" / "campaigns" / "forced-repatriation.yaml"
    path.write_text(path.read_text().replace("x_handle: libertyinnk", 'x_handle: "libertyinnk\\ud800"'))
    line = one_error(outreach(sample, "preview", "forced-repatriation"))
    assert "forced-repatriation.yaml:" in line and "lone surrogate" in line


def test_a_dotenv_that_is_not_utf8(sample):
    (sample / ".env").write_bytes(b"OUTREACH_SECRET_KEY=caf\xe9\n")
    line = one_error(outreach(sample, "validate"))
    assert line.startswith("error: ") and line.endswith(".env:1: not UTF-8 text (invalid continuation byte) "
                                                         "(save .env as UTF-8)"), line
