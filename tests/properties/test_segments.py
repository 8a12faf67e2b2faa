"""Generated segment files (config/segments.yaml): each loads into filters or is refused with
located problems, and every filter that loads compiles to SQL that runs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.authoring.audience import Audience, load_segments
from outreach.errors import ValidationFailed
from outreach.store import add_subscriber, make_engine, upgrade
from outreach.store.audience import audience_count, audience_select
from tests.properties.conftest import bounded

SCALARS = st.sampled_from(["US", "us", "XX", "", "Asia", "Asia/Seoul", "en", "pt-BR", "Toronto", "a;b", "x" * 300,
                           "\x00", "'", "%", "_", "\\", "null", "1e309"]) | st.integers(-10**20, 10**20) \
    | st.booleans() | st.none() | st.text(max_size=10) | st.floats(allow_nan=True)
VALUES = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.sampled_from(["any", "all", "none", "al"]),
                                                                      st.lists(SCALARS, max_size=3), max_size=3)
KEYS = st.sampled_from(["country", "city", "language", "timezone", "tags", "attrs", "cuntry", "segment"])
FILTERS = st.dictionaries(KEYS, VALUES | st.dictionaries(st.sampled_from(["chapter", "tier", "x y"]), VALUES,
                                                          max_size=2), max_size=4)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'outreach.db'}")
    upgrade(eng)
    add_subscriber(eng, "ana@example.org", tags=["a"], country="CA", city="Toronto", timezone="America/Toronto",
                   language="en", attrs={"chapter": "toronto"})
    yield eng
    eng.dispose()


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 150)))
@given(segments=st.dictionaries(st.sampled_from(["everyone", "supporters", "x"]), FILTERS | st.none(), max_size=3))
def test_segments_load_and_compile_or_are_refused_at_their_line(engine, tmp_path_factory, segments):
    path: Path = tmp_path_factory.mktemp("config") / "segments.yaml"
    path.write_text(yaml.safe_dump(segments, allow_unicode=True), encoding="utf-8")
    with bounded(10):
        try:
            loaded = load_segments(path, "config/segments.yaml")
        except ValidationFailed as exc:
            for problem in exc.problems:
                assert problem.file == "config/segments.yaml" and "\n" not in str(problem), problem
                assert ".str]" not in str(problem) and "list[" not in str(problem), problem
            return
        for name in loaded:
            audience_count(engine, audience_select(Audience(segment=name), loaded))
