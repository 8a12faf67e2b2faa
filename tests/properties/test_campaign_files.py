"""Mutated campaign files (the sample project's, line by line) through `outreach validate`,
and through `outreach preview` when they validate: each ends in success or one-line errors
naming a file, never a traceback or a hang."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.cli import Context, cli
from outreach.settings import load_settings
from tests.properties.conftest import NASTY, bounded

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "config" / "campaigns").glob("*.yaml"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "config", root / "config")
    shutil.copytree(REPO / "templates", root / "templates")
    return root


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    sample = draw(st.sampled_from(SAMPLES))
    lines = sample.read_text(encoding="utf-8").splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "value", "value", "delete", "duplicate", "indent", "text"]))
        line = lines[i]
        if kind == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[i] = f"{key}: {draw(st.sampled_from(NASTY))}"
        elif kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(0, 8)) + line.lstrip()
        else:
            lines.insert(i, draw(st.text(max_size=40)))
        if not lines:
            lines = ["name: x"]
    return sample.name, "\n".join(lines) + "\n"


def clean(result, allowed: tuple[int, ...] = (0, 1)) -> list[str]:
    """The command ended as a person should see it end: an exit status, lines of text."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in allowed, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert (result.exit_code == 0) == (not errors), result.output
    return errors


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 30)))
@given(case=mutated())
def test_a_mutated_campaign_validates_or_is_refused_line_by_line(project, case):
    name, text = case
    target = project / "config" / "campaigns" / name
    original = target.read_text(encoding="utf-8")
    target.write_text(text, encoding="utf-8")
    try:
        with bounded(30):
            context = Context.of(load_settings(project, environ={}))
            result = CliRunner().invoke(cli, ["validate", str(target)], obj=context)
            errors = clean(result)
            for line in errors:  # each names where: a file (and line when there is one)
                assert line.split(": ", 2)[1].split(":")[0].endswith((".yaml", ".yml", ".html", ".txt")), line
            if result.exit_code == 0:
                # what validates previews (renders for a sample subscriber) without a crash
                campaign = load_settings(project, environ={})
                preview = CliRunner().invoke(cli, ["preview", text.split("name:", 1)[1].split()[0]],
                                             obj=Context.of(campaign))
                clean(preview)
    finally:
        target.write_text(original, encoding="utf-8")
