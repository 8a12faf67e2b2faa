"""`outreach validate`: each kind of mistake is reported with file:line and a fix, never a traceback."""
from __future__ import annotations

import subprocess
import sys

from tests.authoring.conftest import CAMPAIGN


def errors(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_clean_project_validates(project):
    # given a valid project / when validated / then exit 0 and a summary
    result = project.validate()
    assert result.exit_code == 0, result.output
    assert "ok: 1 campaign(s), 2 step(s) valid" in result.output


def test_unknown_key_names_line_and_suggests(project):
    # given a misspelt key in a step
    project.campaign(CAMPAIGN.replace("    template: hello\n    schedule:\n      at:",
                                      "    templat: hello\n    schedule:\n      at:"))
    out = errors(project.validate())
    # then the error names the file, the line and the close match
    assert "config/campaigns/hello.yaml:10: [steps[0].templat] unknown key 'templat'" in out
    assert "did you mean 'template'?" in out


def test_bad_cron(project):
    project.campaign(CAMPAIGN.replace("at: 2030-01-15 09:00", 'cron: "61 9 * * *"'))
    out = errors(project.validate())
    assert "hello.yaml:12" in out and "invalid cron expression '61 9 * * *'" in out


def test_unknown_time_zone(project):
    project.campaign(CAMPAIGN.replace("Europe/Paris", "Europe/Pariss"))
    out = errors(project.validate())
    assert "hello.yaml:13: [steps[0].schedule.timezone] unknown time zone 'Europe/Pariss'" in out


def test_unknown_template(project):
    project.campaign(CAMPAIGN.replace("    template: hello\n    schedule:\n      at:",
                                      "    template: helo\n    schedule:\n      at:"))
    out = errors(project.validate())
    assert "hello.yaml:10: [steps[0].template] unknown template 'helo'" in out
    assert "did you mean 'hello'?" in out


def test_template_syntax_error_names_template_line(project):
    project.write("templates/email/hello/body.html", "<p>ok</p>\n<p>{{ subscriber.name </p>\n")
    out = errors(project.validate())
    assert "templates/email/hello/body.html:2: template syntax error" in out


def test_variable_nobody_provides(project):
    # given templates using a misspelt subscriber field, an undeclared attribute and missing campaign data
    project.write("templates/email/hello/body.html",
                  "<p>{{ subscriber.nmae }}</p>\n<p>{{ subscriber.attrs.donor }}</p>\n"
                  "<p>{{ campaign.data.letter }}</p>\n<p>{{ petition_url }}</p>\n")
    out = errors(project.validate())
    assert "body.html:1: 'subscriber.nmae' is not provided" in out and "did you mean 'subscriber.name'?" in out
    assert "body.html:2: 'subscriber.attrs.donor' is not provided" in out
    assert "body.html:3: 'campaign.data.letter' is not provided" in out
    assert "body.html:4: variable 'petition_url' is not provided" in out


def test_missing_key_in_data_lookup_found_by_sample_render(project):
    # given a lookup that only fails for some subscribers (no entry for KR)
    project.campaign(CAMPAIGN.replace("  greeting: Welcome", "  greeting: Welcome\n  contacts: {CA: a@b.c}"))
    project.write("templates/email/hello/body.html", "<p>{{ campaign.data.contacts[subscriber.country] }}</p>")
    out = errors(project.validate())
    assert "undefined variable" in out and "kim@example.org" in out


def test_step_after_missing_step(project):
    project.campaign(CAMPAIGN.replace("after: mail", "after: mial"))
    out = errors(project.validate())
    assert "hello.yaml:18: [steps[1].schedule.after] step 'tweet' runs after step 'mial', which does not exist" in out


def test_tweet_too_long_as_x_counts_it(project):
    # given 120 Hangul characters (len 120, X counts 240) and an 80-character URL (X counts 23): 285
    project.write("templates/x/hello.txt", "가" * 120 + " https://example.org/" + "a" * 60 + " " + "b" * 20)
    out = errors(project.validate())
    assert "tweet 1 is 285 characters as X counts them" in out


def test_thread_parts_are_checked_separately(project):
    project.write("templates/x/hello.txt", "가" * 130 + "\n---\n" + "나" * 130)
    assert project.validate().exit_code == 0


def test_subscriber_in_tweet_is_an_error(project):
    project.write("templates/x/hello.txt", "Thanks {{ subscriber.name }}")
    out = errors(project.validate())
    assert "'subscriber' is not available in a tweet" in out


def test_invalid_yaml(project):
    project.campaign(CAMPAIGN.replace("title: Hello campaign", "title: [unclosed"))
    out = errors(project.validate())
    assert "hello.yaml:" in out and "invalid YAML" in out


def test_unknown_segment_and_account(project):
    project.campaign(CAMPAIGN.replace("segment: everyone", "segment: supporter")
                     .replace("    channel: x\n", "    channel: x\n    account: nope\n"))
    out = errors(project.validate())
    assert "hello.yaml:4: [audience.segment] unknown segment 'supporter'" in out and "'supporters'" in out
    assert "unknown x account 'nope'" in out


def test_schedule_needs_exactly_one_kind_and_a_zone(project):
    project.campaign(CAMPAIGN.replace("      timezone: Europe/Paris\n", ""))
    out = errors(project.validate())
    assert "`at` needs a `timezone:`" in out


def test_all_errors_listed_at_once(project):
    # given one campaign with two shape errors and another whose template uses a wrong field
    project.campaign(CAMPAIGN.replace("Europe/Paris", "Mars/Olympus").replace("title:", "titel:"))
    project.campaign(CAMPAIGN.replace("name: hello", "name: other"), name="other")
    project.write("templates/email/hello/subject.txt", "{{ subscriber.emial }}")
    # when validated / then every problem is listed, not just the first
    out = errors(project.validate())
    assert "unknown time zone 'Mars/Olympus'" in out
    assert "unknown key 'titel'" in out
    assert "'subscriber.emial' is not provided" in out
    assert "3 problem(s) found" in out


def test_broken_settings_file_is_a_problem_not_a_crash(project):
    project.write("config/outreach.yaml", "email:\n  acounts: {}\n")
    out = errors(project.validate())
    assert "config/outreach.yaml:2: [email.acounts] unknown key 'acounts'" in out
    assert "did you mean 'accounts'?" in out


def test_secret_in_yaml_is_refused(project):
    project.write("config/outreach.yaml", "secret_key: hunter2\n")
    out = errors(project.validate())
    assert "secrets may not live in YAML" in out and "OUTREACH_SECRET_KEY" in out


def test_real_process_exits_1_without_traceback(project):
    # given a broken campaign / when the installed CLI runs in its own process
    project.campaign("name: hello\nsteps: [\n")
    proc = subprocess.run([sys.executable, "-m", "outreach", "--root", str(project.root), "validate"],
                          capture_output=True, text=True)
    # then it exits 1 with a located message and no traceback
    assert proc.returncode == 1
    assert "hello.yaml:" in proc.stderr and "Traceback" not in proc.stderr


def test_local_time_on_a_post_is_refused(project):
    project.campaign(CAMPAIGN.replace("      after: mail\n", "      after: mail\n      local_time: true\n"))
    out = errors(project.validate())
    assert "local_time applies to steps sent per recipient: a tweet goes out once" in out


def test_preview_finds_an_imported_subscriber_in_the_database(project, tmp_path):
    # given a subscriber who is only in the database, not in the sample file
    from outreach.store import add_subscriber, make_engine, upgrade
    db = tmp_path / "var" / "outreach.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    add_subscriber(engine, "only-db@example.org", name="Dee Bee", city="Lyon", country="FR", status="confirmed")
    engine.dispose()
    # when previewed / then the message is rendered for them
    result = project.run("preview", "hello", "--step", "mail", "--subscriber", "only-db@example.org")
    assert result.exit_code == 0, result.output
    assert "Dee Bee from Lyon" in result.output
