from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from outreach.cli import Context, cli
from outreach.settings import Settings, load_settings
from outreach.store import (
    claim,
    create_run,
    get_delivery,
    get_subscriber,
    head_revision,
    is_suppressed,
    make_engine,
    mark_run_planned,
    plan_deliveries,
    record_sent,
    record_unknown,
)
from outreach.store.audience import audience_select
from outreach.store.schema import deliveries
from tests.store.helpers import T0, people

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(db_url, tmp_path):
    settings = Settings(root=tmp_path, database_url=db_url)

    def invoke(*args: str, settings: Settings = settings):
        return CliRunner().invoke(cli, list(args), obj=Context.of(settings), catch_exceptions=False)
    return invoke


def test_commands_need_an_upgraded_database(run):
    # given an empty database, when importing, then the message says what to run
    result = run("suppress", "a@example.org", "--reason", "x")
    assert result.exit_code == 1 and "run `outreach db upgrade`" in result.stderr
    assert "Traceback" not in result.output
    # when upgrading (twice), then it succeeds
    assert run("db", "upgrade").exit_code == 0
    result = run("db", "upgrade")
    assert result.exit_code == 0 and f"revision {head_revision()} (latest)" in result.stdout


def test_import_reports_bad_lines_and_exits_0_when_some_rows_imported(run, tmp_path, db_url):
    run("db", "upgrade")
    path = tmp_path / "list.csv"
    path.write_text("email,country\na@example.org,US\nbad,US\nb@example.org,XX\n")
    # when importing a file with good and bad rows
    result = run("subscribers", "import", str(path))
    # then bad lines go to stderr as FILE:LINE: reason, the summary to stdout, status 0
    assert result.exit_code == 0
    assert f"{path}:3: invalid email address 'bad'" in result.stderr
    assert f"{path}:4: unknown country code 'XX'" in result.stderr
    assert "1 new, 0 updated, 2 skipped" in result.stdout
    engine = make_engine(db_url)
    assert get_subscriber(engine, "a@example.org").country == "US"
    engine.dispose()


def test_import_exits_1_when_nothing_could_be_imported(run, tmp_path):
    run("db", "upgrade")
    missing = run("subscribers", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1 and "cannot read" in missing.stderr
    (tmp_path / "noheader.csv").write_text("a@example.org,US\n")
    no_header = run("subscribers", "import", str(tmp_path / "noheader.csv"))
    assert no_header.exit_code == 1 and "no 'email' column" in no_header.stderr
    (tmp_path / "allbad.csv").write_text("email\nnope\n")
    all_bad = run("subscribers", "import", str(tmp_path / "allbad.csv"))
    assert all_bad.exit_code == 1 and "allbad.csv:2:" in all_bad.stderr


def test_export_to_stdout_and_file(run, tmp_path):
    run("db", "upgrade")
    (tmp_path / "in.csv").write_text("email,tags,chapter\na@example.org,x;y,SMU\n")
    run("subscribers", "import", str(tmp_path / "in.csv"))
    out = run("subscribers", "export")
    assert out.exit_code == 0
    assert out.stdout.splitlines()[1].startswith("a@example.org,,,,,,,x;y,confirmed,,,,,SMU")  # region: 4th
    assert run("subscribers", "export", str(tmp_path / "out.csv")).exit_code == 0
    assert (tmp_path / "out.csv").read_text() == out.stdout


def test_suppress_and_unsuppress(run, db_url):
    run("db", "upgrade")
    result = run("suppress", "A@Example.org", "--reason", "asked by phone")
    assert result.exit_code == 0 and "suppressed" in result.stdout
    engine = make_engine(db_url)
    assert is_suppressed(engine, "a@example.org")
    assert run("unsuppress", "a@example.org").exit_code == 0
    assert not is_suppressed(engine, "a@example.org")
    engine.dispose()
    bad = run("suppress", "nope", "--reason", "x")
    assert bad.exit_code == 1 and "invalid email address" in bad.stderr


def test_audience_of_a_sample_campaign(run, tmp_path, db_url):
    # given the repository's sample project and subscribers, one of them suppressed
    shutil.copytree(REPO / "config", tmp_path / "config")
    settings = load_settings(tmp_path, environ={}, database_url=db_url)
    run("db", "upgrade", settings=settings)
    assert run("subscribers", "import", str(tmp_path / "config" / "subscribers.csv"), settings=settings).exit_code == 0
    whole = run("audience", "speaking-tour", settings=settings)
    run("suppress", "olivia.martinez@example.org", "--reason", "test", settings=settings)
    # when asking for the audience of a campaign
    result = run("audience", "speaking-tour", "--step", whole_step(settings), settings=settings)
    # then it prints the count and a sample, without the suppressed address
    assert result.exit_code == 0, result.output
    before = int(whole.stdout.split(": ")[1].split()[0])
    assert f"speaking-tour/{whole_step(settings)}: {before - 1} recipients" in result.stdout
    assert "olivia.martinez@example.org" in whole.stdout and "olivia.martinez@example.org" not in result.stdout
    assert len([line for line in result.stdout.splitlines() if "@" in line]) == min(10, before - 1)
    # and unknown names are clear errors
    assert "no campaign named 'nope'" in run("audience", "nope", settings=settings).stderr
    assert "has no step 'zz'" in run("audience", "speaking-tour", "--step", "zz", settings=settings).stderr


def whole_step(settings: Settings) -> str:
    from outreach.authoring.campaigns import load_campaigns

    loaded = load_campaigns(settings)
    return getattr(loaded, "campaigns", loaded)["speaking-tour"].steps[0].id


def test_resend_unknown_asks_then_makes_unknown_deliveries_pending_again(run, db_url):
    # given a run with one delivery sent and one whose outcome is unknown
    run("db", "upgrade")
    engine = make_engine(db_url)
    people(engine, ("a@example.org", [], {"status": "confirmed"}), ("b@example.org", [], {"status": "confirmed"}))
    run_id = create_run(engine, "camp", "mail", T0)
    plan_deliveries(engine, run_id, "email", "news", audience_select(None, {}), T0)
    mark_run_planned(engine, run_id)
    with engine.connect() as conn:
        ids = conn.execute(sa.select(deliveries.c.id).order_by(deliveries.c.id)).scalars().all()
    rows = claim(engine, ids, "w1", T0 + timedelta(minutes=5), now=T0)
    record_sent(engine, rows[0].id, "<1@mail>")
    record_unknown(engine, rows[1].id, "connection closed before the server confirmed it")
    # when the operator declines at the prompt, then nothing changes
    result = CliRunner().invoke(cli, ["resend-unknown", str(run_id)], obj=Context.of(Settings(database_url=db_url)),
                                input="n\n")
    assert result.exit_code == 1 and "1 deliveries of run" in result.output and "may have arrived" in result.output
    assert get_delivery(engine, rows[1].id).state == "unknown"
    # when confirmed with --yes, then only the unknown one is pending again
    result = run("resend-unknown", str(run_id), "--yes")
    assert result.exit_code == 0 and "1 deliveries of run" in result.stdout
    assert [get_delivery(engine, r.id).state for r in rows] == ["sent", "pending"]
    # and asking again says there is nothing to resend; an unknown run is named
    assert "no delivery with an unknown outcome" in run("resend-unknown", str(run_id)).stdout
    missing = CliRunner().invoke(cli, ["resend-unknown", "999"], obj=Context.of(Settings(database_url=db_url)))
    assert missing.exit_code == 1 and "there is no run 999" in missing.output
    engine.dispose()
