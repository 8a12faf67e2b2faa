"""A batch being sent when an operator pauses or cancels its run: the sender looks at the run
while feeding the channel, hands nothing more of it over, and holds the rest with the run."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outreach import delivery, store
from outreach.delivery import sender
from tests.delivery.conftest import add_people
from tests.delivery.test_dispatch import collect, drain, received_by, states


def _queued(rt, now):
    campaign = rt.campaigns()["alert"]
    run_id = delivery.create_run_now(rt, campaign, campaign.step("mail"), now)
    queued, enqueue = collect()
    delivery.dispatch_due(rt, enqueue, now)
    return run_id, [i for _, ids in queued for i in ids]


@pytest.mark.parametrize("smtp_server", [False], indirect=True, ids=["plain"])
@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_a_run_held_mid_batch_gets_nothing_more_handed_over(runtime, engine, smtp_server, monkeypatch, action):
    # given a batch of 10 being sent, and an operator who acts when the 3rd message arrives
    sink, _ = smtp_server
    monkeypatch.setattr(sender, "HOLD_CHECK_EVERY", 0.0)  # look before every message, not every 0.5 s
    add_people(engine, 10)
    now = datetime.now(UTC)
    run_id, ids = _queued(runtime, now)
    arrived = sink.handle_DATA

    async def act_on_third(server, session, envelope):
        reply = await arrived(server, session, envelope)
        if len(sink.received) == 3:
            if action == "pause":
                store.pause_run(engine, run_id, "stop")
            else:
                store.cancel_run(engine, run_id, "stop")
        return reply
    monkeypatch.setattr(sink, "handle_DATA", act_on_third)
    # when the worker sends the batch
    report = delivery.send_batch(runtime, ids, now=now)
    # then the three went out, and the other seven were never handed to the server but held
    assert len(sink.received) == 3 and report.sent == 3
    held = "paused" if action == "pause" else "cancelled"
    assert report.held == 7 and states(engine, run_id) == {"sent": 3, held: 7}
    rows = [store.get_delivery(engine, i) for i in ids]
    assert all(r.attempts == 0 for r in rows if r.state == held)  # the claim's attempt handed back
    if action == "cancel":
        assert all(e.kind == "cancelled" for r in rows if r.state == held
                   for e in store.delivery_events_of(engine, r.id))
        return
    # and once resumed, the seven go, each person receiving exactly one message
    assert store.resume_run(engine, run_id)
    drain(runtime, datetime.now(UTC))
    assert states(engine, run_id) == {"sent": 10}
    assert sorted(received_by(sink)) == sorted(f"person{i}@example.org" for i in range(10))


@pytest.mark.parametrize("smtp_server", [False], indirect=True, ids=["plain"])
def test_a_batch_queued_before_the_pause_sends_nothing(runtime, engine, smtp_server):
    # given a batch in the broker when its run is paused
    sink, _ = smtp_server
    add_people(engine, 5)
    now = datetime.now(UTC)
    run_id, ids = _queued(runtime, now)
    assert store.pause_run(engine, run_id, "hold on")
    # when a worker takes the task, then it claims and sends nothing
    report = delivery.send_batch(runtime, ids, now=now)
    assert report.claimed == 0 and sink.received == []
    assert states(engine, run_id) == {"paused": 5}
