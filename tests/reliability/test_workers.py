"""Workers that die or are stopped mid-batch: nothing is lost, nothing is sent twice."""
from __future__ import annotations

import signal

from tests.reliability.harness import scale, stop_process, wait_until

N = scale(2000, 6000)


def test_worker_sigkilled_mid_batch_three_times(stack):
    # given 2,000 recipients, batches of 20, a short lease, and two workers of two processes each
    stack.configure(dispatch="{batch_size: 20, lease: 5s, backoff_base: 1s, max_attempts: 8}")
    stack.sink.delay = 0.001
    stack.add_people(N)
    stack.services(workers=2, separate_control=True)
    stack.send_now()
    # when a worker is killed outright (SIGKILL, its pool too) at a quarter, half and three
    # quarters of the way, a new one taking its place each time
    for i, share in enumerate((0.25, 0.5, 0.75)):
        stack.wait_received(int(N * share))
        victim = next(p for p in stack.procs.started if p.poll() is None and "worker-" in p.name)
        victim.expected_exit = True
        stop_process(victim, signal.SIGKILL)
        victim.wait(10)
        stack.worker(f"worker-new-{i}")
    # then every delivery ends sent or unknown (the batch a killed process held: it may have
    # left), nobody got a message twice, nothing recorded sent is missing
    counts = stack.finish("a worker SIGKILLed at 25%, 50% and 75% of the run, replaced each time",
                          "lease expiry requeues lost batches (design); unknown = the killed processes' batches")
    assert counts.sent + counts.unknown == N
    # and the unknown are at most what three killed workers (two processes each) held
    assert counts.unknown <= 3 * 2 * 20


def test_worker_sigterm_finishes_its_batch(stack):
    # given a run under way on one worker
    stack.configure(dispatch="{batch_size: 100, lease: 5s, backoff_base: 1s, max_attempts: 8}")
    stack.sink.delay = 0.002
    stack.add_people(N)
    stack.services(workers=1, separate_control=True)
    stack.send_now()
    stack.wait_received(N // 4)
    # when it is stopped with SIGTERM to its main process (warm shutdown, as `docker stop` does)
    first = next(p for p in stack.procs.started if p.name == "worker-0")
    first.expected_exit = True
    stop_process(first, signal.SIGTERM, group=False)
    first.wait(60)
    # and its whole process group gets SIGTERM while a second worker is busy (as systemd's
    # default KillMode does), before a third takes over
    second = stack.worker("worker-1")
    wait_until(lambda: stack.sink.count >= N // 2, 60, "half of the run", stack.procs, interval=0.02)
    second.expected_exit = True
    stop_process(second, signal.SIGTERM)
    second.wait(60)
    stack.worker("worker-2")
    # then the batches in hand were finished or given back: nothing unknown, nothing twice
    counts = stack.finish("SIGTERM to a worker's main process (warm shutdown), then to a second worker's whole "
                          "process group", "bug 1 fix: a pool process stops feeding and gives its batch back")
    assert counts.sent == N and counts.unknown == 0
