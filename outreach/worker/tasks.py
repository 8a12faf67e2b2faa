"""Celery tasks: thin wrappers over dispatch.py, one Runtime per worker process."""
from __future__ import annotations

import logging
import os

from celery import shared_task
from celery.signals import worker_process_shutdown

from ..delivery import dispatch
from .app import CHANNEL_QUEUE

log = logging.getLogger(__name__)
_runtime = None
_runtime_pid = None


def runtime():
    """This process's Runtime (rebuilt after a fork: connections must not cross processes)."""
    global _runtime, _runtime_pid
    if _runtime is None or _runtime_pid != os.getpid():
        from ..delivery.runtime import Runtime
        from ..devtools.sandbox import runtime_options
        from ..settings import load_settings

        settings = load_settings(os.environ.get("OUTREACH_ROOT", "."))
        _runtime, _runtime_pid = Runtime(settings, **runtime_options()), os.getpid()
    return _runtime


def enqueue(channel: str, ids: list[int]) -> None:
    send_batch.apply_async(args=[ids], queue=CHANNEL_QUEUE[channel])


@shared_task(name="outreach.tick", ignore_result=True)
def tick() -> dict:
    report = dispatch.tick(runtime(), enqueue)
    if report.created or report.queued:
        log.info("tick: %s runs created, %s skipped, queued %s", len(report.created), len(report.skipped),
                 report.queued)
    return {"created": len(report.created), "queued": report.queued}


# A throttled batch due again within this many seconds is queued again for that moment (a
# short countdown, far below the broker's visibility timeout); a longer wait is left to the tick.
RESCHEDULE_WITHIN = 60.0


@shared_task(name="outreach.send_batch", ignore_result=True, acks_late=True, bind=True)
def send_batch(self, ids: list[int]) -> dict:
    report = dispatch.send_batch(runtime(), ids)
    if report.deferred_ids and report.retry_after <= RESCHEDULE_WITHIN:
        # Ask again as soon as the limiter frees permits. Left to the tick, the rows wait for
        # the first tick after that moment, which comes a whole tick late whenever the limit's
        # period matches the tick (measured: a 20/1s limit with a 1 s tick sent 10/s).
        queue = (self.request.delivery_info or {}).get("routing_key") or CHANNEL_QUEUE["email"]
        send_batch.apply_async(args=[report.deferred_ids], queue=queue, countdown=report.retry_after)
    return report.__dict__


@worker_process_shutdown.connect
def _close_channels(**_: object) -> None:
    from ..channels import close_shared

    close_shared()
