"""Workers that die or are stopped mid-batch: nothing is lost, nothing is sent twice."""
from __future__ import annotations

import signal

from tests.reliability.harness import scale, stop_process, wait_until

N = scale(1500, 6000)


def test_worker_sigkilled_mid_batch_three_times(stack):
    # given 1,500 recipients, batches of 20, a short lease, and two workers of two processes each
    stack.configure(dispatch="{batch_size: 20, lease: 5s, backoff_base: 1s, max_attempts: 8}")
    stack.sink.delay = 0.001
    stack.add_people(N)
    stack.services(workers=2, separate_control=True)
    stack.send_now()
    # when a worker is killed outright (SIGKILL, its pool too) at a quarter, half and three
    # quarters of the way, a new one taking its place each time
    for i, share in enumerate((0.25, 0.5, 0.75)):
        victim = next(p for p in stack.procs.started if p.poll() is None and "worker-" in p.name)
        stack.worker(f"worker-new-{i}")  # booting meanwhile
        stack.wait_received(int(N * share))
        victim.expected_exit = True
        stop_process(victim, signal.SIGKILL)
        victim.wait(10)
    # then every delivery ends sent or unknown (the batch a killed process held: it may have
    # left), nobody got a message twice, nothing recorded sent is missing
    counts = stack.finish("a worker SIGKILLed at 25%, 50% and 75% of the run, replaced each time",
                          "lease expiry requeues lost batches (design); unknown = the killed processes' batches")
    assert counts.sent + counts.unknown == N
    # and the unknown are at most what three killed workers (two processes each) held
    assert counts.unknown <= 3 * 2 * 20


def test_worker_sigterm_finishes_its_batch(stack):
    # given a run under way on three workers
    stack.configure(dispatch="{batch_size: 100, lease: 5s, backoff_base: 1s, max_attempts: 8}")
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=3, separate_control=True)
    stack.send_now()
    first, second = (next(p for p in stack.procs.started if p.name == f"worker-{i}") for i in (0, 1))
    stack.wait_received(N // 4)
    # when one is stopped with SIGTERM to its main process (warm shutdown, as `docker stop` does)
    first.expected_exit = True
    stop_process(first, signal.SIGTERM, group=False)
    # and another one's whole process group gets SIGTERM (as systemd's default KillMode does)
    wait_until(lambda: stack.sink.count >= N // 2, 60, "half of the run", stack.procs, interval=0.02)
    second.expected_exit = True
    stop_process(second, signal.SIGTERM)
    first.wait(60)
    second.wait(60)
    # then the batches in hand were finished or given back: nothing unknown, nothing twice
    counts = stack.finish("SIGTERM to a worker's main process (warm shutdown), then to another worker's whole "
                          "process group", "issue 12: a pool process told to stop gives the rest of its batch back")
    assert counts.sent == N and counts.unknown == 0


def test_a_worker_without_the_secret_key(stack):
    # given a run, a worker that can sign links and one started without OUTREACH_SECRET_KEY
    # (by Celery's own command: `outreach worker` refuses to start without it)
    stack.configure(dispatch="{batch_size: 50, lease: 5s, backoff_base: 1s, max_attempts: 8}")
    stack.add_people(N)
    keyless = {k: v for k, v in stack.project.env.items() if k != "OUTREACH_SECRET_KEY"}
    bad = stack.worker("keyless", queues="email,social", env=keyless, celery=True)
    stack.services(workers=1)
    stack.send_now()
    # when the keyless one has taken batches (and given them back), and is then stopped
    wait_until(lambda: "OUTREACH_SECRET_KEY" in stack.procs.log("keyless"), 60, "the keyless worker to take a batch",
               stack.procs)
    bad.expected_exit = True
    stop_process(bad, signal.SIGTERM, group=False)
    # then nothing it took became unknown or spent an attempt: everyone got one message
    counts = stack.finish("a worker started without OUTREACH_SECRET_KEY takes batches next to a good one, then is "
                          "stopped", "bug 1 fix: its batches are given back unsent, the attempt not counted")
    assert counts.sent == N and counts.unknown == 0
    assert set(stack.attempts()) == {1}
