"""/metrics: Prometheus text that prometheus_client's own parser reads, with the numbers of a
real send (a worker's batch through a real SMTP server on loopback), behind its token; and
the alert rules and the Grafana dashboard under deploy/ name only metrics it serves."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.sender import send_batch
from outreach.web import create_app
from tests.channels.conftest import SmtpSink, _start

from ..conftest import BASE
from .conftest import TOKEN, admin_settings, make_run

ROOT = Path(__file__).resolve().parents[3]
METRICS = {"authorization": "Bearer " + "m" * 40}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) → value, as Prometheus would read it."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found, name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls)]
    assert matches, f"no sample {name}{labels}"
    return sum(matches)


@pytest.fixture
def sent_app(tmp_path, db_url, engine, redis_prefix, metrics_key):
    """An app, and a run of four of which a worker's batch sent three through a real SMTP server."""
    sink = SmtpSink()
    controller = _start(sink)
    settings = admin_settings(tmp_path, db_url, smtp_port=controller.port)
    app = create_app(settings, engine=engine, limiter_prefix=redis_prefix)
    rt = Runtime(settings, engine=engine)
    rt.__dict__["limiter"] = RateLimiter(rt.redis, key_prefix=f"{redis_prefix}:rl")
    run_id, ids = make_run(engine, 4, people=True)
    report = send_batch(rt, ids[:3])
    assert report.sent == 3 and len(sink.received) == 3
    yield app, run_id
    controller.stop()
    from outreach.channels import close_shared
    close_shared()
    rt.redis.close()
    app.state.site.runtime.redis.close()


def test_metrics_parse_and_count_a_real_send(sent_app):
    app, run_id = sent_app
    with TestClient(app, base_url=BASE) as client:
        answer = client.get("/metrics", headers=METRICS)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(answer.text)
    # the workers' counters: three sent by email, each with a round trip in the histogram
    assert value(found, "outreach_deliveries_total", channel="email", outcome="sent") == 3
    assert value(found, "outreach_send_seconds_count", channel="email") == 3
    assert value(found, "outreach_send_seconds_bucket", channel="email", le="+Inf") == 3
    assert 0 < value(found, "outreach_send_seconds_sum", channel="email") < 30
    # the snapshot's gauges: the run by state, the backlog, runs by status, queues, the lag
    assert value(found, "outreach_run_deliveries", run=str(run_id), state="sent") == 3
    assert value(found, "outreach_run_deliveries", run=str(run_id), state="pending") == 1
    assert value(found, "outreach_deliveries", channel="email", state="pending") == 1
    assert value(found, "outreach_runs", status="planned") == 1
    assert {"control", "email", "social"} <= {dict(ls)["queue"] for (n, ls) in found if n == "outreach_queue_depth"}
    assert value(found, "outreach_scheduler_lag_seconds") >= 0
    assert value(found, "outreach_ratelimit_paused", account="email:news") == 0
    # and the bounce and complaint ratios of what was sent: none came back
    assert value(found, "outreach_run_hard_bounce_ratio", run=str(run_id)) == 0
    assert value(found, "outreach_account_complaint_ratio", account="news") == 0


def test_provider_errors_are_counted_by_class_and_code(tmp_path, db_url, engine, redis_prefix, metrics_key):
    # given an SMTP server that refuses every recipient for good
    sink = SmtpSink()
    sink.rcpt_replies.update({"r0@example.org": "550 5.1.1 no such user", "r1@example.org": "550 5.1.1 no such user"})
    controller = _start(sink)
    try:
        settings = admin_settings(tmp_path, db_url, smtp_port=controller.port)
        rt = Runtime(settings, engine=engine)
        rt.__dict__["limiter"] = RateLimiter(rt.redis, key_prefix=f"{redis_prefix}:rl")
        _, ids = make_run(engine, 2, people=True)
        assert send_batch(rt, ids).failed == 2
        app = create_app(settings, engine=engine, limiter_prefix=redis_prefix)
        with TestClient(app, base_url=BASE) as client:
            found = samples(client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text)
        assert value(found, "outreach_provider_errors_total", channel="email", error="RecipientRejected",
                     code="550") == 2
        assert value(found, "outreach_deliveries_total", channel="email", outcome="failed") == 2
        app.state.site.runtime.redis.close()
        rt.redis.close()
    finally:
        controller.stop()
        from outreach.channels import close_shared
        close_shared()


def test_metrics_need_the_metrics_token_or_the_admin(sent_app):
    app, _ = sent_app
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer " + "x" * 40}).status_code == 401
        assert client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        # the metrics token opens nothing else
        assert client.get("/admin", headers=METRICS).status_code == 401


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\b(outreach_[a-z_]+)", expr))


def test_alert_rules_and_the_grafana_dashboard_use_only_served_metrics(sent_app):
    app, _ = sent_app
    with TestClient(app, base_url=BASE) as client:
        text = client.get("/metrics", headers=METRICS).text
    # every series a family declares, samples or not yet (a counter nothing has counted)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    served = {f.name + suffix for f in text_string_to_metric_families(text) for suffix in suffixes[f.type]}
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"OutreachRunStalled", "OutreachErrorRate", "OutreachUnknownOutcomes", "OutreachSchedulerLag"} <= {
        a["alert"] for a in alerts}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "outreach.json").read_text())
    exprs = [a["expr"] for a in alerts] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(_names(e) for e in exprs))
    assert used <= served, f"not served by /metrics: {sorted(used - served)}"
    for alert in alerts:
        assert alert["annotations"]["summary"] and alert.get("labels", {}).get("severity") in ("page", "warn")
