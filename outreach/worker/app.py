"""The Celery application: broker on Redis, three queues, one periodic tick.

Celery stays at the edge. Tasks are thin wrappers over outreach.delivery. Celery's own
`rate_limit` is per worker and is not used for provider limits (see ratelimit.py), and
no task carries a long countdown/ETA: on Redis those are redelivered after the
visibility timeout, so future work waits in the database as `due_at`.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging
from kombu.entity import Exchange, Queue

from ..channels import CHANNELS

# `control` carries the ticks; each channel's batches travel on the queue it names, so a slow
# or rate-limited channel never holds up another.
CHANNEL_QUEUES = frozenset(cls.queue for cls in CHANNELS.values())
QUEUES = ("control", *sorted(CHANNEL_QUEUES))


def make_app(broker_url: str | None = None, tick_seconds: float | None = None) -> Celery:
    if broker_url is None or tick_seconds is None:
        from ..settings import load_settings

        settings = load_settings(os.environ.get("OUTREACH_ROOT", "."))
        broker_url = broker_url or settings.redis_url
        tick_seconds = tick_seconds or settings.dispatch.tick_seconds
    app = Celery("outreach", broker=broker_url, include=["outreach.worker.tasks"])
    app.conf.update(
        # kombu leaves these constructors unannotated
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q)  # type: ignore[no-untyped-call]
                     for q in QUEUES],
        task_default_queue="control",
        task_routes={"outreach.tick": {"queue": "control"}, "outreach.plan_run": {"queue": "control"}},
        # A task is acknowledged only after it ran: a killed worker's batch is redelivered,
        # and the ledger's claim makes the second delivery harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport_options={"visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={"tick": {"task": "outreach.tick", "schedule": tick_seconds,
                                "options": {"queue": "control", "expires": tick_seconds * 2}}},
        timezone="UTC",
    )
    return app


@setup_logging.connect  # type: ignore[untyped-decorator]
def _json_logs(**_: object) -> None:
    """Celery's processes (worker, its pool, beat) log JSON lines like every outreach process,
    at the level of the settings (`log_level`; `outreach worker -l` sets it through
    OUTREACH_LOG_LEVEL), instead of Celery's own format and level."""
    from ..logs import configure
    from ..settings import load_settings

    configure(load_settings(os.environ.get("OUTREACH_ROOT", ".")).log_level)


_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    """`celery -A outreach.worker.app` looks up `app`: build it on first use, so importing
    this module (tests, `outreach --help`) reads no settings."""
    global _app
    if name == "app":
        if _app is None:
            _app = make_app()
        return _app
    raise AttributeError(name)
