"""`outreach send CAMPAIGN --now` retried after the broker failed: never a second run, never
a second email (bug 2). The broker is a redis-server of the test's own, really stopped."""
from __future__ import annotations

import os
import signal

import sqlalchemy as sa

from outreach.store.schema import runs
from tests.reliability.harness import scale, wait_until

N = scale(2000, 10000)


def _runs(stack) -> list:
    with stack.engine.connect() as conn:
        return conn.execute(sa.select(runs.c.id, runs.c.status, runs.c.note)).all()


def test_send_now_with_the_broker_down_creates_nothing(stack):
    # given a campaign, and the broker (Redis) stopped
    stack.configure()
    stack.add_people(N)
    stack.redis.stop(keep_data=True)
    # when an operator sends the campaign now
    result = stack.cli("send", "alert", "--now", name="send-1")
    # then nothing was created (a retry cannot make a second run), and the command fails in
    # one line saying so, and what to run
    assert _runs(stack) == [], result.stdout
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot reach the broker" in result.stderr and "nothing was created or sent" in result.stderr
    assert "outreach send alert --now" in result.stderr
    assert "created" not in result.stdout
    # when the broker is back and the same command is run again, with workers running
    stack.redis.start()
    stack.services(workers=1)
    again = stack.cli("send", "alert", "--now", name="send-2")
    assert again.returncode == 0, again.stdout + again.stderr
    # then there is one run, and everyone got one email
    counts = stack.finish("`send --now` with the broker stopped, then run again once it is back",
                          "bug 2 fix: the broker is checked before anything is created", planned=N)
    assert counts.sent == N and len(_runs(stack)) == 1


def test_send_now_whose_broker_fails_while_queueing_is_reused_when_retried(stack):
    # given a campaign of 2,000 recipients and the broker up
    stack.configure()
    stack.add_people(N)
    # when the broker dies after the run was created, before its deliveries were queued
    # (the command is held while the run exists, the broker stopped, then it goes on)
    send = stack.procs.outreach("send", "alert", "--now", name="send-1")
    send.expected_exit = True
    wait_until(lambda: _runs(stack) != [] or send.poll() is not None, 30, "the run to be created", interval=0.005)
    os.kill(send.pid, signal.SIGSTOP)
    stack.redis.stop(keep_data=False)
    os.kill(send.pid, signal.SIGCONT)
    assert send.wait(60) == 1, stack.procs.log("send-1")
    output = stack.procs.log("send-1")
    # then it says what happened and what to run, in one line, without a traceback
    assert "Traceback" not in output
    assert "failed while queueing" in output and "reuses these runs" in output, output
    (run,) = _runs(stack)
    assert "send --now could not queue it" in run.note
    assert f"run(s) {run.id} exist with {N} deliveries; 0 were queued" in output, output
    assert stack.states() == {"pending": N}  # due now, not leased to a queue that lost them
    # when the broker is back and the operator runs the same command again
    stack.redis.start()
    again = stack.cli("send", "alert", "--now", name="send-2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"run {run.id}: alert/mail reused" in again.stdout
    # then no second run exists, and with workers everyone gets exactly one email
    stack.services(workers=1)
    counts = stack.finish("the broker stopped after `send --now` created its run, before queueing; the same "
                          "command run again once it is back", "bug 2 fix: the run is marked and reused, never "
                          "created twice", planned=N)
    assert counts.sent == N and counts.duplicates == 0
    ((_, status, note),) = _runs(stack)
    assert status == "done" and not note
