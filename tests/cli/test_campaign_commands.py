"""`audience --step` and `send --dry-run` on the sample project, against a real database."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import Context, cli
from outreach.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path, db_url):
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    settings = load_settings(tmp_path, environ={"OUTREACH_SECRET_KEY": "k"}, database_url=db_url)

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), obj=Context.of(settings), catch_exceptions=False)
    assert invoke("db", "upgrade").exit_code == 0
    assert invoke("subscribers", "import", str(tmp_path / "config" / "subscribers.csv")).exit_code == 0
    return invoke


def test_audience_of_a_step_sent_per_recipient_and_of_a_post(run):
    # given the sample call to action: an email step and a tweet step
    whole = run("audience", "forced-repatriation")
    # when asking for each step's audience
    email = run("audience", "forced-repatriation", "--step", "alert-email")
    tweet = run("audience", "forced-repatriation", "--step", "alert-tweet")
    # then the email step reaches the campaign's audience, the tweet is one post from the account
    count = whole.stdout.splitlines()[0].split(": ")[1]
    assert email.exit_code == 0 and email.stdout.splitlines()[0] == f"forced-repatriation/alert-email: {count}"
    assert tweet.exit_code == 0
    assert tweet.stdout.strip() == ("forced-repatriation/alert-tweet: one tweet from libertyinnk, "
                                    "not sent per subscriber")


def test_dry_run_renders_every_message_and_sends_nothing(run):
    # given the sample call to action / when rehearsed
    result = run("send", "forced-repatriation", "--dry-run")
    # then every recipient's email was rendered without error, the thread was measured, and
    # nothing was recorded
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    email = next(line for line in lines if line.startswith("forced-repatriation/alert-email:"))
    recipients = int(email.split(": ")[1].split()[0])
    assert recipients > 10 and f"{recipients} rendered, 0 error(s)" in email and "nothing sent" in email
    tweet = next(line for line in lines if line.startswith("forced-repatriation/alert-tweet:"))
    assert "1 tweet (2 part(s); weighted length" in tweet
    assert "no run" in run("resend-unknown", "1", "--yes").stdout + run("resend-unknown", "1", "--yes").stderr


def test_dry_run_counts_an_address_stored_before_addresses_were_checked(run, db_url):
    # given one confirmed subscriber whose address was stored before the importer checked
    # addresses (an old database): not an address the SMTP channel can send to
    import sqlalchemy as sa

    from outreach.store.schema import subscribers

    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        first = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.status == "confirmed")
                             .order_by(subscribers.c.id).limit(1)).scalar_one()
        conn.execute(sa.update(subscribers).where(subscribers.c.id == first).values(email="no at sign"))
    engine.dispose()
    # when rehearsed
    result = run("send", "forced-repatriation", "--dry-run")
    # then that one message is an error in the count, and every other recipient still rendered
    assert result.exit_code == 0, result.output
    email = next(line for line in result.stdout.splitlines() if line.startswith("forced-repatriation/alert-email:"))
    assert " 1 error(s)" in email and "error for no at sign" in result.stdout
