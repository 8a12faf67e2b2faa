"""One campaign that fails in the scheduler is recorded and reported; every other campaign is
still scheduled and planned in the same tick. `outreach status` shows what is not scheduled."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from outreach import delivery
from outreach.authoring.campaigns import Schedule
from outreach.cli import Context, cli
from outreach.delivery import planner
from outreach.delivery.runtime import Runtime
from outreach.store.schema import deliveries, runs
from tests.delivery.conftest import add_people


def due_now(project) -> datetime:
    """Make `alert` due a minute ago, and add a second campaign `other` like it."""
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    text = ((project.root / "config/campaigns/alert.yaml").read_text()
            .replace("at: 2030-01-15 09:00", f"at: {at:%Y-%m-%d %H:%M}").replace("Europe/Paris", "UTC"))
    project.write("config/campaigns/alert.yaml", text)
    project.write("config/campaigns/other.yaml", text.replace("name: alert", "name: other"))
    return at


def slipped_past_validate(rt: Runtime, name: str, **changes) -> None:
    """Put into the running catalog a campaign that validate would refuse: what the tick must
    survive (an old validator, a croniter upgrade, a file changed between checks)."""
    catalog = rt.campaigns()
    campaign = catalog[name]
    step = campaign.steps[0].model_copy(update=changes)
    catalog[name] = campaign.model_copy(update={"steps": [step, *campaign.steps[1:]]})
    rt.catalog.min_interval = 1e9  # no re-read: keep what we put in


def created(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {f"{c}/{s}": status for c, s, status in conn.execute(sa.select(runs.c.campaign, runs.c.step,
                                                                                runs.c.status))}


def test_a_cron_that_never_occurs_stops_only_its_own_campaign(runtime, engine, project, redis_client, caplog):
    # given two campaigns due now, one of them with a cron date that never comes (February 31)
    due_now(project)
    add_people(engine, 3)
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    never = Schedule.model_construct(cron="0 9 31 2 *", timezone="UTC", delay=timedelta(0), local_time=False,
                                     at=None, after=None, start=None, end=None)
    slipped_past_validate(rt, "other", schedule=never)
    # when one tick runs
    with caplog.at_level(logging.ERROR, logger="outreach.delivery.planner"):
        report = delivery.schedule_runs(rt, datetime.now(UTC) + timedelta(minutes=6))
    # then the healthy campaign's runs were created and planned (3 emails and 1 post)...
    assert created(engine) == {"alert/mail": "planned", "alert/post": "planned"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar() == 4
    # ...and the broken one is reported and logged, by name
    assert list(report.failed) == ["other"] and "CroniterBadDateError" in report.failed["other"]
    assert any("campaign other not scheduled" in r.getMessage() for r in caplog.records)
    # and the status check finds it too, without writing anything
    assert "other" in planner.schedule_problems(rt, datetime.now(UTC))


def test_a_run_that_cannot_be_planned_leaves_the_others_planned(runtime, engine, project, redis_client):
    # given a campaign whose first step names an account that no longer exists
    due_now(project)
    add_people(engine, 2)
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    slipped_past_validate(rt, "other", account="gone")
    # when one tick runs
    report = delivery.schedule_runs(rt, datetime.now(UTC) + timedelta(minutes=6))
    # then everything else is planned; the failing run waits in `planning` (retried when stuck)
    assert created(engine) == {"alert/mail": "planned", "alert/post": "planned", "other/mail": "planning",
                               "other/post": "planned"}
    assert "unknown email account 'gone'" in report.failed["other"]


def test_status_lists_the_campaigns_that_are_not_scheduled(runtime, engine, project):
    # given a campaign file the scheduler leaves out (seven cron fields: a run every second)
    project.write("config/campaigns/flood.yaml", (project.root / "config/campaigns/alert.yaml").read_text()
                  .replace("name: alert", "name: flood")
                  .replace("at: 2030-01-15 09:00", 'cron: "* * * * * * *"'))
    # when an operator asks for the status
    result = CliRunner().invoke(cli, ["status"], obj=Context.of(project.settings()))
    # then it says which file, line and field keeps it from being scheduled
    assert result.exit_code == 0, result.output
    assert "not scheduled" in result.output
    assert "campaigns/flood.yaml:11: [steps[0].schedule.cron]" in result.output


def test_status_shows_what_the_last_tick_left_out_and_when(engine, project, redis_client):
    # given a campaign file the scheduler leaves out, and a tick (as the beat's) that found it
    flood = (project.root / "config/campaigns/alert.yaml").read_text().replace("name: alert", "name: flood")
    project.write("config/campaigns/flood.yaml", flood.replace("at: 2030-01-15 09:00", 'cron: "* * * * * * *"'))
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    delivery.tick(rt, lambda channel, ids: None)
    # and the file fixed since, before any other tick
    (project.root / "config/campaigns/flood.yaml").unlink()
    # when an operator asks for the status
    status = CliRunner().invoke(cli, ["status"], obj=Context.of(project.settings()))
    # then it shows what that tick found, and when, without validating every campaign again
    assert status.exit_code == 0, status.output
    assert "not scheduled at the tick of" in status.output
    assert "campaigns/flood.yaml:11: [steps[0].schedule.cron]" in status.output
    # and once the next tick has looked, nothing is listed
    delivery.tick(Runtime(project.settings(), engine=engine, redis=redis_client), lambda channel, ids: None)
    status = CliRunner().invoke(cli, ["status", "--json"], obj=Context.of(project.settings()))
    assert json.loads(status.output)["not_scheduled"]["problems"] == []


def test_a_garbled_or_lost_record_and_status_works_it_out_itself(engine, project, redis_client):
    from outreach.observe import unscheduled

    # given a campaign file the scheduler leaves out, and the tick's record of it
    flood = (project.root / "config/campaigns/alert.yaml").read_text().replace("name: alert", "name: flood")
    project.write("config/campaigns/flood.yaml", flood.replace("at: 2030-01-15 09:00", 'cron: "* * * * * * *"'))
    rt = Runtime(project.settings(), engine=engine, redis=redis_client)
    delivery.tick(rt, lambda channel, ids: None)
    key = unscheduled._key(engine)
    for damage in (lambda: redis_client.set(key, b"\xff not json"), lambda: redis_client.delete(key)):
        # when the record is garbled, or gone with a flushed Redis
        damage()
        status = CliRunner().invoke(cli, ["status"], obj=Context.of(project.settings()))
        # then status validates the campaigns itself and still names the file
        assert status.exit_code == 0, status.output
        assert "not scheduled (fix these" in status.output and "at the tick of" not in status.output
        assert "campaigns/flood.yaml:11: [steps[0].schedule.cron]" in status.output
