"""Unsubscribe: the page, the page's form, and the RFC 8058 one-click POST, with tokens that are
valid, tampered, forged, replayed, of another kind or for someone who is gone."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from outreach.content.links import LinkSigner
from outreach.store import get_subscriber
from outreach.store.schema import delivery_events, subscribers

from .conftest import BASE, PREFERENCES, UNSUBSCRIBE, VIEW, csrf_of, link, person

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def status(engine, email="ana@example.org") -> str:
    return get_subscriber(engine, email).status


def test_the_page_shows_a_masked_address_and_the_list_and_changes_nothing(client, site, engine):
    # given a confirmed subscriber's unsubscribe link
    ana = person(engine)
    # when it is opened (as a person, or a link scanner, would)
    page = client.get(link(site, UNSUBSCRIBE, ana))
    # then it names the address masked, the campaign, and offers one button
    assert page.status_code == 200
    assert "a•••@example.org" in page.text and "ana@example.org" not in page.text
    assert "Spring newsletter" in page.text and "Unsubscribe from everything" in page.text
    assert status(engine) == "confirmed"


def test_one_click_post_without_cookies_unsubscribes_at_once_and_a_second_is_harmless(app, site, engine):
    # given a mailbox provider's client: no cookies, no page visited first
    ana = person(engine)
    url = link(site, UNSUBSCRIBE, ana)
    with TestClient(app, base_url=BASE, cookies=None) as provider:
        # when it POSTs the RFC 8058 body, form-encoded
        first = provider.post(url, data=ONE_CLICK, follow_redirects=False)
        # then it is answered 200 at once, without a redirect or a cookie, and it took effect
        assert first.status_code == 200 and "set-cookie" not in first.headers
        assert status(engine) == "unsubscribed"
        # and a replay changes nothing and answers the same
        again = provider.post(url, data=ONE_CLICK, follow_redirects=False)
        assert again.status_code == 200 and status(engine) == "unsubscribed"


def test_one_click_as_multipart_form_data(app, site, engine):
    # RFC 8058 says the body SHOULD be multipart/form-data
    ana = person(engine)
    with TestClient(app, base_url=BASE) as provider:
        response = provider.post(link(site, UNSUBSCRIBE, ana), files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200 and status(engine) == "unsubscribed"


def test_the_pages_button_unsubscribes_with_a_csrf_token(client, site, engine):
    ana = person(engine)
    url = link(site, UNSUBSCRIBE, ana)
    # given the page and its form
    token = csrf_of(client.get(url).text)
    # when the button is pressed
    done = client.post(url, data={"csrf": token})
    # then the subscriber is unsubscribed, and the page offers the way back
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert status(engine) == "unsubscribed"
    assert "/preferences/" in done.text


def test_the_pages_form_without_its_token_or_from_another_site_changes_nothing(client, site, engine):
    ana = person(engine)
    url = link(site, UNSUBSCRIBE, ana)
    token = csrf_of(client.get(url).text)
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf": "forged"}).status_code == 403
    assert client.post(url, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert client.post(url, data={"csrf": token}, headers={"origin": "https://evil.example"}).status_code == 403
    assert status(engine) == "confirmed"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),   # tag altered
    lambda t: t[:3] + ("A" if t[3] != "A" else "B") + t[4:],         # link id altered
    lambda t: t[:20],                                                # cut short
    lambda t: "x" * 40,                                              # made up
])
def test_tampered_and_forged_tokens_are_refused_and_change_nothing(client, site, engine, mangle):
    ana = person(engine)
    token = link(site, UNSUBSCRIBE, ana).rsplit("/", 1)[1]
    url = f"/unsubscribe/{mangle(token)}"
    assert client.get(url).status_code == 400
    response = client.post(url, data=ONE_CLICK)
    assert response.status_code == 400 and "This link does not work" in response.text
    assert status(engine) == "confirmed"


def test_tokens_signed_with_another_key_or_of_another_kind_are_refused(client, site, engine):
    ana = person(engine)
    forged = LinkSigner("someone-elses-key", BASE).url(UNSUBSCRIBE, ana.link_id, campaign="news")
    assert client.post(forged.removeprefix(BASE), data=ONE_CLICK).status_code == 400
    for kind in (VIEW, PREFERENCES):
        other = link(site, kind, ana).rsplit("/", 1)[1]
        assert client.post(f"/unsubscribe/{other}", data=ONE_CLICK).status_code == 400
    assert status(engine) == "confirmed"


def test_a_valid_token_for_someone_deleted_is_404_and_harmless(client, site, engine):
    ana = person(engine)
    url = link(site, UNSUBSCRIBE, ana)
    with engine.begin() as conn:
        conn.execute(sa.delete(subscribers))
    assert client.get(url).status_code == 404
    assert client.post(url, data=ONE_CLICK).status_code == 404


def test_the_unsubscribe_is_recorded_on_the_last_delivery_of_that_campaign(client, site, engine):
    # given a delivery of the campaign to the subscriber
    from outreach.store import add_delivery, create_run, utcnow

    ana = person(engine)
    run = create_run(engine, "news", "letter", utcnow())
    delivery = add_delivery(engine, run, ana.email, "email", "news", utcnow(), subscriber_id=ana.id)
    # when they unsubscribe with one click
    client.post(link(site, UNSUBSCRIBE, ana), data=ONE_CLICK)
    # then the operator sees which email made them leave
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(delivery_events.c.kind).where(delivery_events.c.delivery_id == delivery)).all()
    assert [k for (k,) in kinds] == ["unsubscribed"]


def test_an_unsubscribed_person_sees_the_way_back(client, site, engine):
    ana = person(engine, status="unsubscribed")
    page = client.get(link(site, UNSUBSCRIBE, ana))
    assert page.status_code == 200 and "You are unsubscribed" in page.text and "/preferences/" in page.text
