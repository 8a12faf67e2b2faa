"""The dashboard's pages and actions, signed in, against SQLite and PostgreSQL: what a run's
numbers say, their live update, and pause/resume/cancel/retry through the confirmation page."""
from __future__ import annotations

import re

from outreach.store import claim as claim_rows
from outreach.store import get_run, record_failed, record_sent, run_progress

from ..conftest import BASE, csrf_of, person
from .conftest import DAILY, TOKEN, make_run

HTML = {"accept": "text/html"}
LIVE = {"accept": "text/html", "x-live": "1"}


def cell(html: str, run_id: int, state: str) -> str:
    row = re.search(rf'<tr data-run="{run_id}">(.*?)</tr>', html, re.S).group(1)
    return re.search(rf'data-state="{state}">([^<]*)<', row).group(1)


def _send(engine, ids):
    from datetime import UTC, datetime, timedelta
    claim_rows(engine, ids, "w1", datetime.now(UTC) + timedelta(minutes=1))
    for i in ids:
        record_sent(engine, i, f"id-{i}")


def test_the_overview_shows_a_run_and_its_live_part_moves(operator, engine):
    # given a run of five, none sent
    run_id, ids = make_run(engine, 5)
    page = operator.get("/admin", headers=HTML)
    assert page.status_code == 200
    assert cell(page.text, run_id, "sent") == "0" and cell(page.text, run_id, "remaining") == "5"
    assert 'data-live-src="/admin"' in page.text and '<script src="/static/admin.js">' in page.text
    # when two are sent, the live part (what the page's script fetches) says so
    _send(engine, ids[:2])
    live = operator.get("/admin", headers=LIVE)
    assert live.status_code == 200 and "<html" not in live.text
    assert cell(live.text, run_id, "sent") == "2" and cell(live.text, run_id, "remaining") == "3"
    # and the system's parts are there: queues, rate limits with the account, the lag
    for heading in ("Queues", "Workers", "Rate limits", "Recent failures", "Scheduler lag"):
        assert heading in live.text
    assert "email:news" in live.text


def test_a_run_page_shows_its_numbers_and_failures(operator, engine):
    run_id, ids = make_run(engine, 3)
    _send(engine, ids[:1])
    from datetime import UTC, datetime, timedelta
    claim_rows(engine, [ids[1]], "w1", datetime.now(UTC) + timedelta(minutes=1))
    record_failed(engine, ids[1], "550 5.1.1 <r1@example.org>: mailbox unavailable")
    page = operator.get(f"/admin/runs/{run_id}", headers=HTML)
    assert page.status_code == 200
    assert re.search(r'data-state="sent">1<', page.text) and re.search(r'data-state="failed">1<', page.text)
    # the failure, with the address taken out of its reason
    assert "mailbox unavailable" in page.text and "&lt;address&gt;" in page.text
    assert "r1@example.org" not in page.text.split("Recent failures")[1].split("</section>")[0].split("<td>")[2]
    assert operator.get("/admin/runs/999999", headers=HTML).status_code == 404


def test_pause_resume_and_cancel_from_the_page(operator, engine):
    run_id, ids = make_run(engine, 4)
    _send(engine, ids[:1])
    # the button leads to a confirmation page; nothing happens by opening it
    confirm = operator.get(f"/admin/runs/{run_id}/pause", headers=HTML)
    assert confirm.status_code == 200 and "Pause this run?" in confirm.text
    assert get_run(engine, run_id).status == "planned"
    # a post without the page's token changes nothing
    forged = operator.post(f"/admin/runs/{run_id}/pause", data={"csrf": "forged"}, headers={"origin": BASE})
    assert forged.status_code == 403 and get_run(engine, run_id).status == "planned"
    cross = operator.post(f"/admin/runs/{run_id}/pause", data={"csrf": csrf_of(confirm.text)},
                          headers={"origin": "https://evil.example"})
    assert cross.status_code == 403 and get_run(engine, run_id).status == "planned"
    # confirmed: paused, with the reason, and what waited is held
    done = operator.post(f"/admin/runs/{run_id}/pause", data={"csrf": csrf_of(confirm.text), "reason": "typo"},
                         headers={"origin": BASE})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/runs/{run_id}?done=pause"
    run = get_run(engine, run_id)
    assert run.status == "paused" and "typo" in run.reason and "ops" in run.reason
    assert run_progress(engine, run_id)["paused"] == 3
    shown = operator.get(done.headers["location"], headers=HTML)
    assert "Nothing more of it is sent until you resume it" in shown.text and "Resume…" in shown.text
    # resume
    page = operator.get(f"/admin/runs/{run_id}/resume", headers=HTML)
    operator.post(f"/admin/runs/{run_id}/resume", data={"csrf": csrf_of(page.text)}, headers={"origin": BASE})
    assert get_run(engine, run_id).status == "planned" and run_progress(engine, run_id)["pending"] == 3
    # cancel: the remaining deliveries end cancelled, the sent one stays sent
    page = operator.get(f"/admin/runs/{run_id}/cancel", headers=HTML)
    assert "cannot be undone" in page.text
    operator.post(f"/admin/runs/{run_id}/cancel", data={"csrf": csrf_of(page.text)}, headers={"origin": BASE})
    counts = run_progress(engine, run_id)
    assert get_run(engine, run_id).status == "cancelled" and counts["cancelled"] == 3 and counts["sent"] == 1
    # and a cancelled run offers nothing more: the confirmation page says so
    again = operator.get(f"/admin/runs/{run_id}/resume", headers=HTML)
    assert again.status_code == 409 and "<form method=\"post\" action=\"/admin/runs" not in again.text


def test_retry_only_the_failed(operator, engine):
    from datetime import UTC, datetime, timedelta
    run_id, ids = make_run(engine, 3)
    _send(engine, ids[:1])
    claim_rows(engine, ids[1:], "w1", datetime.now(UTC) + timedelta(minutes=1))
    for i in ids[1:]:
        record_failed(engine, i, "554 refused")
    page = operator.get(f"/admin/runs/{run_id}/retry", headers=HTML)
    # nothing chosen: nothing done
    none = operator.post(f"/admin/runs/{run_id}/retry", data={"csrf": csrf_of(page.text)}, headers={"origin": BASE})
    assert none.status_code == 400 and run_progress(engine, run_id)["failed"] == 2
    operator.post(f"/admin/runs/{run_id}/retry", data={"csrf": csrf_of(page.text), "states": ["failed", "sent"]},
                  headers={"origin": BASE})
    counts = run_progress(engine, run_id)
    assert counts["pending"] == 2 and counts["sent"] == 1 and counts["failed"] == 0


def test_a_script_acts_with_the_token_and_reads_the_snapshot(browser_client, engine):
    run_id, _ = make_run(engine, 2)
    auth = {"authorization": f"Bearer {TOKEN}"}
    answer = browser_client.post(f"/admin/runs/{run_id}/pause", headers=auth)
    assert answer.status_code == 200 and answer.json() == {"run": run_id, "action": "pause", "changed": True}
    snap = browser_client.get("/admin/api/snapshot", headers=auth).json()
    (run,) = [r for r in snap["runs"] if r["id"] == run_id]
    assert run["status"] == "paused" and run["remaining"] == 2 and "rate" in run


def test_the_schedule_lists_coming_sends_in_both_zones(tmp_path, operator, engine):
    site = operator.app.state.site
    (site.settings.root / "config" / "campaigns" / "daily.yaml").write_text(DAILY)
    person(engine, "ana@example.org")
    page = operator.get("/admin/schedule?days=2", headers=HTML)
    assert page.status_code == 200
    rows = re.findall(r"<tr><td>[^<]*</td><td>([^<]*UTC)</td><td>daily / digest</td>", page.text)
    # 09:00 in Seoul is 00:00 UTC, once or twice in the next two days
    assert rows and all(r.endswith("00:00 UTC") for r in rows)
    assert '<td class="n">1</td>' in page.text  # one person in the audience


def test_the_dashboard_speaks_korean(operator, engine):
    make_run(engine, 1)
    page = operator.get("/admin?lang=ko", headers=HTML)
    assert 'lang="ko"' in page.text and "대기열" in page.text and "발송" in page.text


def test_the_runs_of_one_campaign(operator, engine):
    from datetime import UTC, datetime
    news, _ = make_run(engine, 2)
    other, _ = make_run(engine, 1, campaign="daily", step="digest", occurrence=datetime(2030, 2, 1, tzinfo=UTC))
    page = operator.get("/admin?campaign=daily", headers=HTML)
    assert f'data-run="{other}"' in page.text and f'data-run="{news}"' not in page.text
    assert "Runs of daily" in page.text and 'data-live-src="/admin?campaign=daily"' in page.text
    # the overview links each campaign to its own list
    assert 'href="/admin?campaign=news"' in operator.get("/admin", headers=HTML).text


def test_bounce_rates_and_supporters_actions_are_shown(operator, engine):
    # given a run of four, all sent, one of which came back as a hard bounce
    from datetime import UTC, datetime, timedelta

    from outreach.models import FeedbackKind
    from outreach.store import add_subscriber, feedback
    from outreach.store.actions import record_action

    run_id, ids = make_run(engine, 4)
    _send(engine, ids)
    feedback.record(engine, feedback.Entry(key="dsn-1", source="dsn", kind=FeedbackKind.HARD_BOUNCE,
                                           address="r0@example.org", code="5.1.1", text="user unknown",
                                           at=datetime.now(UTC), delivery_id=ids[0]),
                    soft_limit=3, soft_window=timedelta(days=7))
    # and two supporters who wrote to their office
    for i in range(2):
        who = add_subscriber(engine, f"act{i}@example.org", status="confirmed")
        record_action(engine, who, "forced-repatriation", "sent_letter", "Embassy, Washington")
    # when the operator looks
    live = operator.get("/admin", headers=LIVE)
    # then the run's rates and the account's are there, and the actions per target
    section = live.text.split('id="h-bounces"')[1].split("</section>")[0]
    assert f"Run {run_id}" in section and "Account news (30 days)" in section
    assert "1 (25.00%)" in section
    actions = live.text.split('id="h-actions"')[1].split("</section>")[0]
    assert "forced-repatriation" in actions and "Embassy, Washington" in actions and ">2<" in actions


def test_what_the_scheduler_left_out_is_shown_and_counted(operator, admin_app, engine):
    from outreach.observe import unscheduled

    from .test_metrics import METRICS, samples, value

    # given no tick recorded lately: nothing said either way, no sample in /metrics
    assert "Not scheduled" not in operator.get("/admin", headers=LIVE).text
    assert ("outreach_campaigns_not_scheduled", ()) not in samples(operator.get("/metrics", headers=METRICS).text)
    # when the last tick left out a campaign file
    problem = "config/campaigns/flood.yaml:11: [steps[0].schedule.cron] runs more often than once a minute"
    unscheduled.record(admin_app.state.site.runtime.redis, engine, [problem], tick_seconds=5)
    # then the overview says so as an alert, with the file and line, and /metrics counts it
    live = operator.get("/admin", headers=LIVE).text
    assert 'id="h-not-scheduled"' in live and "flood.yaml:11" in live and 'role="alert"' in live
    assert value(samples(operator.get("/metrics", headers=METRICS).text), "outreach_campaigns_not_scheduled") == 1
    # and in Korean too
    assert "예약되지 않음" in operator.get("/admin?lang=ko", headers=LIVE).text
