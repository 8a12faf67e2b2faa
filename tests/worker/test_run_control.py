"""`outreach runs pause|resume|cancel` against real worker processes mid-run: when the
command returns, nothing more of the run reaches the SMTP server (what was handed over
before has been answered by then), a paused run sends nothing until resumed and then
everything exactly once, and a cancelled run's remaining deliveries end cancelled."""
from __future__ import annotations

import json
import time

import pytest

from outreach import store
from tests.worker.conftest import TimedSink, _start, add_people, run_ids, states, wait_for_workers, wait_until

PEOPLE = 300


@pytest.fixture
def slow_sink():
    """An SMTP server taking 50 ms per message: a run of 300 lasts seconds, long enough to
    act on mid-way."""
    handler = TimedSink(delay=0.05)
    controller = _start(handler)
    handler.port = controller.port
    yield handler
    controller.stop()


def _start_run(project, engine, sink, x_api, procs, celery_app) -> tuple[int, list[str]]:
    project.configure(sink.port, x_api.base, dispatch="{batch_size: 10, lease: 30s}")
    emails = add_people(engine, PEOPLE)
    # at INFO: the worker's events are checked below
    procs.outreach("worker", "-Q", "email,social,control", "-c", "2", "-l", "info", name="worker")
    procs.beat()
    wait_for_workers(celery_app, procs)
    result = procs.run("send", "alert", "--step", "mail", "--now", name="send")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = run_ids(engine)["mail"]
    wait_until(lambda: sink.count >= 20, 30, "the run to be under way", procs, detail=lambda: states(engine))
    return run_id, emails


def _quiet_for(sink: TimedSink, seconds: float) -> int:
    """The count of messages received, checked unchanged for `seconds`."""
    before = sink.count
    time.sleep(seconds)
    assert sink.count == before, f"{sink.count - before} messages arrived after the command returned"
    return before


def test_a_paused_run_sends_nothing_until_resumed(project, engine, slow_sink, x_api, procs, celery_app):
    # given a run of 300 emails being sent by a worker with two processes
    run_id, emails = _start_run(project, engine, slow_sink, x_api, procs, celery_app)
    # when an operator pauses it with the real CLI
    result = procs.run("runs", "pause", str(run_id), "--why", "wrong link", name="pause")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {run_id} (alert/mail) paused" in result.stdout
    # then from the moment the command returned nothing more arrives, for the beat's ticks too
    sent = _quiet_for(slow_sink, 3.0)
    assert 0 < sent < PEOPLE
    # and the ledger holds the rest: nothing with a worker, nothing lost
    counts = states(engine, run_id)
    assert counts == {"sent": sent, "paused": PEOPLE - sent}, counts
    run = store.get_run(engine, run_id)
    assert (run.status, run.reason) == ("paused", "wrong link")
    # and `outreach status RUN --json` says so
    shown = procs.run("status", str(run_id), "--json", name="status")
    assert shown.returncode == 0, shown.stderr
    assert '"reason": "wrong link"' in shown.stdout and f'"paused": {PEOPLE - sent}' in shown.stdout

    # when it is resumed
    result = procs.run("runs", "resume", str(run_id), name="resume")
    assert result.returncode == 0, result.stdout + result.stderr
    # then the rest goes out, each subscriber getting exactly one message, and the run is done
    wait_until(lambda: states(engine, run_id) == {"sent": PEOPLE}, 60, "the run to finish", procs,
               detail=lambda: states(engine, run_id))
    assert slow_sink.per_recipient() == dict.fromkeys(emails, 1)
    wait_until(lambda: store.get_run(engine, run_id).status == "done", 5, "the run to be done")
    # and the worker logged one JSON line per event: each batch with its run, channel, account
    # and outcomes, adding up to what was sent
    events = _events(procs.log("worker"))
    batches = [e for e in events if e.get("event") == "batch" and e.get("run") == run_id]
    assert batches and all(e["channel"] == "email" and e["account"] == project.account and e["batch"]
                           and e["campaign"] == "alert" and e["level"] == "INFO" for e in batches)
    assert sum(e["outcomes"].get("sent", 0) for e in batches) == PEOPLE
    assert "test-secret" not in procs.log("worker")  # the link-signing key


def _events(log: str) -> list[dict]:
    """The worker's log events: every line Celery's logging writes is one JSON object (its
    start-up banner, printed before logging is set up, is not an event)."""
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
        else:
            assert not line.startswith("[20"), f"a log line in Celery's own format: {line}"
    return events


def test_a_cancelled_runs_remaining_deliveries_end_cancelled(project, engine, slow_sink, x_api, procs, celery_app):
    # given a run of 300 emails being sent
    run_id, emails = _start_run(project, engine, slow_sink, x_api, procs, celery_app)
    # when an operator cancels it
    result = procs.run("runs", "cancel", str(run_id), "--yes", "--why", "the action is over", name="cancel")
    assert result.returncode == 0, result.stdout + result.stderr
    # then nothing more arrives, and every delivery not sent ended cancelled (none with a worker)
    sent = _quiet_for(slow_sink, 3.0)
    assert 0 < sent < PEOPLE
    assert states(engine, run_id) == {"sent": sent, "cancelled": PEOPLE - sent}
    assert max(slow_sink.per_recipient().values()) == 1
    # and it cannot be resumed; cancelling again says so and changes nothing
    resumed = procs.run("runs", "resume", str(run_id), name="resume")
    assert resumed.returncode == 1 and "cancelled and cannot be resumed" in resumed.stderr
    again = procs.run("runs", "cancel", str(run_id), "--yes", name="cancel-again")
    assert again.returncode == 0 and "already cancelled" in again.stdout
    assert states(engine, run_id) == {"sent": sent, "cancelled": PEOPLE - sent}
