"""/metrics: what Prometheus scrapes, in its text format (prometheus_client).

Read at scrape time, never kept in this process (any number of web processes serve the same
numbers): the gauges from one `observe.Snapshot` plus a count of runs by status, and the
send path's counters from Redis (telemetry.py: what every worker flushed there).

    outreach_deliveries{channel,state}                  active deliveries (pending, queued, sending, retry, paused)
    outreach_run_deliveries{run,campaign,step,status,state}   deliveries of each open run, by state
    outreach_run_sent_per_second{run,campaign,step}     over the last minute (see admin/progress.py)
    outreach_runs{status}                               runs by status
    outreach_queue_depth{queue}, outreach_queue_unacked messages in the broker
    outreach_workers, outreach_worker_last_seen_seconds{worker}
    outreach_ratelimit_remaining{account}, outreach_ratelimit_paused{account}
    outreach_scheduler_lag_seconds                      now minus the oldest due pending delivery
    outreach_campaigns_not_scheduled                    what the last tick left out (observe/unscheduled.py)
    outreach_deliveries_total{channel,outcome}          counters from the workers (telemetry)
    outreach_send_seconds{channel}                      the provider round trip (histogram)
    outreach_provider_errors_total{channel,error,code}
    outreach_ratelimit_waits_total{account}, outreach_ratelimit_pauses_total{account}

Behind the metrics token (or the admin's session or token): campaign names and queue
depths are not for everyone.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import telemetry
from ..models import RunStatus
from ..observe import Snapshot
from ..store.schema import runs
from .admin.dashboard import looks
from .admin.progress import Pace
from .pages import site_of
from .site import Site

# The text format every Prometheus 2.x and 3.x reads (newer clients label it 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WORKER_ALIVE = 60.0  # seconds: a worker seen this recently counts as up


class _Collected:
    """A one-scrape collector over what was read (prometheus_client asks `collect`)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def _runs_by_status(site: Site) -> dict[str, int]:
    with site.engine.connect() as conn:
        found: dict[str, int] = {str(s): int(n) for s, n in conn.execute(
            sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status))}
    return {str(s): int(found.get(s, 0)) for s in RunStatus}


def gather(site: Site) -> list[Metric]:
    snap, paces = looks(site).snapshot()
    metrics = _from_snapshot(snap, paces)
    g = GaugeMetricFamily("outreach_runs", "Runs by status.", labels=["status"])
    for status, n in _runs_by_status(site).items():
        g.add_metric([status], n)
    metrics.append(g)
    metrics += _from_telemetry(site)
    return metrics


def _from_snapshot(snap: Snapshot, paces: dict[int, Pace]) -> list[Metric]:
    out: list[Metric] = []
    g = GaugeMetricFamily("outreach_deliveries", "Active deliveries by channel and state.", labels=["channel", "state"])
    for b in snap.backlog:
        for state, n in sorted(b.states.items()):
            g.add_metric([b.channel, state], n)
    out.append(g)
    g = GaugeMetricFamily("outreach_run_deliveries", "Deliveries of each open or recent run, by state.",
                          labels=["run", "campaign", "step", "status", "state"])
    rate = GaugeMetricFamily("outreach_run_sent_per_second", "Sends per second of each open run, last minute.",
                             labels=["run", "campaign", "step"])
    for run in snap.runs:
        labels = [str(run.id), run.campaign, run.step]
        for state, n in sorted(run.counts.items()):
            g.add_metric([*labels, run.status, str(state)], n)
        p = paces.get(run.id)
        if p is not None and p.rate is not None:
            rate.add_metric(labels, p.rate)
    out += [g, rate]
    g = GaugeMetricFamily("outreach_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
    for q in snap.queues:
        g.add_metric([q.name], q.depth)
    out.append(g)
    if snap.unacked is not None:
        out.append(GaugeMetricFamily("outreach_queue_unacked", "Tasks workers took and have not acknowledged.",
                                     value=snap.unacked))
    alive = sum(1 for w in snap.workers if w.age <= WORKER_ALIVE)
    out.append(GaugeMetricFamily("outreach_workers", f"Worker processes seen in the last {WORKER_ALIVE:.0f} s.",
                                 value=alive))
    g = GaugeMetricFamily("outreach_worker_last_seen_seconds", "Seconds since each worker was last seen.",
                          labels=["worker"])
    for w in snap.workers:
        g.add_metric([w.worker], w.age)
    out.append(g)
    remaining = GaugeMetricFamily("outreach_ratelimit_remaining", "Sends each account may make right now.",
                                  labels=["account"])
    paused = GaugeMetricFamily("outreach_ratelimit_paused", "1 while an account is paused for every worker.",
                               labels=["account"])
    for a in snap.accounts:
        if a.permits_left is not None:
            remaining.add_metric([a.key], a.permits_left)
        paused.add_metric([a.key], 1 if a.paused_until is not None else 0)
    out += [remaining, paused]
    # what mailbox providers judge a sender by (and the circuit breaker a run by)
    for name, doc, of in (("run", "each open or recent run that sent", snap.rates.items()),
                          ("account", "each sending account over 30 days", snap.account_rates.items())):
        hard = GaugeMetricFamily(f"outreach_{name}_hard_bounce_ratio", f"Hard bounces over sent, {doc}.", labels=[name])
        complaints = GaugeMetricFamily(f"outreach_{name}_complaint_ratio", f"Complaints over sent, {doc}.",
                                       labels=[name])
        for key, r in of:
            if r.sent:
                hard.add_metric([str(key)], r.hard_bounce_rate)
                complaints.add_metric([str(key)], r.complaint_rate)
        out += [hard, complaints]
    out.append(GaugeMetricFamily("outreach_scheduler_lag_seconds",
                                 "Now minus the due time of the oldest pending delivery (0: none is late).",
                                 value=snap.scheduler_lag()))
    # no sample while no tick has recorded it lately: "unknown", not "none"
    left_out = GaugeMetricFamily("outreach_campaigns_not_scheduled",
                                 "Campaign files and schedules the scheduler's last tick left out.")
    if snap.not_scheduled is not None:
        left_out.add_metric([], len(snap.not_scheduled.problems))
    out.append(left_out)
    out.append(GaugeMetricFamily("outreach_snapshot_problems", "Parts of the system the snapshot could not read.",
                                 value=len(snap.problems)))
    return out


_COUNTERS = {
    "deliveries_total": ("outreach_deliveries", "Outcomes recorded by the workers, by channel.",
                         ["channel", "outcome"]),
    "provider_errors_total": ("outreach_provider_errors", "Errors the providers answered, by class and code.",
                              ["channel", "error", "code"]),
    "ratelimit_waits_total": ("outreach_ratelimit_waits", "Deliveries held back by the shared rate limit.",
                              ["account"]),
    "ratelimit_pauses_total": ("outreach_ratelimit_pauses", "Times an account was paused for every worker.",
                               ["account"]),
}


def _from_telemetry(site: Site) -> list[Metric]:
    families = {name: CounterMetricFamily(prom, doc, labels=labels) for name, (prom, doc, labels) in _COUNTERS.items()}
    buckets: dict[str, dict[str, float]] = defaultdict(dict)
    sums: dict[str, float] = {}
    for name, labels, value in telemetry.read(site.runtime.redis):
        if name in families:
            family = families[name]
            family.add_metric([labels.get(k, "") for k in _COUNTERS[name][2]], value)
        elif name == "send_seconds_bucket":
            buckets[labels.get("channel", "")][labels.get("le", "+Inf")] = value
        elif name == "send_seconds_sum":
            sums[labels.get("channel", "")] = value
    histogram = HistogramMetricFamily("outreach_send_seconds", "Provider round trip of each message.",
                                      labels=["channel"])
    for channel, counts in sorted(buckets.items()):
        cumulative, running = [], 0.0
        for bound in [*(repr(b) for b in telemetry.BUCKETS), "+Inf"]:
            running += counts.get(bound, 0.0)
            cumulative.append((bound, running))
        histogram.add_metric([channel], cumulative, sum_value=sums.get(channel, 0.0))
    return [*families.values(), histogram]


async def metrics(request: Request) -> Response:
    site = site_of(request)
    if not site.gate.may_read_metrics(request):
        return JSONResponse({"error": "send Authorization: Bearer <OUTREACH_METRICS_TOKEN>"}, status_code=401,
                            headers={"www-authenticate": 'Bearer realm="outreach metrics"'})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(await run_in_threadpool(gather, site)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE,
                    headers={"cache-control": "no-store"})


def routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics, methods=["GET"])]
