"""Mutated settings (config/outreach.yaml) with generated .env files: loading ends in Settings
or in ValidationFailed/ConfigurationError with one-line problems, and a secret never appears
in a message."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.errors import ConfigurationError, ValidationFailed
from outreach.settings import load_settings
from tests.properties.conftest import NASTY, bounded

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "config" / "outreach.yaml").read_text(encoding="utf-8").splitlines()
SECRET = "s3cret-never-shown"
VARIABLES = ["OUTREACH_SECRET_KEY", "OUTREACH_BASE_URL", "OUTREACH_DATABASE_URL", "OUTREACH_REDIS_URL",
             "OUTREACH_TIMEZONE", "OUTREACH__DISPATCH__BATCH_SIZE", "OUTREACH__DISPATCH__LEASE",
             "OUTREACH__EMAIL__ACCOUNTS__NEWS__PORT", "OUTREACH__EMAIL__ACCOUNTS__NEWS__FROM",
             "OUTREACH__ORGANIZATION__NAME", "OUTREACH__NOPE__X", "OUTREACH_SMTP_NEWS_PASSWORD",
             "OUTREACH_X_LINK_USER_TOKEN", "OUTREACH__EMAIL__ACCOUNTS", "OUTREACH__X__ACCOUNTS__LINK__LIMITS"]
VALUES = [v.strip('"') for v in NASTY] + [f"postgresql://u:{SECRET}@h:abc/db", f"redis://:{SECRET}@h:99999/0",
                                          "https://ok.example.org", "UTC", "500", "5m"]


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    lines = list(SAMPLE)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        if ":" in lines[i] and draw(st.booleans()):
            lines[i] = f"{lines[i].split(':', 1)[0]}: {draw(st.sampled_from(NASTY))}"
        elif draw(st.booleans()):
            del lines[i]
        else:
            lines.insert(i, draw(st.text(max_size=30)))
    return "\n".join(lines) + "\n"


@st.composite
def dotenv(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(VARIABLES))
        value = draw(st.sampled_from(VALUES) | st.text(max_size=20))
        lines.append(f"{name}={value}".encode("utf-8", "surrogatepass"))
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.binary(max_size=20)))
    return b"\n".join(lines) + b"\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 150)))
@given(yaml_text=mutated_yaml(), env_file=dotenv(),
       environ=st.dictionaries(st.sampled_from(VARIABLES), st.sampled_from(VALUES), max_size=2))
def test_settings_load_or_name_every_problem_in_one_line(root, yaml_text, env_file, environ):
    (root / "config" / "outreach.yaml").write_text(yaml_text, encoding="utf-8", errors="surrogatepass")
    (root / ".env").write_bytes(env_file)
    with bounded(10):
        try:
            load_settings(root, environ=environ)
        except ValidationFailed as exc:
            assert exc.problems
            for problem in exc.problems:
                text = str(problem)
                assert "\n" not in text and SECRET not in text, text
        except ConfigurationError as exc:
            assert "\n" not in str(exc) and SECRET not in str(exc)
