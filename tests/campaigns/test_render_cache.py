"""The render cache gives exactly what a full render gives, and refuses templates it cannot
prove safe to cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from outreach.compose import Composer
from outreach.links import LinkSigner
from outreach.render_cache import plan_for
from outreach.samples import sample_recipients
from outreach.settings import load_settings
from outreach.templating import Recipient, Renderer
from outreach.validation import validate

ROOT = Path(__file__).resolve().parents[2]


def test_cached_renders_equal_full_renders_for_every_sample(monkeypatch):
    # given the sample campaigns and subscribers
    monkeypatch.chdir(ROOT)
    settings = load_settings(ROOT, environ={"OUTREACH_SECRET_KEY": "k"})
    campaigns = validate(settings).campaigns.campaigns
    cached = Composer(settings, LinkSigner("k", settings.base_url))
    recipients = sample_recipients(settings)
    # twins of every subscriber: same personalization, other addresses (so: other links)
    recipients += [Recipient(**{**r.__dict__, "email": "twin." + r.email}) for r in recipients]
    checked = 0
    for campaign in campaigns.values():
        for step in (s for s in campaign.steps if s.channel == "email"):
            assert cached._plan(step.template) is not None, f"{step.template} should be cacheable"
            for r in recipients:
                # when composed through the cache and by a fresh full render
                got = cached.email(campaign, step, r)
                full = Composer(settings, LinkSigner("k", settings.base_url))
                full._plans[step.template] = None  # force the full render
                want = full.email(campaign, step, r)
                # then they are identical, links included
                assert (got.subject, got.html, got.text) == (want.subject, want.html, want.text)
                assert got.list_unsubscribe_url in got.text
                assert not any(mark in got.html + got.text for mark in cached.cache.placeholders.values())
                checked += 1
    assert checked >= 100
    assert len(cached.cache._items) < checked  # the twins were served from the cache


@pytest.mark.parametrize("html, reason", [
    ('<a href="{{ links.unsubscribe | urlencode }}">x</a>', "a filter could transform a link"),
    ('{% if links.unsubscribe %}<a href="{{ links.unsubscribe }}">x</a>{% endif %}', "link in a condition"),
    ("{{ subscriber }}", "the whole subscriber"),
    ("{{ subscriber.attrs }}", "the whole attrs mapping"),
    ("{{ ['a', 'b'] | random }}", "not deterministic"),
    ("{{ lipsum(1) }}", "not deterministic"),
    ("{% include partial_name %}", "dynamic include"),
])
def test_unsafe_templates_are_not_cached(tmp_path, html, reason):
    (tmp_path / "t.html").write_text(html)
    assert plan_for(Renderer(tmp_path), ["t.html"]) is None, reason


def test_plan_keys_on_exactly_the_fields_read(tmp_path):
    (tmp_path / "t.html").write_text("{{ subscriber.first_name }} {{ subscriber.attrs.tier }} {{ links.unsubscribe }}")
    plan = plan_for(Renderer(tmp_path), ["t.html"])
    assert plan is not None and plan.fields == (("attrs", "tier"), ("first_name",))
