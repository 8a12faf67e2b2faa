"""View online and the preferences page."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from outreach.store import get_subscriber, get_tags, utcnow
from outreach.store.audience import audience_count, audience_select
from outreach.store.schema import subscribers

from .conftest import PREFERENCES, VIEW, csrf_of, link, person


def test_view_online_shows_the_email_as_that_subscriber_got_it(client, site, engine):
    ana = person(engine, name="Ana <Lee>")
    page = client.get(link(site, VIEW, ana))
    assert page.status_code == 200
    # their own greeting (escaped as in the email), the footer's links signed for them
    assert "Dear Ana &lt;Lee&gt;, spring is here." in page.text
    assert site.signer.url(PREFERENCES, ana.link_id) in page.text
    # served under a CSP that runs no script and lets no one frame it
    csp = page.headers["content-security-policy"]
    assert "sandbox" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"


def test_view_online_when_the_campaign_step_or_subscriber_is_gone(client, site, engine):
    ana = person(engine)
    for context in ({"campaign": "removed"}, {"step": "removed"}):
        gone = client.get(link(site, VIEW, ana, **context))
        assert gone.status_code == 410 and "no longer available" in gone.text
    url = link(site, VIEW, ana)
    with engine.begin() as conn:
        conn.execute(sa.delete(subscribers))
    assert client.get(url).status_code == 404


def test_preferences_save_language_topics_and_a_pause(client, site, engine):
    ana = person(engine, tags=["supporter", "donor"])
    url = link(site, PREFERENCES, ana)
    page = client.get(url)
    assert page.status_code == 200 and "General news" in page.text and "Events near you" in page.text
    # when they choose Korean, events instead of general news, and a 4-week pause
    saved = client.post(url, data={"csrf": csrf_of(page.text), "action": "save", "language": "ko",
                                   "topics": ["events"], "pause": "4"})
    # then the page answers in Korean and the choices are stored; other tags are untouched
    assert saved.status_code == 200 and 'lang="ko"' in saved.text and "설정이 저장되었습니다" in saved.text
    ana = get_subscriber(engine, ana.email)
    assert ana.language == "ko" and get_tags(engine, ana.id) == ["donor", "events"]
    with engine.connect() as conn:
        paused = conn.execute(sa.select(subscribers.c.paused_until)).scalar_one()
    assert timedelta(weeks=4) - timedelta(minutes=5) < paused - utcnow() <= timedelta(weeks=4)
    # and a paused subscriber is in no audience until then
    assert audience_count(engine, audience_select(None, {})) == 0
    resumed = client.post(url, data={"csrf": csrf_of(saved.text), "action": "save", "pause": "none"})
    assert resumed.status_code == 200
    assert audience_count(engine, audience_select(None, {})) == 1


def test_preferences_unsubscribe_and_subscribe_again(client, site, engine):
    ana = person(engine)
    url = link(site, PREFERENCES, ana)
    csrf = csrf_of(client.get(url).text)
    assert "unsubscribed" in client.post(url, data={"csrf": csrf, "action": "unsubscribe"}).text
    assert get_subscriber(engine, ana.email).status == "unsubscribed"
    # a save from an old page does not turn them back on
    assert client.post(url, data={"csrf": csrf, "action": "save", "language": "ko"}).status_code == 400
    assert "Welcome back" in client.post(url, data={"csrf": csrf, "action": "resubscribe"}).text
    assert get_subscriber(engine, ana.email).status == "confirmed"


def test_preferences_refuse_a_forged_form_or_token(client, site, engine):
    ana = person(engine)
    url = link(site, PREFERENCES, ana)
    client.get(url)
    assert client.post(url, data={"action": "unsubscribe"}).status_code == 403
    assert client.post(url[:-4] + "abcd", data={"action": "unsubscribe"}).status_code == 400
    assert get_subscriber(engine, ana.email).status == "confirmed"
