"""The sample speaking tour on the sample subscribers, through the commands a manager runs:
the invitation reaches only supporters within 150 km of a stop (Torrance is invited to Los
Angeles although no stop is spelled Torrance), the others get the livestream, and preview
names each supporter's stop at the venue's time and theirs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    env = {"OUTREACH_SECRET_KEY": "test-secret", "OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}"}

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--root", str(ROOT), *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output
    invoke("db", "upgrade")
    invoke("subscribers", "import", "config/subscribers.csv")
    return invoke


def recipients(output: str) -> set[str]:
    return set(re.findall(r"^  (\S+@\S+)", output, re.M))


def test_the_invitation_goes_to_supporters_near_a_stop_and_the_livestream_to_the_others(run):
    invited = recipients(run("audience", "speaking-tour", "--step", "invitation", "--sample", "100"))
    streamed = recipients(run("audience", "speaking-tour", "--step", "livestream", "--sample", "100"))
    assert {"olivia.martinez@example.org", "caleb.johnson@example.com", "priya.raman@example.net",
            "joon.lee@example.org", "aisha.thompson@example.org"} <= invited       # Torrance: near LA
    assert {"dana.reyes@example.org", "kai.olsen@example.com"} <= streamed          # Denver, Seattle
    assert not invited & streamed
    # only US supporters (the campaign's audience), and nobody confirmed is left out
    assert "emily.chen@example.com" not in invited | streamed
    assert "ruth.adeyemi@example.com" in streamed                                    # no city: no place


def test_preview_names_the_stop_at_the_venues_time_and_the_readers(run):
    out = run("preview", "speaking-tour", "--step", "invitation", "--subscriber", "joon.lee@example.org")
    assert "Subject: North Korean Advocacy Fellows are coming to Los Angeles: join us" in out
    assert "Tuesday, October 19, 7:30 PM PDT" in out
    out = run("preview", "speaking-tour", "--step", "invitation", "--subscriber", "dana.reyes@example.org")
    assert "not sent to dana.reyes@example.org: not within 150 km of any stop" in out
