"""Done when: the sample call to action, previewed for supporters in Dallas, Denver, Seattle,
Toronto, Lyon, Osaka and Nairobi, names exactly the right office each time and no other
office of that country."""
from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from outreach.cli import cli

ROOT = Path(__file__).resolve().parents[2]
OFFICES = yaml.safe_load((ROOT / "config" / "targets" / "chinese-missions.yaml").read_text())["countries"]


@pytest.fixture
def preview(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "test-secret")

    def run(address: str, step: str = "alert-email") -> dict[str, str]:
        out = tmp_path / address
        result = CliRunner().invoke(cli, ["--root", str(ROOT), "preview", "forced-repatriation", "--step", step,
                                          "--subscriber", address, "--out", str(out)])
        assert result.exit_code == 0, result.output
        msg = email.message_from_bytes((out / f"forced-repatriation.{step}.eml").read_bytes(),
                                       policy=email.policy.default)
        return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    return run


@pytest.mark.parametrize("address, country, office", [
    ("olivia.martinez@example.org", "US", "chinaembpress_us@mfa.gov.cn"),        # Dallas: Washington
    ("dana.reyes@example.org", "US", "chineseconsulgeneral.chicago@gmail.com"),  # Denver: Chicago
    ("kai.olsen@example.com", "US", "sanfpressoffice@gmail.com"),                # Seattle: San Francisco
    ("emily.chen@example.com", "CA", "chineseembassy.ca@gmail.com"),             # Toronto: Ottawa
    ("camille.laurent@example.net", "FR", "chinaemb_fr@mfa.gov.cn"),             # Lyon: Paris
    ("yuki.tanaka@example.org", "JP", "tokyo_lb@csm.mfa.gov.cn"),                # Osaka: Tokyo
])
def test_the_call_to_action_names_exactly_the_right_office(preview, address, country, office):
    parts = preview(address)
    others = {c["email"] for c in OFFICES[country]["contacts"]} - {office}
    for body in parts.values():
        assert office in body
        for other in others - {"chinesemission@yahoo.com"}:  # NY consulate = the UN mission's address
            assert other not in body, f"{other} named for {address}"
    # and no office of any other country either
    elsewhere = {c["email"] for k, v in OFFICES.items() if k != country for c in v["contacts"]}
    assert not any(e in parts["text/plain"] for e in elsewhere - {"chinesemission@yahoo.com"})


def test_kenya_gets_the_fallback_advice_and_the_un_missions(preview):
    parts = preview("wanjiru.kamau@example.net")
    text = parts["text/plain"]
    assert "Search for the email address of the Chinese embassy in your country" in text
    assert "email Chinese embassy Kenya" in text
    assert "chinamission_gva@mfa.gov.cn" in text
    assert not any(c["email"] in text for v in OFFICES.values() for c in v["contacts"]
                   if c["email"] != "chinesemission@yahoo.com")
