"""The render cache gives exactly what a full render gives, and refuses templates it cannot
prove safe to cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from outreach.authoring.events import outside_step
from outreach.authoring.validation import validate
from outreach.channels import SmtpChannel
from outreach.content.compose import Composer
from outreach.content.links import LinkSigner
from outreach.content.render_cache import RenderCache, plan_for
from outreach.content.templating import Renderer
from outreach.settings import load_settings
from outreach.subscribers.samples import sample_subscribers

ROOT = Path(__file__).resolve().parents[2]


def test_cached_renders_equal_full_renders_for_every_sample(monkeypatch):
    # given the sample campaigns and subscribers
    monkeypatch.chdir(ROOT)
    settings = load_settings(ROOT, environ={"OUTREACH_SECRET_KEY": "k"})
    campaigns = validate(settings).campaigns.campaigns
    cached = Composer(settings, LinkSigner("k", settings.base_url))
    recipients = sample_subscribers(settings)
    # twins of every subscriber: same personalization, other addresses (so: other links)
    recipients += [r.replace(email="twin." + r.email) for r in recipients]
    checked = 0
    for campaign in campaigns.values():
        for step in (s for s in campaign.steps if s.channel_class is SmtpChannel):
            files = SmtpChannel.template_files(step.template)
            assert cached._plan(tuple(files.values())) is not None, f"{step.template} should be cacheable"
            for r in recipients:
                if outside_step(campaign, step, r):
                    continue  # the step never renders for them (beyond every stop of a tour)
                # when composed through the cache and by a fresh full render
                got = SmtpChannel.compose(cached, campaign, step, r)
                full = Composer(settings, LinkSigner("k", settings.base_url), cache=False)
                want = SmtpChannel.compose(full, campaign, step, r)
                # then they are identical, links included
                assert (got.subject, got.html, got.text) == (want.subject, want.html, want.text)
                assert got.list_unsubscribe_url in got.text
                assert not any(mark in got.html + got.text for mark in cached.cache.placeholders.values())
                checked += 1
    assert checked >= 100
    assert len(cached.cache) < checked  # the twins were served from the cache


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


def test_the_cache_stays_within_its_memory_budget():
    # given a cache of 200 KB and renderings of ~10 KB holding an emoji (4 bytes a character)
    cache = RenderCache(max_bytes=200_000)
    mark = cache.placeholders["unsubscribe"]
    page = "<p>Dear {name} 🌍</p>" + "<p>News of the half year.</p>" * 350 + f'<a href="{mark}">leave</a>'
    # when 100 different ones are put
    for i in range(100):
        cache.put(("c", "s", i), (f"Hi {i}", page.format(name=i), f"Hi {i} {mark}"))
    # then the oldest were evicted to stay within the budget, the newest are served
    assert 0 < cache.bytes <= 200_000 and len(cache) < 100
    assert cache.get(("c", "s", 0)) is None
    subject, html, text = cache.fill(cache.get(("c", "s", 99)), {"unsubscribe": "https://x.example/u/t?a=1&b=2"},
                                     (False, True, False))
    assert html.startswith("<p>Dear 99 🌍</p>")
    assert html.endswith('<a href="https://x.example/u/t?a=1&amp;b=2">leave</a>')
    assert text == "Hi 99 https://x.example/u/t?a=1&b=2"
