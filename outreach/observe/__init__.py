"""What operators see: one `Snapshot` of runs, queues, workers, accounts and errors
(`outreach status`, the dashboard, /metrics all read one), the coming schedule, and the
heartbeat workers leave in Redis so they can be seen."""
from __future__ import annotations

from .schedule import Occurrence, Schedule, coming
from .snapshot import AccountState, QueueDepth, RunView, Snapshot, take
from .workers import WorkerSeen, heartbeat, workers_seen

__all__ = ["AccountState", "Occurrence", "QueueDepth", "RunView", "Schedule", "Snapshot", "WorkerSeen", "coming",
           "heartbeat", "take", "workers_seen"]
