"""`outreach runs pause|resume|cancel|retry`, `outreach status` and `outreach schedule`
through the CLI, on SQLite and PostgreSQL: what each says, and that a refused or repeated
command changes nothing. (Real workers mid-run: tests/worker/test_run_control.py.)"""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import Context, cli
from outreach.settings import load_settings
from outreach.store import (
    claim,
    get_run,
    make_engine,
    record_failed,
    record_sent,
    record_unknown,
    run_progress,
    upgrade,
)
from tests.channels.conftest import free_port
from tests.store.helpers import T0
from tests.store.test_ledger import LEASE, _planned_run

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def project(tmp_path, db_url):
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    engine = make_engine(db_url)
    upgrade(engine)
    yield tmp_path, engine
    engine.dispose()


@pytest.fixture
def run(project, db_url):
    root, _ = project

    def invoke(*args: str, redis_url: str = REDIS_URL, input: str | None = None):
        settings = load_settings(root, environ={"OUTREACH_DATABASE_URL": db_url, "OUTREACH_REDIS_URL": redis_url,
                                                "OUTREACH_SECRET_KEY": "k"})
        return CliRunner().invoke(cli, list(args), obj=Context.of(settings), input=input)
    return invoke


def _finished_run(engine) -> tuple[int, list[int]]:
    """A run of four: sent, failed (two, the same reason for different addresses), unknown."""
    run_id, ids = _planned_run(engine, 4)
    claim(engine, ids, "w1", T0 + LEASE, now=T0)
    record_sent(engine, ids[0], "<id@mail>")
    record_failed(engine, ids[1], "550 5.1.1 <p1@example.org>: mailbox unavailable")
    record_failed(engine, ids[2], "550 5.1.1 <p2@example.org>: mailbox unavailable")
    record_unknown(engine, ids[3], "connection dropped after DATA")
    return run_id, ids


def test_pause_resume_and_cancel_say_what_they_did_and_repeat_harmlessly(run, project):
    _, engine = project
    run_id, _ = _planned_run(engine, 3)
    # when paused twice, then the second says it already is
    first = run("runs", "pause", str(run_id), "--why", "wrong  link")
    assert first.exit_code == 0, first.output
    assert f"run {run_id} (camp/email) paused: 3 deliveries held" in first.output
    again = run("runs", "pause", str(run_id))
    assert again.exit_code == 0 and "already paused: wrong link" in again.output
    # when resumed twice, then the second says it is not paused
    assert run("runs", "resume", str(run_id)).exit_code == 0
    assert run_progress(engine, run_id)["pending"] == 3
    resumed = run("runs", "resume", str(run_id))
    assert resumed.exit_code == 0 and "is not paused (it is planned)" in resumed.output
    # when cancelled without --yes and the question is declined, then nothing changes
    declined = run("runs", "cancel", str(run_id), input="n\n")
    assert declined.exit_code == 1 and get_run(engine, run_id).status == "planned"
    cancelled = run("runs", "cancel", str(run_id), "--yes")
    assert cancelled.exit_code == 0 and "cancelled: 3 deliveries will not be sent" in cancelled.output
    assert run_progress(engine, run_id)["cancelled"] == 3
    # and a cancelled run can be neither resumed nor paused nor retried
    for args in (("resume",), ("pause",), ("retry", "--failed")):
        refused = run("runs", args[0], str(run_id), *args[1:])
        assert refused.exit_code == 1 and "cancelled" in refused.output, refused.output


@pytest.mark.parametrize("args,message", [
    (("runs", "pause", "999"), "there is no run 999"),
    (("runs", "resume", "999"), "there is no run 999"),
    (("runs", "cancel", "999", "--yes"), "there is no run 999"),
    (("runs", "retry", "999", "--failed"), "there is no run 999"),
    (("runs", "retry", "1"), "say which to send again: --failed, --unknown, or both"),
    (("runs", "pause", "0"), "0 is not in the range x>=1"),
    (("runs", "pause", "abc"), "'abc' is not a valid integer"),
    (("runs", "pause", "1", "--why", "   "), "give a reason, or leave --why out"),
    (("status", "999"), "there is no run 999"),
    (("status", "no-such-campaign"), "there is no campaign 'no-such-campaign'"),
    (("schedule", "--days", "0"), "0.0 is not in the range 0<x<=366"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_is_one_line_and_changes_nothing(run, project, args, message):
    _, engine = project
    run_id, _ = _planned_run(engine, 2)
    result = run(*args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert get_run(engine, run_id).status == "planned" and run_progress(engine, run_id)["pending"] == 2


def test_retry_resends_only_those_who_did_not_get_it(run, project):
    _, engine = project
    run_id, ids = _finished_run(engine)
    # when the failed ones are retried
    result = run("runs", "retry", str(run_id), "--failed")
    assert result.exit_code == 0, result.output
    assert f"2 deliveries of run {run_id} (2 failed) are due again" in result.output
    assert {k: v for k, v in run_progress(engine, run_id).items() if v} == {"sent": 1, "pending": 2, "unknown": 1}
    # when the unknown ones are retried, the question is asked first; declined, nothing moves
    assert run("runs", "retry", str(run_id), "--unknown", input="n\n").exit_code == 1
    assert run_progress(engine, run_id)["unknown"] == 1
    assert run("runs", "retry", str(run_id), "--unknown", "--yes").exit_code == 0
    # and with nothing left to retry it says so
    nothing = run("runs", "retry", str(run_id), "--failed", "--unknown")
    assert nothing.exit_code == 0 and "has no failed or unknown delivery" in nothing.output


def test_status_json_has_runs_queues_accounts_and_errors_grouped_by_reason(run, project):
    _, engine = project
    run_id, _ = _finished_run(engine)
    assert run("runs", "pause", str(run_id), "--why", "check the bounces").exit_code == 0
    # when status is asked for as JSON
    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    snap = json.loads(result.output)
    # then the run is there with its counts and reason
    (view,) = [r for r in snap["runs"] if r["id"] == run_id]
    assert view["status"] == "paused" and view["reason"] == "check the bounces"
    assert view["counts"]["sent"] == 1 and view["counts"]["failed"] == 2 and view["counts"]["unknown"] == 1
    assert view["total"] == 4 and view["remaining"] == 0
    # and the two failures with one cause are one group, addresses left out
    failed = [e for e in snap["errors"] if e["kind"] == "failed"]
    assert len(failed) == 1 and failed[0]["count"] == 2 and "<address>" in failed[0]["reason"]
    assert "p1@example.org" not in failed[0]["reason"]
    # and every queue, and every configured account with its limits, is listed
    assert {q["name"] for q in snap["queues"]} == {"control", "email", "social"}
    assert {a["key"] for a in snap["accounts"]} == {"email:news", "x:link"}
    assert all(a["limits"] for a in snap["accounts"])
    assert snap["problems"] == []
    # and asked for one run, it is the only one shown
    one = json.loads(run("status", str(run_id), "--json").output)
    assert [r["id"] for r in one["runs"]] == [run_id]


def test_status_still_shows_the_runs_when_redis_is_down(run, project):
    _, engine = project
    run_id, _ = _finished_run(engine)
    result = run("status", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 0, result.output
    assert "camp/email" in result.output and "could not look: queues" in result.output


def test_a_finished_runs_counts_are_kept_and_follow_a_retry(run, project):
    _, engine = project
    run_id, ids = _finished_run(engine)
    from outreach.store import finish_run_if_done
    assert finish_run_if_done(engine, run_id)
    # then the run keeps its counts once finished, and status shows them
    assert get_run(engine, run_id).counts == {"sent": 1, "failed": 2, "unknown": 1}
    (view,) = [r for r in json.loads(run("status", "--json").output)["runs"] if r["id"] == run_id]
    assert view["counts"]["failed"] == 2
    # and a finished run found without them (a cancelled one, or an older ledger) gets them on first look
    from outreach.store.schema import runs as runs_table
    with engine.begin() as conn:
        conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(counts=None))
    assert run("status", "--json").exit_code == 0
    assert get_run(engine, run_id).counts == {"sent": 1, "failed": 2, "unknown": 1}
    # when it is retried, they are dropped and counted afresh
    assert run("runs", "retry", str(run_id), "--failed").exit_code == 0
    assert get_run(engine, run_id).counts is None
    snap = json.loads(run("status", "--json").output)
    (view,) = [r for r in snap["runs"] if r["id"] == run_id]
    assert view["counts"]["pending"] == 2 and view["status"] == "planned"


def test_schedule_lists_the_coming_steps_with_audience_and_local_time_spread(run, project):
    root, engine = project
    assert run("subscribers", "import", str(root / "config" / "subscribers.csv")).exit_code == 0
    result = run("schedule", "--days", "366", "--json")
    assert result.exit_code == 0, result.output
    occurrences = [json.loads(line) for line in result.output.splitlines()]
    assert occurrences and occurrences == sorted(occurrences, key=lambda o: o["at"])
    now = datetime.now(UTC).isoformat()
    assert all(o["at"] > now for o in occurrences)
    local = [o for o in occurrences if o["local_time"]]
    assert local and all(o["first"] <= o["at"] <= o["last"] or o["first"] <= o["last"] for o in local)
    posts = [o for o in occurrences if o["channel"] == "x"]
    assert posts and all(o["audience"] is None for o in posts)
    assert all(o["audience"] > 0 for o in occurrences if o["channel"] == "email")
    text = run("schedule", "--days", "366")
    assert "America/Los_Angeles" in text.output and "UTC)" in text.output


def test_status_watch_refreshes_until_interrupted(project, db_url):
    # given a real `outreach status --watch --json` process
    import os
    import signal
    import subprocess
    import sys
    import time

    root, engine = project
    run_id, _ = _planned_run(engine, 2)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OUTREACH")},
           "OUTREACH_DATABASE_URL": db_url, "OUTREACH_REDIS_URL": REDIS_URL, "OUTREACH_SECRET_KEY": "k"}
    proc = subprocess.Popen([sys.executable, "-m", "outreach", "--root", str(root), "status", "--watch", "--json",
                             "--interval", "0.2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # when the run changes while it watches
        deadline = time.monotonic() + 60
        first = proc.stdout.readline()
        from outreach.store import pause_run
        pause_run(engine, run_id, "watch this")
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if '"paused"' in line and '"watch this"' in line:
                break
        else:
            pytest.fail("the watch never showed the paused run")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    # then each refresh was one JSON object, the later ones showing the change, and Ctrl-C ends it
    assert json.loads(first)["runs"][0]["status"] == "planned"
    assert json.loads(line)["runs"][0]["reason"] == "watch this"
    assert proc.returncode == 130 and "Traceback" not in err
