"""/act/{token}: the supporter's letter page, and actions recorded once, on POST only."""
from __future__ import annotations

import html
import re

import sqlalchemy as sa

from outreach.content.links import ACT, UNSUBSCRIBE
from outreach.store import add_subscriber, get_subscriber
from outreach.store.schema import actions
from tests.web.conftest import csrf_of, path_of


def texan(engine, email: str = "tex@example.org"):
    add_subscriber(engine, email, name="Olivia Martinez", city="Dallas", region="TX", country="US",
                   timezone="America/Chicago", latitude="32.78", longitude="-96.80", tags=["supporter"])
    return get_subscriber(engine, email)


def act_path(app, who, campaign: str = "cta") -> str:
    return path_of(app.state.site.signer.url(ACT, who.link_id, campaign))


def recorded(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(actions.c.campaign, actions.c.action, actions.c.target))]


def test_the_page_shows_the_letter_the_office_and_its_contacts(act_app, act_client, engine):
    # given a supporter in Dallas / when they open their act link
    who = texan(engine)
    page = act_client.get(act_path(act_app, who))
    assert page.status_code == 200
    text = html.unescape(page.text)
    # then their office (Texas is served from Washington), every contact channel, and their letter
    assert "Embassy" in text and "embassy@example.gov" in text and "chicago@example.gov" not in text
    assert 'href="tel:+1 202 555 0100"' in text and "https://x.com/EmbassyX" in text
    assert "https://embassy.example.gov/contact" in text
    assert "Dear Consul," in text and "Olivia Martinez" in text and "Dallas, TX" in text
    assert 'href="mailto:embassy@example.gov,un@example.gov?subject=' in text
    assert 'data-copy="body"' in text and "/static/copy.js" in text
    # and a form per action, each with a CSRF token
    assert text.count('method="post"') == 2 and csrf_of(page.text)
    # and nothing was recorded by looking
    assert recorded(engine) == []


def test_a_get_of_an_action_link_records_nothing_and_a_post_records_once(act_app, act_client, engine):
    who = texan(engine)
    link = act_path(act_app, who) + "/sent_letter"
    # when a link scanner follows the link from the email
    confirm = act_client.get(link)
    assert confirm.status_code == 200 and "Did you send the letter?" in confirm.text
    assert recorded(engine) == []
    # when the supporter presses the button
    done = act_client.post(link, data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 200 and "Thank you" in done.text
    # then the action is recorded with the office it went to, and the next thing is offered
    assert recorded(engine) == [("cta", "sent_letter", "US/Embassy/Washington, DC")]
    assert "I posted it" in done.text and "/posted" in done.text
    # and a second press (a retry, another tab) changes nothing
    again = act_client.post(link, data={"csrf": csrf_of(confirm.text)})
    assert again.status_code == 200 and len(recorded(engine)) == 1
    # and the page says it is done
    assert "Recorded: I sent it" in act_client.get(act_path(act_app, who)).text


def test_refused_without_csrf_for_another_action_or_with_a_forged_token(act_app, act_client, engine):
    who = texan(engine)
    base = act_path(act_app, who)
    assert act_client.post(base + "/sent_letter", data={}).status_code == 403
    assert act_client.get(base + "/donated").status_code == 404
    page = act_client.get(base)
    assert act_client.post(base + "/donated", data={"csrf": csrf_of(page.text)}).status_code == 404
    token = base.rsplit("/", 1)[1]
    forged = base[: -len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert act_client.get(forged).status_code == 400
    # an unsubscribe token is not an act token
    unsub = path_of(act_app.state.site.signer.url(UNSUBSCRIBE, who.link_id, "cta")).rsplit("/", 1)[1]
    assert act_client.get(f"/act/{unsub}").status_code == 400
    # a campaign that is not there (any more) is over, politely
    assert act_client.get(act_path(act_app, who, "gone")).status_code == 410
    assert recorded(engine) == []


def test_the_page_is_translated(act_app, act_client, engine):
    who = texan(engine)
    page = act_client.get(act_path(act_app, who) + "?lang=ko")
    assert page.headers["content-language"] == "ko"
    assert "편지" in page.text  # "letter"
    assert re.search(r'<html lang="ko"', page.text)
