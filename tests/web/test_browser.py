"""The real pages in headless Chromium (Debian's chromium and chromedriver, driven by
Selenium; scripts/dev installs them): subscribe → confirm from the email in the SMTP sink →
preferences → unsubscribe, as a person would, on a phone-sized and a desktop-sized window.

Screenshots of each page go to $OUTREACH_SCREENSHOTS when it is set (tests/web/browser.py).
"""
from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest

from outreach.delivery import dispatch_due
from outreach.delivery.runtime import Runtime
from outreach.delivery.scheduling import now_utc
from outreach.delivery.sender import send_batch
from outreach.store import get_subscriber, get_tags

from .browser import browser, serving, shoot  # noqa: F401  (the browser fixture)
from .conftest import REDIS_TEST_URL, write_project


@pytest.fixture
def served(tmp_path):
    env = {"OUTREACH_SECRET_KEY": "browser-secret", "OUTREACH_REDIS_URL": REDIS_TEST_URL}

    def settings_for(db: str, smtp_port: int, base_url: str):
        return write_project(tmp_path / "project", {**env, "OUTREACH_DATABASE_URL": db}, smtp_port=smtp_port,
                             base_url=base_url).settings()

    with serving(tmp_path, settings_for) as s:
        yield s.base, s.rt, s.sink


def _press(driver, button) -> None:
    """Click and wait until the next page replaced this one (a click returns before it loads)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))


def _send_due(rt: Runtime) -> None:
    queued: list[int] = []
    dispatch_due(rt, lambda channel, ids: queued.extend(ids), now_utc() + timedelta(seconds=1))
    send_batch(rt, queued)


def test_subscribe_confirm_preferences_unsubscribe(served, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    base, rt, sink = served
    engine = rt.engine
    # a person opens the sign-up form, types their address and name, keeps the topics, submits
    browser.get(f"{base}/subscribe")
    shoot(browser, "1-subscribe")
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "en"
    browser.find_element(By.ID, "email").send_keys("neo@example.org")
    browser.find_element(By.ID, "name").send_keys("Neo Kim")
    _press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "Check your inbox" in browser.find_element(By.TAG_NAME, "h1").text
    shoot(browser, "2-check-inbox")
    neo = get_subscriber(engine, "neo@example.org")
    # the browser's own time zone came with it (filled in by the page's script)
    assert neo.status == "pending" and neo.timezone == "Asia/Seoul"
    # the dispatcher's tick and a worker send the confirmation; it is in the sink
    _send_due(rt)
    (received,) = [r for r in sink.received if "neo@example.org" in r.rcpt_tos]
    text = email.message_from_bytes(received.data, policy=email.policy.default).get_body(("plain",)).get_content()
    confirm = re.search(r"http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_-]+", text).group(0)
    # opening the link shows a button and confirms nothing by itself
    browser.get(confirm)
    shoot(browser, "3-confirm")
    assert get_subscriber(engine, "neo@example.org").status == "pending"
    _press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "You are subscribed" in browser.find_element(By.TAG_NAME, "h1").text
    assert get_subscriber(engine, "neo@example.org").status == "confirmed"
    # from there, the preferences: Korean, only events, a two-week break
    _press(browser, browser.find_element(By.LINK_TEXT, "Manage your subscription"))
    shoot(browser, "4-preferences")
    browser.find_element(By.CSS_SELECTOR, "input[name=language][value=ko]").click()
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=topics]"):
        if box.is_selected() != (box.get_attribute("value") == "events"):
            box.click()
    browser.find_element(By.CSS_SELECTOR, "input[name=pause][value='2']").click()
    _press(browser, browser.find_element(By.XPATH, "//form[.//input[@name='action'][@value='save']]//button"))
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "ko"
    assert "설정이 저장되었습니다" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    shoot(browser, "5-preferences-saved-ko")
    neo = get_subscriber(engine, "neo@example.org")
    assert neo.language == "ko" and get_tags(engine, neo.id) == ["events"]
    # and at last, unsubscribe from everything
    _press(browser, browser.find_element(By.XPATH, "//form[.//input[@name='action'][@value='unsubscribe']]//button"))
    shoot(browser, "6-unsubscribed-ko")
    assert get_subscriber(engine, "neo@example.org").status == "unsubscribed"
    assert "구독이 취소되었습니다" in browser.find_element(By.CSS_SELECTOR, ".notice").text
