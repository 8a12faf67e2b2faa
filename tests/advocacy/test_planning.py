"""Audiences by action and by distance, through the real planner, sender and SMTP server:
the reminder skips who clicked "I sent it" (before and after it was planned), the tour
invitation goes only to subscribers within the radius of a stop, at their local time, the
day-before reminder to the same people, and quiet hours hold an email until morning."""
from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis as redis_lib
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.testclient import TestClient

from outreach.channels import SmtpChannel
from outreach.cli import cli
from outreach.content.links import ACT
from outreach.delivery import create_run_now
from outreach.delivery.planner import plan_run
from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.scheduling import now_utc, occurrences
from outreach.delivery.sender import send_batch
from outreach.store import add_subscriber, create_run, get_subscriber, load_for_sending
from outreach.store.schema import deliveries
from outreach.web import create_app
from tests.channels.conftest import SmtpSink, _start
from tests.web.conftest import BASE, REDIS_TEST_URL, csrf_of, path_of, write_project

from .conftest import write_advocacy


@pytest.fixture
def world(tmp_path, db_url, engine, redis_prefix):
    sink = SmtpSink()
    controller = _start(sink)
    env = {"OUTREACH_SECRET_KEY": "adv-secret", "OUTREACH_DATABASE_URL": db_url, "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    project = write_advocacy(write_project(tmp_path, env, smtp_port=controller.port))
    settings = project.settings()
    redis = redis_lib.Redis.from_url(REDIS_TEST_URL)
    rt = Runtime(settings, engine=engine, redis=redis)
    rt.__dict__["limiter"] = RateLimiter(redis, key_prefix=f"{redis_prefix}:rl")
    app = create_app(settings, engine=engine, redis=redis, limiter_prefix=redis_prefix)
    yield rt, app, sink, project
    from outreach.channels import close_shared
    close_shared()
    redis.close()
    controller.stop()


def join(engine, email: str, city: str, country: str = "US", **fields) -> int:
    """A supporter placed as `outreach subscribers import` places them (from the city)."""
    from outreach.subscribers.csvfile import place
    from outreach.subscribers.fields import make_subscriber

    sub = place(make_subscriber({"email": email, "city": city, "country": country, **fields}))
    extra = {k: str(v) for k in ("region", "timezone", "latitude", "longitude") if (v := getattr(sub, k)) is not None}
    return add_subscriber(engine, email, city=city, country=country, tags=["supporter"],
                          **{**extra, **{k: v for k, v in fields.items() if k not in extra}})


def planned(engine, run_id: int) -> dict[str, datetime]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.recipient, deliveries.c.due_at).where(deliveries.c.run_id == run_id))
        return {r.recipient: r.due_at for r in rows}


def click_sent(app, engine, email: str) -> None:
    who = get_subscriber(engine, email)
    path = path_of(app.state.site.signer.url(ACT, who.link_id, "cta")) + "/sent_letter"
    with TestClient(app, base_url=BASE) as browser:
        page = browser.get(path)
        assert browser.post(path, data={"csrf": csrf_of(page.text)}).status_code == 200


def test_the_reminder_skips_who_clicked_i_sent_it_before_and_after_planning(world, engine):
    rt, app, sink, _ = world
    join(engine, "tex@example.org", "Dallas")
    join(engine, "den@example.org", "Denver")
    join(engine, "sea@example.org", "Seattle")
    campaign = rt.campaigns()["cta"]
    # given Denver clicked "I sent it" before the reminder is planned
    click_sent(app, engine, "den@example.org")
    now = now_utc()
    reminder = create_run_now(rt, campaign, campaign.step("reminder"), now, due_at=now)
    thanks = create_run_now(rt, campaign, campaign.step("thanks"), now, due_at=now)
    # then the reminder is planned for the other two, the thank-you for Denver only
    assert set(planned(engine, reminder)) == {"tex@example.org", "sea@example.org"}
    assert set(planned(engine, thanks)) == {"den@example.org"}
    # when Dallas clicks after the reminder was planned, and the reminder goes out
    click_sent(app, engine, "tex@example.org")
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == reminder)).scalars())
    report = send_batch(rt, ids)
    # then only Seattle gets it
    assert (report.sent, report.skipped) == (1, 1)
    assert [r.rcpt_tos for r in sink.received] == [["sea@example.org"]]
    # and it names Seattle's office: no office here serves WA, so the nearest US one
    message = email.message_from_bytes(sink.received[0].data, policy=email.policy.default)
    assert "Consulate chicago@example.gov" in message.get_body(("html",)).get_content()


def test_the_tour_invitation_goes_only_to_subscribers_near_a_stop_at_their_local_time(world, engine):
    rt, _, _, _ = world
    join(engine, "dallas@example.org", "Dallas")
    join(engine, "fortworth@example.org", "Fort Worth")         # 50 km from the Dallas stop
    join(engine, "evanston@example.org", "Evanston", timezone="America/New_York")  # near Chicago, NY clock
    join(engine, "denver@example.org", "Denver")                # beyond every stop
    join(engine, "seoul@example.org", "Seoul", country="KR")
    campaign = rt.campaigns()["cta"]
    invite, livestream = campaign.step("invite"), campaign.step("livestream")
    occurrence = datetime(2030, 3, 1, 15, 0, tzinfo=UTC)  # 10:00 in New York
    run = create_run(engine, "cta", "invite", occurrence)
    plan_run(rt, run)
    due = planned(engine, run)
    # then only those within 150 km of a stop are invited, each at 10:00 in their own zone
    assert set(due) == {"dallas@example.org", "fortworth@example.org", "evanston@example.org"}
    assert due["dallas@example.org"] == datetime(2030, 3, 1, 16, 0, tzinfo=UTC)     # 10:00 CST
    assert due["evanston@example.org"] == datetime(2030, 3, 1, 15, 0, tzinfo=UTC)   # 10:00 EST
    # and the others get the livestream step instead
    stream = create_run(engine, "cta", "livestream", occurrence)
    plan_run(rt, stream)
    assert set(planned(engine, stream)) == {"denver@example.org", "seoul@example.org"}
    # and the invitation names the nearest stop, at the venue's time and at the reader's
    who = load_for_sending(engine, [get_subscriber(engine, "evanston@example.org").id])
    mail = SmtpChannel.compose(rt.composer, campaign, invite, next(iter(who.values())).subscriber)
    assert mail.subject == "Chicago"
    assert "Center: Tuesday, March 12, 7:00 PM CDT / Tuesday, March 12, 8:00 PM EDT" in mail.html
    # the Dallas stop had no coordinates nor zone in the file: placed from its city
    dallas = load_for_sending(engine, [get_subscriber(engine, "fortworth@example.org").id])
    mail = SmtpChannel.compose(rt.composer, campaign, invite, next(iter(dallas.values())).subscriber)
    assert mail.subject == "Dallas" and "Sunday, March 10, 6:00 PM CDT" in mail.html
    assert livestream.audience.near_event is False


def test_the_day_before_reminder_goes_to_the_people_of_each_stop(world, engine):
    rt, _, _, _ = world
    join(engine, "dallas@example.org", "Dallas")
    join(engine, "evanston@example.org", "Evanston")
    join(engine, "denver@example.org", "Denver")
    campaign = rt.campaigns()["cta"]
    step = campaign.step("day-before")
    found = occurrences(campaign, step, datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 12, 31, tzinfo=UTC))
    # one occurrence per stop, a day before it
    assert found == [datetime(2030, 3, 9, 23, 0, tzinfo=UTC), datetime(2030, 3, 12, 0, 0, tzinfo=UTC)]
    people = {}
    for occ in found:
        run = create_run(engine, "cta", "day-before", occ)
        plan_run(rt, run)
        people[occ] = set(planned(engine, run))
    assert people == {found[0]: {"dallas@example.org"}, found[1]: {"evanston@example.org"}}


def test_quiet_hours_hold_an_email_until_morning_unless_the_step_is_urgent(world, engine):
    rt, _, _, _ = world
    join(engine, "seoul@example.org", "Seoul", country="KR")
    join(engine, "denver@example.org", "Denver")
    occurrence = datetime(2030, 3, 1, 15, 0, tzinfo=UTC)   # 10:00 New York = 00:00 in Seoul
    stream = create_run(engine, "cta", "livestream", occurrence)
    plan_run(rt, stream)
    due = planned(engine, stream)
    assert due["denver@example.org"] == occurrence                                 # 08:00 in Denver: sent
    assert due["seoul@example.org"] == datetime(2030, 3, 1, 23, 0, tzinfo=UTC)     # held to 08:00 in Seoul
    urgent = create_run(engine, "cta", "alert", datetime(2030, 3, 1, 14, 0, tzinfo=UTC))
    plan_run(rt, urgent)
    assert set(planned(engine, urgent).values()) == {datetime(2030, 3, 1, 14, 0, tzinfo=UTC)}


def test_validate_names_the_events_and_targets_it_cannot_place(world, monkeypatch):
    _, _, _, project = world
    text = (project.root / "config/campaigns/cta.yaml").read_text()
    project.write("config/campaigns/cta.yaml", text.replace("city: Dallas\n      region: TX",
                                                            "city: Springfield\n      region: null"))
    targets = (project.root / "config/targets/offices.yaml").read_text()
    project.write("config/targets/offices.yaml", targets.replace("city: Chicago", "city: Atlantis"))
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "adv-secret")
    result = CliRunner().invoke(cli, ["--root", str(project.root), "validate"], env=project.env)
    assert result.exit_code == 1
    assert "cta.yaml:" in result.output and "cannot place event 'dallas': ambiguous city 'Springfield'" in result.output
    assert "offices.yaml:" in result.output and "cannot place this office: unknown city 'Atlantis'" in result.output


def test_a_step_on_actions_nobody_declared_is_refused(world, monkeypatch):
    _, _, _, project = world
    text = (project.root / "config/campaigns/cta.yaml").read_text()
    project.write("config/campaigns/cta.yaml", text.replace("not_acted: {action: sent_letter}",
                                                            "not_acted: {action: signed}"))
    result = CliRunner().invoke(cli, ["--root", str(project.root), "validate"], env=project.env)
    assert result.exit_code == 1 and "action 'signed' is not one of this campaign's `actions`" in result.output



def test_status_shows_actions_per_campaign_and_per_target(world, engine):
    rt, app, _, project = world
    join(engine, "tex@example.org", "Dallas")
    join(engine, "atl@example.org", "Atlanta")
    join(engine, "den@example.org", "Denver")
    for who in ("tex@example.org", "atl@example.org", "den@example.org"):
        click_sent(app, engine, who)
    result = CliRunner().invoke(cli, ["--root", str(project.root), "status"], env=project.env)
    assert result.exit_code == 0, result.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines()
            if line.startswith("│") and ("cta" in line or "US/" in line)]
    assert rows == [["cta", "sent_letter", "(all)", "3"], ["", "", "US/Embassy/Washington, DC", "2"],
                    ["", "", "US/Consulate/Chicago", "1"]]
    # and the JSON snapshot carries them for scripts and the dashboard
    import json

    data = json.loads(CliRunner().invoke(cli, ["--root", str(project.root), "status", "--json"],
                                         env=project.env).output)
    assert {"campaign": "cta", "action": "sent_letter", "target": "US/Consulate/Chicago", "count": 1} in data["actions"]


@pytest.mark.parametrize("path, words", [("../.env", "outside config/"), ("targets/nope.yaml", "not found"),
                                         ("/etc/passwd", "outside config/"), ("targets/list.yaml", "targets")])
def test_a_target_file_that_is_not_one_is_refused_with_its_line(world, path, words):
    _, _, _, project = world
    project.write("config/targets/list.yaml", "- just\n- a list\n")
    text = (project.root / "config/campaigns/cta.yaml").read_text()
    project.write("config/campaigns/cta.yaml", text.replace("targets: targets/offices.yaml", f"targets: {path}"))
    result = CliRunner().invoke(cli, ["--root", str(project.root), "validate"], env=project.env)
    assert result.exit_code == 1 and words in result.output, result.output
    assert "Traceback" not in result.output


def test_a_retry_waits_out_the_recipients_quiet_hours(world, engine):
    rt, _, sink, _ = world
    # given a recipient for whom it is 02:xx now (a fixed-offset zone chosen from the clock)
    now = now_utc()
    offset = (2 - now.hour + 12) % 24 - 12          # local hour 2, offset within -12..+11
    zone = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"
    add_subscriber(engine, "night@example.org", tags=["supporter"], timezone=zone)
    campaign = rt.campaigns()["cta"]
    run = create_run_now(rt, campaign, campaign.step("livestream"), now, due_at=now)
    # when the server asks to try again later
    sink.next_data.append("451 4.3.0 Try again later")
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == run)).scalars())
    send_batch(rt, ids)
    # then the retry is due at 08:00 their time, not in the middle of their night
    with engine.connect() as conn:
        state, due = conn.execute(sa.select(deliveries.c.state, deliveries.c.due_at)
                                  .where(deliveries.c.id == ids[0])).one()
    local = due.astimezone(ZoneInfo(zone))
    assert state == "retry" and (local.hour, local.minute) == (8, 0) and due > now
    # and an urgent step's retry is not held
    urgent = create_run_now(rt, campaign, campaign.step("alert"), now, due_at=now)
    sink.next_data.append("451 4.3.0 Try again later")
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == urgent)).scalars())
    send_batch(rt, ids)
    with engine.connect() as conn:
        due = conn.execute(sa.select(deliveries.c.due_at).where(deliveries.c.id == ids[0])).scalar_one()
    assert due - now < timedelta(hours=1)


def test_a_reminder_whose_stop_moved_since_its_run_was_made_goes_to_nobody(world, engine):
    rt, _, _, _ = world
    join(engine, "dallas@example.org", "Dallas")
    # a run made for a time that is no stop's (the stop was moved after the run was created)
    run = create_run(engine, "cta", "day-before", datetime(2030, 3, 1, 0, 0, tzinfo=UTC))
    assert plan_run(rt, run) == 0
