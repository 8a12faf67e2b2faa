"""Celery tasks: thin wrappers over outreach.delivery, one Runtime per worker process."""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import shared_task
from celery.signals import worker_process_shutdown

from .. import delivery
from ..channels import channel_class
from ..logs import bound

if TYPE_CHECKING:
    from ..delivery.runtime import Runtime

log = logging.getLogger(__name__)
_runtime: Runtime | None = None
_runtime_pid: int | None = None


def runtime() -> Runtime:
    """This process's Runtime (rebuilt after a fork: connections must not cross processes)."""
    global _runtime, _runtime_pid
    if _runtime is None or _runtime_pid != os.getpid():
        from ..delivery.runtime import Runtime
        from ..settings import load_settings

        settings = load_settings(os.environ.get("OUTREACH_ROOT", "."))
        _runtime, _runtime_pid = Runtime(settings), os.getpid()
    return _runtime


def enqueue(channel: str, ids: list[int]) -> None:
    send_batch.apply_async(args=[ids], queue=channel_class(channel).queue)


# celery has no type hints: its decorators are Any to mypy
def _seen(rt: Runtime, queue: str) -> None:
    """Leave this process's heartbeat (at most every few seconds): `outreach status` lists
    the workers seen, when last, and the queues each consumes. Those are the worker's `-Q`
    (Celery selects them before the pool forks), not the queue of the task at hand: a worker
    on email and control whose last task was a tick still serves email."""
    from celery import current_app

    from ..observe.workers import heartbeat

    consumed = set(current_app.amqp.queues.consume_from) | {queue}
    heartbeat(rt.redis, rt.worker_id, sorted(consumed))


@shared_task(name="outreach.tick", ignore_result=True)  # type: ignore[untyped-decorator]
def tick() -> dict[str, Any]:
    rt = runtime()
    _seen(rt, "control")
    report = delivery.tick(rt, enqueue)
    if report.created or report.queued:
        log.info("tick: %s runs created, %s skipped, queued %s", len(report.created), len(report.skipped),
                 report.queued, extra={"event": "tick", "runs_created": report.created, "runs_skipped": report.skipped,
                                       "queued": report.queued})
    return {"created": len(report.created), "queued": report.queued}


# A throttled batch due again within this many seconds is queued again for that moment (a
# short countdown, far below the broker's visibility timeout); a longer wait is left to the tick.
RESCHEDULE_WITHIN = 60.0


@shared_task(name="outreach.send_batch", ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def send_batch(ids: list[int]) -> dict[str, Any]:
    rt = runtime()
    _seen(rt, (send_batch.request.delivery_info or {}).get("routing_key") or "?")
    with _stop_after_batch(rt), bound(batch=send_batch.request.id):
        report = delivery.send_batch(rt, ids)
    if report.deferred_ids and report.retry_after <= RESCHEDULE_WITHIN:
        # Ask again as soon as the limiter frees permits. Left to the tick, the rows wait for
        # the first tick after that moment, which comes a whole tick late whenever the limit's
        # period matches the tick (measured: a 20/1s limit with a 1 s tick sent 10/s).
        send_batch.apply_async(args=[report.deferred_ids], queue=channel_class(report.channel).queue,
                               countdown=report.retry_after)
    return report.__dict__


@contextmanager
def _stop_after_batch(rt: Runtime) -> Iterator[None]:
    """SIGTERM while a batch is being sent (systemd stops a service's whole control group,
    pool processes included, not only Celery's main process, which would wait): the batch
    hands nothing more to its channel, gives the rest back unsent and settles what is in
    flight; then the signal takes its usual course (billiard's handler ends the process).
    Without this, that handler raises SystemExit mid-send and what was on the wire is lost
    to `unknown`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (a thread pool cannot do this)
        return
    rt.stopping.clear()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: rt.stopping.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if rt.stopping.is_set():
            os.kill(os.getpid(), signal.SIGTERM)


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_channels(**_: object) -> None:
    from ..channels import close_shared

    close_shared()
