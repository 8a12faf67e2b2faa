"""The advocacy page in headless Chromium, as a supporter uses it: from the link in the email
they received, copy the letter (mouse and keyboard), add a sentence of their own (the
pre-filled email follows), then say "I sent it" and land on the thank-you page."""
from __future__ import annotations

import email
import email.policy
import re
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from outreach.delivery import create_run_now
from outreach.delivery.scheduling import now_utc
from outreach.delivery.sender import send_batch
from outreach.store import add_subscriber
from outreach.store.schema import actions, deliveries
from tests.web.browser import browser, serving, shoot  # noqa: F401  (the browser fixture)
from tests.web.conftest import REDIS_TEST_URL, write_project

from .conftest import write_advocacy


@pytest.fixture
def served(tmp_path):
    env = {"OUTREACH_SECRET_KEY": "browser-secret", "OUTREACH_REDIS_URL": REDIS_TEST_URL}

    def settings_for(db: str, smtp_port: int, base_url: str):
        return write_advocacy(write_project(tmp_path / "project", {**env, "OUTREACH_DATABASE_URL": db},
                                            smtp_port=smtp_port, base_url=base_url)).settings()

    with serving(tmp_path, settings_for) as s:
        yield s.rt, s.sink


def test_from_the_email_to_i_sent_it(served, browser):  # noqa: F811
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    rt, sink = served
    engine = rt.engine
    add_subscriber(engine, "tex@example.org", name="Olivia Martinez", city="Dallas", region="TX", country="US",
                   latitude="32.78", longitude="-96.80", timezone="America/Chicago", tags=["supporter"])
    # given the call to action was sent to a supporter in Dallas
    campaign = rt.campaigns()["cta"]
    run = create_run_now(rt, campaign, campaign.step("alert"), now_utc(), due_at=now_utc())
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == run)).scalars())
    assert send_batch(rt, ids).sent == 1
    html = email.message_from_bytes(sink.received[0].data, policy=email.policy.default).get_body(("html",))
    page = re.search(r'href="(http://127\.0\.0\.1:\d+/act/[A-Za-z0-9_-]+)"', html.get_content()).group(1)
    # when they open their page from it
    browser.get(page)
    shoot(browser, "act-1-letter")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Your letter"
    assert browser.find_element(By.TAG_NAME, "main") and browser.find_element(By.CSS_SELECTOR, "label[for=body]")
    # then their office is there with its contacts
    where = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=where]").text
    assert "Embassy" in where and "embassy@example.gov" in where and "chicago@example.gov" not in where
    # when they copy the letter with the mouse, and the subject from the keyboard
    status = browser.find_element(By.ID, "copied")
    browser.find_element(By.CSS_SELECTOR, "button[data-copy=body]").click()
    WebDriverWait(browser, 5).until(lambda d: "Copy the letter" in status.text)
    subject_button = browser.find_element(By.CSS_SELECTOR, "button[data-copy=subject]")
    browser.execute_script("arguments[0].focus()", subject_button)
    subject_button.send_keys(Keys.ENTER)
    WebDriverWait(browser, 5).until(lambda d: "Copy the subject" in status.text)
    # and add a sentence of their own: the pre-filled email follows it
    body = browser.find_element(By.ID, "body")
    body.send_keys(Keys.CONTROL, Keys.END)
    body.send_keys("\nI visited Seoul last year.")
    href = browser.find_element(By.ID, "mailto").get_attribute("href")
    assert "I visited Seoul last year." in unquote(href) and len(href) <= 2000
    # when they say they sent it
    browser.find_element(By.XPATH, "//form[contains(@action, '/sent_letter')]//button").click()
    # (waiting on the old page going stale sometimes meets Chromium's "node does not belong to
    # the document" instead: wait for the new page's heading)
    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.find_element(By.TAG_NAME, "h1").text == "Thank you")
    shoot(browser, "act-2-thanks")
    assert "I posted it" in browser.find_element(By.TAG_NAME, "main").text
    with engine.connect() as conn:
        assert conn.execute(sa.select(actions.c.action, actions.c.target)).all() == [
            ("sent_letter", "US/Embassy/Washington, DC")]
