"""Sign-up with double opt-in: the form, the JSON endpoint, the confirmation queued in the
ledger, the confirm page and its POST, limits, the honeypot, and what is never changed."""
from __future__ import annotations

import time

import sqlalchemy as sa
from starlette.testclient import TestClient

from outreach.delivery.system import CONFIRM_STEP, SYSTEM_CAMPAIGN
from outreach.store import get_subscriber, get_tags, suppress
from outreach.store.schema import deliveries, runs

from .conftest import BASE, CONFIRM, csrf_of, link, person


def confirmations(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(deliveries.c.recipient, deliveries.c.state).join(runs, runs.c.id == deliveries.c.run_id)
            .where(runs.c.campaign == SYSTEM_CAMPAIGN, runs.c.step == CONFIRM_STEP).order_by(deliveries.c.id))]


def sign_up(client, **fields):
    token = csrf_of(client.get("/subscribe").text)
    return client.post("/subscribe", data={"csrf": token, **fields})


def test_the_form_makes_a_pending_subscriber_and_queues_one_confirmation(client, engine):
    # when someone fills in the form (the browser's script gave its time zone)
    done = sign_up(client, email="Neo@Example.org", name="Neo Kim", timezone="Asia/Seoul",
                   topics=["events", "not-a-topic"])
    # then they are told to check their inbox
    assert done.status_code == 200 and "Check your inbox" in done.text
    # and a pending subscriber exists with what they gave, topics limited to the organization's
    neo = get_subscriber(engine, "neo@example.org")
    assert (neo.status, neo.name, neo.timezone) == ("pending", "Neo Kim", "Asia/Seoul")
    assert get_tags(engine, neo.id) == ["events"]
    # and one confirmation delivery waits for the dispatcher's next tick
    assert confirmations(engine) == [("Neo@example.org", "pending")]


def test_a_bad_time_zone_from_the_browser_is_left_out_and_a_bad_address_is_explained(client, engine):
    assert sign_up(client, email="zed@example.org", timezone="Asia").status_code == 200
    assert get_subscriber(engine, "zed@example.org").timezone is None
    bad = sign_up(client, email="not an address")
    assert bad.status_code == 400 and "valid email address" in bad.text and confirmations(engine) == [
        ("zed@example.org", "pending")]


def test_a_confirmed_bounced_or_suppressed_address_gets_the_same_answer_and_nothing_changes(client, engine):
    # given people the form must not touch
    person(engine, "old@example.org", name="Old Name")
    person(engine, "gone@example.org", status="bounced")
    person(engine, "quiet@example.org", status="unsubscribed")
    suppress(engine, "quiet@example.org", "complaint")
    for email in ("old@example.org", "gone@example.org", "quiet@example.org"):
        # when someone signs them up (with another name)
        answer = sign_up(client, email=email, name="Mallory")
        # then the answer is the same as for anyone, and nothing is changed or sent
        assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert get_subscriber(engine, "old@example.org").name == "Old Name"
    assert get_subscriber(engine, "gone@example.org").status == "bounced"
    assert get_subscriber(engine, "quiet@example.org").status == "unsubscribed"
    assert confirmations(engine) == []


def test_someone_who_unsubscribed_can_sign_up_again_and_must_confirm(client, engine):
    person(engine, "back@example.org", status="unsubscribed")
    sign_up(client, email="back@example.org")
    assert get_subscriber(engine, "back@example.org").status == "pending"
    assert confirmations(engine) == [("back@example.org", "pending")]


def test_repeated_sign_ups_send_one_confirmation_a_day_and_are_limited(client, engine):
    # given the limits of the test project: 3 an hour per address, 5 an hour per client
    answers = [sign_up(client, email="flood@example.org").status_code for _ in range(4)]
    # then the fourth for the same address is refused, and only one email was queued today
    assert answers == [200, 200, 200, 429]
    assert confirmations(engine) == [("flood@example.org", "pending")]
    # and the client is limited across addresses too
    more = [sign_up(client, email=f"p{i}@example.org").status_code for i in range(3)]
    assert more[-1] == 429


def test_the_honeypot_is_answered_as_if_it_worked_and_does_nothing(client, engine):
    answer = sign_up(client, email="bot@example.org", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert get_subscriber(engine, "bot@example.org") is None and confirmations(engine) == []


def test_the_form_refuses_a_cross_site_post_and_accepts_a_framed_one_without_cookie(app, engine):
    with TestClient(app, base_url=BASE) as browser:
        # a post from another site's page
        hostile = browser.post("/subscribe", data={"email": "x@example.org"}, headers={"sec-fetch-site": "cross-site"})
        assert hostile.status_code == 403
        # the form inside a frame on the organization's site, where the browser sent no cookie
        browser.cookies.clear()
        framed = browser.post("/subscribe", data={"email": "y@example.org", "csrf": "whatever"},
                              headers={"sec-fetch-site": "same-origin"})
        assert framed.status_code == 200
    assert get_subscriber(engine, "x@example.org") is None and get_subscriber(engine, "y@example.org") is not None


def test_the_form_may_be_framed_by_the_organizations_site_only(client):
    csp = client.get("/subscribe").headers["content-security-policy"]
    assert "frame-ancestors 'self' https://www.example.org" in csp
    assert "x-frame-options" not in client.get("/subscribe").headers
    assert client.get("/healthz").headers["x-frame-options"] == "DENY"


def test_the_json_endpoint(client, engine):
    # a sign-up from the organization's site, in Korean
    answer = client.post("/api/subscribe", json={"email": "ko@example.org", "language": "ko", "topics": ["supporter"]},
                         headers={"origin": "https://www.example.org"})
    assert answer.status_code == 202 and answer.json() == {"status": "check-inbox"}
    assert answer.headers["access-control-allow-origin"] == "https://www.example.org"
    ko = get_subscriber(engine, "ko@example.org")
    assert (ko.status, ko.language) == ("pending", "ko")
    # other sites get no CORS permission; bad bodies get a 4xx naming the problem
    assert "access-control-allow-origin" not in client.options(
        "/api/subscribe", headers={"origin": "https://evil.example"}).headers
    assert client.post("/api/subscribe", content="email=a@b.org",
                       headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
    assert client.post("/api/subscribe", content="{", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/api/subscribe", json=["a"]).status_code == 400
    assert "invalid email" in client.post("/api/subscribe", json={"email": "nope"}).json()["error"]


def test_confirming_takes_a_post_and_a_get_changes_nothing(client, site, engine):
    sign_up(client, email="neo@example.org")
    neo = get_subscriber(engine, "neo@example.org")
    url = link(site, CONFIRM, neo)
    # when the link is opened (a person, or a mail scanner following every GET)
    page = client.get(url)
    assert page.status_code == 200 and "Confirm my subscription" in page.text
    assert get_subscriber(engine, "neo@example.org").status == "pending"
    # and the button is pressed
    done = client.post(url, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    neo = get_subscriber(engine, "neo@example.org")
    assert neo.status == "confirmed" and neo.consent_at is not None
    # a replay is harmless
    assert client.post(url, data={"csrf": csrf_of(page.text)}).status_code == 200
    assert get_subscriber(engine, "neo@example.org").status == "confirmed"


def test_an_old_confirmation_link_cannot_bring_back_someone_who_left(client, site, engine):
    sign_up(client, email="neo@example.org")
    neo = get_subscriber(engine, "neo@example.org")
    url = link(site, CONFIRM, neo)
    csrf = csrf_of(client.get(url).text)
    client.post(url, data={"csrf": csrf})
    from outreach.store import set_status
    set_status(engine, "neo@example.org", "unsubscribed")
    assert client.post(url, data={"csrf": csrf}).status_code == 410
    assert get_subscriber(engine, "neo@example.org").status == "unsubscribed"


def test_an_expired_or_forged_confirmation_link_confirms_nothing(client, site, engine):
    sign_up(client, email="neo@example.org")
    neo = get_subscriber(engine, "neo@example.org")
    old = site.signer.url(CONFIRM, neo.link_id, issued_at=int(time.time()) - 8 * 86400).removeprefix(BASE)
    csrf = csrf_of(client.get("/subscribe").text)
    assert client.get(old).status_code == 410
    assert client.post(old, data={"csrf": csrf}).status_code == 410
    forged = link(site, CONFIRM, neo)[:-3] + "abc"
    assert client.post(forged, data={"csrf": csrf}).status_code == 400
    assert get_subscriber(engine, "neo@example.org").status == "pending"
