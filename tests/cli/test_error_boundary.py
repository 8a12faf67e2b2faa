"""The CLI's one error boundary: a missing, un-migrated or unreachable service is one line
naming what to run or set, with a non-zero exit status and no traceback, from any command.
Run as a person would: a real `outreach` process."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.channels.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def outreach(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH")}
    return subprocess.run([sys.executable, "-m", "outreach", "--root", str(project), *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "outreach.yaml").write_text(
        (REPO / "config" / "outreach.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


COMMANDS = [("status",), ("audience", "x"), ("subscribers", "export"), ("suppress", "a@example.org", "--reason", "r"),
            ("resend-unknown", "1", "--yes"), ("tick",)]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_a_fresh_empty_sqlite_file_says_to_run_db_upgrade(project, args):
    # given a database file that exists but was never migrated
    db = project / "empty.db"
    db.touch()
    # when a command needs the database
    result = outreach(project, *args, OUTREACH_DATABASE_URL=f"sqlite:///{db}")
    # then one line says what to run, and nothing else is printed
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if args[0] != "audience":  # `audience x` stops earlier: there is no campaign x
        assert "run `outreach db upgrade`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("args", [("status",), ("db", "upgrade"), ("subscribers", "export")], ids=lambda a: a[0])
def test_an_unreachable_postgresql_is_one_line_naming_the_variable(project, args):
    # given a PostgreSQL URL where nothing listens (a free loopback port), with a password
    url = f"postgresql://outreach:s3cret-pw@127.0.0.1:{free_port()}/outreach"
    # when a command needs the database
    result = outreach(project, *args, OUTREACH_DATABASE_URL=url)
    # then one line names the server and the variable to check, and never the password
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "OUTREACH_DATABASE_URL" in result.stderr and "127.0.0.1" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_an_unreachable_redis_is_one_line_naming_the_variable(tmp_path):
    # given the sample project on a migrated database with its subscribers, and a Redis URL
    # where nothing listens
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    env = {"OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'ok.db'}", "OUTREACH_SECRET_KEY": "k",
           "OUTREACH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    assert outreach(tmp_path, "db", "upgrade", **env).returncode == 0
    assert outreach(tmp_path, "subscribers", "import", str(tmp_path / "config" / "subscribers.csv"),
                    **env).returncode == 0
    # when a send has to queue work
    result = outreach(tmp_path, "send", "milestone-1000", "--step", "announcement", "--now", **env)
    # then the error is one line saying which Redis cannot be reached and what to set
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == result.stderr.strip().splitlines() and len(errors) == 1, result.stderr
    assert "OUTREACH_REDIS_URL" in errors[0]


def test_a_root_that_does_not_exist_is_a_usage_error(tmp_path):
    result = outreach(tmp_path / "nowhere", "validate")
    assert result.returncode == 2 and "no such directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("queues", ["email", "social", "email,social,control"])
def test_a_sending_worker_without_a_secret_key_does_not_start(project, queues):
    # given no OUTREACH_SECRET_KEY (the links in every message are signed with it)
    # when a worker for a channel's queue is started
    result = outreach(project, "worker", "-Q", queues, OUTREACH_DATABASE_URL=f"sqlite:///{project / 'x.db'}")
    # then it stops at once with one line saying what to set, instead of failing every batch
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: no link-signing key: set OUTREACH_SECRET_KEY in the environment or .env "
        "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"], result.stderr
