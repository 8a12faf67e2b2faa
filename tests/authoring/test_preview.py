"""`outreach preview` on the shipped sample campaigns: what a manager sees is what is sent."""
from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import cli

ROOT = Path(__file__).resolve().parents[2]
CANADIAN = "emily.chen@example.com"


@pytest.fixture
def run(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "test-secret")

    def invoke(*args: str):
        result = CliRunner().invoke(cli, ["--root", str(ROOT), *args])
        assert "Traceback" not in result.output
        return result
    return invoke


def test_samples_validate(run):
    # given the shipped config/ / when validated / then it is clean
    result = run("validate", "config/")
    assert result.exit_code == 0, result.output
    assert "ok: 4 campaign(s)" in result.output


def test_call_to_action_for_a_subscriber_in_canada(run, tmp_path):
    # given a Canadian sample subscriber / when the call to action is previewed to files
    result = run("preview", "forced-repatriation", "--subscriber", CANADIAN, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "forced-repatriation.alert-email.eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    # then it is multipart text+HTML with the right headers
    assert msg.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert msg["To"].addresses[0].addr_spec == CANADIAN
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<http") and "=?" not in msg["List-Unsubscribe"]
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    # and the Canadian contact and the subscriber's name and city are in the letter, in both parts
    for body in parts.values():
        assert "chineseembassy.ca@gmail.com" in body
        assert "Emily Chen" in body and "Toronto" in body
    assert "chinaemb_fr@mfa.gov.cn" not in parts["text/plain"]
    # and the tweet thread was written with its weighted length
    tweet = (tmp_path / "forced-repatriation.alert-tweet.txt").read_text()
    assert "tweet 1/2:" in tweet and "/280 as X counts it" in tweet


def test_preview_prints_headers_parts_and_tweet_length(run):
    result = run("preview", "forced-repatriation", "--subscriber", CANADIAN)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Subject: URGENT" in out and "--- part text/plain" in out and "--- part text/html" in out
    assert "as X counts it" in out


def test_subscriber_without_listed_mission_gets_the_search_advice(run):
    result = run("preview", "forced-repatriation", "--step", "alert-email",
                 "--subscriber", "lucas.oliveira@example.com")
    assert result.exit_code == 0, result.output
    assert "email Chinese embassy" in result.output


def test_unknown_campaign_step_or_subscriber_is_a_clear_error(run):
    for args, words in ((("preview", "nope"), "no campaign named 'nope'"),
                        (("preview", "forced-repatriation", "--step", "x"), "has no step 'x'"),
                        (("preview", "forced-repatriation", "--subscriber", "who@example.org"), "no subscriber")):
        result = run(*args)
        assert result.exit_code == 1 and words in result.output, result.output
