"""The circuit breaker on a real database: a run whose complaint or hard-bounce rate crosses
the thresholds of settings (here: after 4 sent, 25% complaints, 50% hard bounces) pauses
itself, holds what it has not sent, and says why in `outreach status` and the log."""
from __future__ import annotations

import logging
import re

from outreach.bounces.apply import ingest
from outreach.bounces.breaker import verdict
from outreach.delivery.sender import send_batch
from outreach.observe.snapshot import take
from outreach.settings import load_settings
from outreach.store import get_run, run_progress
from outreach.store.feedback import Rates

from . import corpus
from .conftest import person

PEOPLE = [f"p{i}@example.org" for i in range(6)]


def test_a_run_crossing_the_complaint_threshold_pauses_itself_and_says_why(world, caplog):
    for address in PEOPLE:
        person(world.engine, address)
    run = world.plan("letter")
    ids = world.delivery_ids(run)
    # given a run that has sent 4 of its 6 messages
    send_batch(world.rt, ids[:4])
    sent = [a for a in PEOPLE if world.received(a)]
    assert len(sent) == 4
    # when one of them complains (1 of 4: 25%)
    ((return_path, _),) = world.received(sent[0])
    with caplog.at_level(logging.ERROR, logger="outreach.bounces.breaker"):
        _, (outcome,) = ingest(world.engine, world.rt.settings, corpus.arf_complaint(return_path, sent[0]))
    # then the run is paused, saying why, and the log says it too
    assert outcome.paused and "complaints reached 25.00%" in outcome.paused
    row = get_run(world.engine, run)
    assert row.status == "paused" and "circuit breaker" in row.reason
    assert any(f"run {run} paused" in r.getMessage() for r in caplog.records)
    # and what it had not sent stays unsent
    report = send_batch(world.rt, ids[4:])
    assert report.sent == 0 and run_progress(world.engine, run)["sent"] == 4
    # and `outreach status` shows the pause with its reason and the run's rates
    shown = world.cli("status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert f"run {run} paused: circuit breaker: complaints reached 25.00%" in text
    assert re.search(rf"run {run} +│ +4 │ +0 \(0.00%\) │ +0 │ +1 \(25.00%\)", text), text
    assert re.search(r"account news \(30 days\) +│ +4 │ +0 \(0.00%\) │ +0 │ +1 \(25.00%\)", text), text
    assert "circuit breaker: a run pauses at 50.00% hard bounces or 25.00% complaints once it has sent 4" in text
    # and the snapshot the dashboard and /metrics read carries the same rates
    snapshot = take(world.rt.settings, world.engine, world.rt.redis, run_id=run)
    assert snapshot.rates[run].complaints == 1 and snapshot.rates[run].complaint_rate == 0.25
    assert snapshot.account_rates["news"].sent == 4
    assert '"complaint_rate": 0.25' in snapshot.to_json()


def test_below_the_minimum_sent_nothing_pauses(world):
    for address in PEOPLE[:3]:
        person(world.engine, address)
    run = world.plan("letter")
    send_batch(world.rt, world.delivery_ids(run)[:3])
    for address in PEOPLE[:3]:
        ((return_path, _),) = world.received(address)
        _, (outcome,) = ingest(world.engine, world.rt.settings, corpus.postfix_user_unknown(return_path, address))
        assert outcome.paused is None
    assert get_run(world.engine, run).status != "paused"


def test_the_default_thresholds(tmp_path):
    # 5% hard bounces or 0.1% complaints, once 500 were sent
    settings = load_settings(tmp_path, environ={})
    assert verdict(settings, Rates(sent=499, hard_bounces=499)) is None
    assert verdict(settings, Rates(sent=1000, hard_bounces=49, complaints=0)) is None
    assert "hard bounces reached 5.00%" in verdict(settings, Rates(sent=1000, hard_bounces=50))
    assert verdict(settings, Rates(sent=2000, complaints=1)) is None
    assert "complaints reached 0.10%" in verdict(settings, Rates(sent=2000, complaints=2))


def test_a_run_far_below_the_thresholds_is_not_recounted_for_each_bounce(world, monkeypatch):
    from outreach.bounces import breaker

    monkeypatch.setattr(breaker, "_last", {})
    people = [f"q{i}@example.org" for i in range(10)]
    for address in people:
        person(world.engine, address)
    run = world.plan("letter")
    send_batch(world.rt, world.delivery_ids(run)[:8])
    paths = {a: world.received(a)[0][0] for a in people if world.received(a)}

    def bounce(address):
        ingest(world.engine, world.rt.settings, corpus.postfix_user_unknown(paths[address], address))

    sent = list(paths)
    # one hard bounce of 8: 12.5%, a quarter of the 50% threshold: counted once, then left alone
    bounce(sent[0])
    assert run in breaker._last
    # so three more within RECHECK_AFTER are not counted (the price of not recounting a big run
    # for every bounce), and the run goes on
    for address in sent[1:4]:
        bounce(address)
    assert get_run(world.engine, run).status == "planned"
    # once RECHECK_AFTER has passed, the next one counts again: 5 of 8 pauses it
    monkeypatch.setattr(breaker, "RECHECK_AFTER", 0.0)
    bounce(sent[4])
    row = get_run(world.engine, run)
    assert row.status == "paused" and "hard bounces reached 62.50%" in row.reason


def test_an_accounts_rate_counts_a_finished_run_once_and_keeps_its_counts(world):
    # given a run that sent to four people and finished
    import sqlalchemy as sa

    from outreach.models import RunStatus
    from outreach.store.feedback import account_rates
    from outreach.store.schema import runs

    for address in PEOPLE[:4]:
        person(world.engine, address)
    run = world.send("letter")
    assert RunStatus(get_run(world.engine, run).status).finished
    # when the account's rates are read (the status page, the dashboard, /metrics)
    since = get_run(world.engine, run).created_at
    assert account_rates(world.engine, since)["news"].sent == 4
    # then the finished run's counts were kept, so the next look reads one row instead of
    # counting its deliveries again (on a ledger of millions, a month of runs)
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(runs.c.counts).where(runs.c.id == run)).scalar() == {"sent": 4}
    assert account_rates(world.engine, since)["news"].sent == 4
