"""Delivery: when steps are due (scheduling), their runs and deliveries (planner), queueing
due deliveries (dispatcher), sending a batch (sender), global rate limits (ratelimit), and
the per-process Runtime they share. Plain functions over the store and the channels:
Celery calls them (worker/tasks.py), and so do the CLI and the tests, without a worker."""
from .dispatcher import dispatch_due, tick
from .planner import TickReport, create_run_now, plan_run, schedule_runs
from .sender import BatchReport, send_batch

__all__ = ["BatchReport", "TickReport", "create_run_now", "dispatch_due", "plan_run", "schedule_runs",
           "send_batch", "tick"]
