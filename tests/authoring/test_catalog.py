"""The catalog re-reads campaign files only when one changed, and looks at most once per
interval however often a process asks (never per batch)."""
from __future__ import annotations

import os

from outreach.authoring import catalog as catalog_module
from outreach.authoring.catalog import Catalog
from outreach.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_files_are_looked_at_once_per_interval_and_reread_only_when_changed(project, monkeypatch):
    # given a catalog over the test project with a 5 s interval, counting its directory walks
    walks = []
    real = catalog_module.tree_signature
    monkeypatch.setattr(catalog_module, "tree_signature", lambda roots: walks.append(1) or real(roots))
    clock = Clock()
    catalog = Catalog(load_settings(project.root, environ={}), min_interval=5, clock=clock)
    # when asked many times within the interval (a worker's batches)
    first = catalog.campaigns()
    for _ in range(100):
        assert catalog.campaigns() is first
        catalog.segments()
    # then the tree was walked once and the campaigns read once
    assert len(walks) == 1 and catalog.generation == 1 and set(first) == {"hello"}
    # when the interval passes and nothing changed: one more walk, nothing re-read
    clock.now += 6
    assert catalog.campaigns() is first and len(walks) == 2 and catalog.generation == 1
    # when a template changes: the next look (after the interval) re-reads everything
    path = project.root / "templates" / "x" / "hello.txt"
    path.write_text("{{ campaign.title }} changed", encoding="utf-8")
    os.utime(path, ns=(1, 1))
    assert catalog.campaigns() is first  # still within the interval
    clock.now += 6
    assert catalog.campaigns() is not first and catalog.generation == 2


def test_a_campaign_that_stops_validating_is_left_out_and_the_others_stay(project):
    # given two campaigns, then one broken on disk
    project.campaign(project.root.joinpath("config/campaigns/hello.yaml").read_text().replace("name: hello",
                                                                                                 "name: other"),
                     name="other")
    clock = Clock()
    catalog = Catalog(load_settings(project.root, environ={}), min_interval=5, clock=clock)
    assert set(catalog.campaigns()) == {"hello", "other"}
    project.campaign("name: other\nsteps: [oops\n", name="other")
    clock.now += 6
    # then only the valid one is sent from
    assert set(catalog.campaigns()) == {"hello"}
