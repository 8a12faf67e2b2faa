"""Campaign files a person might write by mistake (or on purpose) end in one located problem
each: never a traceback, a hang, a schedule that means something else, or a secret read from
outside config/."""
from __future__ import annotations

import os

import pytest

from tests.authoring.conftest import CAMPAIGN


def problems(result) -> list[str]:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def one_problem(result, *expected: str) -> str:
    found = problems(result)
    assert len(found) == 1, found
    for text in expected:
        assert text in found[0], found[0]
    return found[0]


CRON = CAMPAIGN.replace("at: 2030-01-15 09:00", 'cron: "0 9 1 * *"')


@pytest.mark.parametrize("cron", ["0 9 31 2 *", "0 9 30 2 *", "0 9 31 4 *"])
def test_a_cron_date_that_never_comes_is_refused(project, cron):
    # given a cron naming a day no month has
    project.campaign(CRON.replace("0 9 1 * *", cron))
    # then validate says it never occurs, on the cron's line
    one_problem(project.validate(), "hello.yaml:12:", "[steps[0].schedule.cron]", "never occurs", "no such date")


@pytest.mark.parametrize("cron", ["* * * * * * *", "* * * * * *", "0 9 * *", "@daily", "R 9 * * *", "0 9 L * *",
                                  "0 9 * * 1#2", "0 9 ? * *"])
def test_only_standard_five_field_cron_is_accepted(project, cron):
    # given seconds/years fields, a macro or a croniter extension (R is random: a new time per read)
    project.campaign(CRON.replace("0 9 1 * *", cron))
    # then it is refused with how to write it
    one_problem(project.validate(), "hello.yaml:12:", "five fields")


def test_names_of_months_and_weekdays_are_standard_cron(project):
    project.campaign(CRON.replace("0 9 1 * *", "30 8 * jan-mar mon-fri"))
    assert project.validate().exit_code == 0


def test_a_cron_window_without_an_occurrence_is_refused(project):
    # given a yearly cron whose start/end window holds no 1 January
    project.campaign(CRON.replace("0 9 1 * *", "0 9 1 1 *").replace(
        "      timezone: Europe/Paris", "      timezone: Europe/Paris\n      start: 2030-02-01 00:00\n"
        "      end: 2030-12-01 00:00", 1))
    one_problem(project.validate(), "[steps[0].schedule.cron]", "never occurs between 2030-02-01 00:00 and 2030-12-01")


def test_an_end_before_its_start_is_refused(project):
    project.campaign(CRON.replace("      timezone: Europe/Paris", "      timezone: Europe/Paris\n"
                                  "      start: 2031-01-01 00:00\n      end: 2030-01-01 00:00", 1))
    one_problem(project.validate(), "[steps[0].schedule]", "`end` (2030-01-01 00:00) is not after `start`")


@pytest.mark.parametrize(("value", "text"), [
    ("-300", "must be 0 or more"), ("-5m", "not a duration"), (".inf", "longer than 3650 days"),
    (".nan", "must be 0 or more"), ("99999999999999999999d", "longer than 3650 days"), ("yes", "not a duration"),
])
def test_a_delay_must_be_a_sane_duration(project, value, text):
    # given a negative, infinite, NaN or absurd delay (before: OverflowError, or the tweet before the email)
    project.campaign(CAMPAIGN.replace("delay: 5m", f"delay: {value}"))
    one_problem(project.validate(), "[steps[1].schedule.delay]", text)


@pytest.mark.parametrize("value", ["12345", "2030-01-15", "1.5", "true", "[2030]"])
def test_at_must_be_a_date_and_time(project, value):
    # given a number (before: seconds since 1970), a bare date, a list...
    project.campaign(CAMPAIGN.replace("at: 2030-01-15 09:00", f"at: {value}"))
    one_problem(project.validate(), "hello.yaml:12:", "[steps[0].schedule.at]")


def test_expires_must_be_positive(project):
    project.campaign(CAMPAIGN.replace("      delay: 5m", "      delay: 5m\n    expires: 0s"))
    one_problem(project.validate(), "[steps[1].expires]", "longer than 0")


@pytest.mark.parametrize("zone", ["Asia", "America", "../etc/passwd", "/etc/localtime", ""])
def test_a_zone_that_is_a_folder_or_a_path_is_an_unknown_zone(project, zone):
    # given `Asia` (ZoneInfo raises IsADirectoryError) or a path
    project.campaign(CAMPAIGN.replace("Europe/Paris", f'"{zone}"'))
    one_problem(project.validate(), "[steps[0].schedule.timezone]", "unknown time zone")


def test_a_zone_folder_in_an_audience_filter_is_an_unknown_zone(project):
    project.campaign(CAMPAIGN.replace("  segment: everyone", "  segment: everyone\n  filter:\n    timezone: Asia"))
    one_problem(project.validate(), "[audience.filter.timezone]", "unknown time zone 'Asia'")


@pytest.mark.parametrize("rel", ["../.env", "/etc/hostname", "targets/../../.env", "link.yaml", "secrets.txt",
                                 "..\\.env"])
def test_data_files_stay_inside_config(project, rel):
    # given a secret next to config/, and a link inside config/ pointing at it
    project.write(".env", "OUTREACH_SECRET_KEY=top-secret-value\n")
    os.symlink(project.root / ".env", project.root / "config" / "link.yaml")
    project.write("config/secrets.txt", "password: top-secret-value\n")
    project.campaign(CAMPAIGN.replace("data:\n", f"data_files:\n  leak: '{rel}'\ndata:\n"))
    # then validate refuses the path, and nothing of the secret is shown
    result = project.validate()
    found = one_problem(result, "[data_files.leak]")
    assert "outside config/" in found or "not a YAML file" in found
    assert "top-secret-value" not in result.output


def test_data_files_inside_config_still_load(project):
    project.write("config/targets/list.yaml", "offices: {CA: Ottawa}\n")
    project.campaign(CAMPAIGN.replace("data:\n", "data_files:\n  targets: targets/list.yaml\ndata:\n"))
    assert project.validate().exit_code == 0


@pytest.mark.parametrize("name", ["../x/hello", "/hello", ".hidden", "hello/../../x"])
def test_a_template_name_is_a_name_under_templates(project, name):
    project.campaign(CAMPAIGN.replace("    template: hello\n    schedule:\n      at:",
                                      f"    template: '{name}'\n    schedule:\n      at:"))
    one_problem(project.validate(), "[steps[0].template]", "is not a template name")


def billion_laughs() -> str:
    text, prev = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n', "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text


@pytest.mark.parametrize(("text", "expected"), [
    (billion_laughs(), "values once aliases are expanded"),
    ("a: &a [*a]\n", "refers to a value that contains it"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 50 levels"),
    ('name: "x\\ud800"\n', "lone surrogate"),
    ("? [a, b]\n: c\n", "a key must be a single value"),
    ("a: 1\n---\nb: 2\n", "invalid YAML"),
])
def test_hostile_yaml_is_one_problem_not_a_hang_or_a_recursion_error(project, text, expected):
    (project.root / "config" / "campaigns" / "bad.yaml").write_text(text, encoding="utf-8")
    one_problem(project.validate(), "config/campaigns/bad.yaml:", expected)


def test_a_huge_yaml_file_is_refused_before_it_is_read(project):
    (project.root / "config" / "campaigns" / "big.yaml").write_text("# " + "x" * 1_100_000 + "\n")
    one_problem(project.validate(), "config/campaigns/big.yaml:", "larger than 1,000,000 bytes")


def test_union_member_names_stay_out_of_field_paths(project):
    # given a number where a country code or a list of them is expected
    project.campaign(CAMPAIGN.replace("  segment: everyone", "  segment: everyone\n  filter:\n    country: 5"))
    found = one_problem(project.validate(), "[audience.filter.country]", "should be a valid string or a valid list")
    assert ".str]" not in found


def test_a_misspelt_key_of_a_tag_filter_suggests_the_right_one(project):
    project.campaign(CAMPAIGN.replace("  segment: everyone",
                                      "  segment: everyone\n  filter:\n    tags: {any: [a], al: [b]}"))
    one_problem(project.validate(), "[audience.filter.tags.al]", "unknown key 'al'", "did you mean 'all'?")


# --- templates -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("{{ campaign.title | uper }}", "No filter named 'uper'. (did you mean 'upper'?)"),
    ('{% include "partials/nope.txt" %}', "template 'partials/nope.txt' not found under templates/"),
    ('{% extends "layouts/nope.txt" %}', "template 'layouts/nope.txt' not found under templates/"),
    ("{{ 1/0 }}", "division by zero"),
    ("{{ lipsum(10**8) }}", "lipsum() takes at most 100 paragraphs"),
    ("{% for i in range(10**8) %}x{% endfor %}", "range() of 100,000,000 items"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "more than 50 deep"),
    ('{% include "x/hello.txt" %}', "each other without end"),
])
def test_a_template_error_is_one_problem_at_the_template_line(project, text, expected):
    project.write("templates/x/hello.txt", "A line\n" + text + "\n")
    one_problem(project.validate(), "templates/x/hello.txt:2:", expected)


def test_a_template_that_is_not_utf8_is_a_problem(project):
    (project.root / "templates" / "x" / "hello.txt").write_bytes(b"ok\ncaf\xe9\n")
    one_problem(project.validate(), "templates/x/hello.txt:2:", "not UTF-8 text")


def test_a_template_linking_out_of_templates_is_refused(project):
    project.write(".env", "OUTREACH_SECRET_KEY=top-secret-value\n")
    (project.root / "templates" / "x" / "hello.txt").unlink()
    os.symlink(project.root / ".env", project.root / "templates" / "x" / "hello.txt")
    result = project.validate()
    one_problem(result, "templates/x/hello.txt", "outside the templates folder")
    assert "top-secret-value" not in result.output


def test_a_template_folder_missing_a_file_does_not_suggest_its_own_name(project):
    # given templates/email/hello/ without its body.html
    (project.root / "templates" / "email" / "hello" / "body.html").unlink()
    found = one_problem(project.validate(), "[steps[0].template]", "body.html not found")
    assert "did you mean 'hello'" not in found and "create templates/email/hello/body.html" in found


# --- settings checked across campaigns ------------------------------------------------------

@pytest.mark.parametrize(("old", "field"), [
    ("  name: Test Org\n", "organization.name"),
    ("  postal_address: 1 Test Street, Testville\n", "organization.postal_address"),
])
def test_an_email_step_needs_the_organization_and_its_postal_address(project, old, field):
    # given settings without the organization's name or postal address (the footer CAN-SPAM requires)
    settings = (project.root / "config" / "outreach.yaml").read_text()
    project.write("config/outreach.yaml", settings.replace(old, ""))
    one_problem(project.validate(), "config/outreach.yaml:", f"[{field}]", "is required to send email")


def test_without_email_steps_no_postal_address_is_needed(project):
    settings = (project.root / "config" / "outreach.yaml").read_text()
    project.write("config/outreach.yaml", settings.replace("  postal_address: 1 Test Street, Testville\n", ""))
    project.campaign(CAMPAIGN.split("  - id: mail")[0] + "  - id: tweet\n    channel: x\n    template: hello\n"
                     "    schedule:\n      at: 2030-01-15 09:00\n      timezone: Europe/Paris\n")
    assert project.validate().exit_code == 0


def test_a_missing_settings_file_is_said_once(project):
    # given a project whose config/outreach.yaml is gone
    (project.root / "config" / "outreach.yaml").unlink()
    # then validate says that, instead of "unknown email account"
    found = one_problem(project.validate(), "config/outreach.yaml:", "settings file not found")
    assert "unknown email account" not in found


def test_a_root_without_a_project_is_not_ok(project, tmp_path):
    # given an existing directory that holds no project: not "ok: 0 campaigns"
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = project.run("--root", str(empty), "validate")
    assert result.exit_code == 1 and "settings file not found" in result.output and "ok:" not in result.output


def test_a_folder_without_campaigns_given_to_validate_is_a_problem(project):
    (project.root / "drafts").mkdir()
    one_problem(project.validate("drafts"), "drafts:", "no campaign files")


def test_a_control_character_is_one_problem_at_its_line(project):
    # found by tests/properties: the YAML reader refuses the whole text before parsing it
    (project.root / "config" / "campaigns" / "bad.yaml").write_text("name: x\ntitle: a\x1fb\n", encoding="utf-8")
    one_problem(project.validate(), "config/campaigns/bad.yaml:2:", "character '\\x1f' is not allowed")
