"""The real pages in headless Chromium (Debian's chromium and chromedriver, driven by
Selenium; scripts/dev installs them): subscribe → confirm from the email in the SMTP sink →
preferences → unsubscribe, as a person would, on a phone-sized and a desktop-sized window.

Screenshots of each page go to $OUTREACH_SCREENSHOTS when it is set (to look at them).
Without chromium the test is skipped locally and fails under CI.
"""
from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import shutil
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_lib
import uvicorn

from outreach.delivery import dispatch_due
from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.scheduling import now_utc
from outreach.delivery.sender import send_batch
from outreach.store import get_subscriber, get_tags, make_engine, upgrade
from outreach.web import create_app
from tests.channels.conftest import SmtpSink, _start

from .conftest import REDIS_TEST_URL, write_project

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SIZES = {"phone": (390, 844), "desktop": (1280, 900)}


def _need_browser() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if p is None]
    if missing:
        message = f"{' and '.join(missing)} not installed (scripts/dev test installs Debian's packages)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """The app under uvicorn on a loopback port, an SMTP sink, and a Runtime to send with."""
    _need_browser()
    sink = SmtpSink()
    controller = _start(sink)
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'outreach.db'}"
    env = {"OUTREACH_SECRET_KEY": "browser-secret", "OUTREACH_DATABASE_URL": db, "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    settings = write_project(tmp_path / "project", env, smtp_port=controller.port,
                             base_url=f"http://127.0.0.1:{port}").settings()
    engine = make_engine(db)
    upgrade(engine)
    prefix = f"outreach-test:{secrets.token_hex(4)}"
    redis = redis_lib.Redis.from_url(REDIS_TEST_URL)
    app = create_app(settings, engine=engine, redis=redis, limiter_prefix=prefix)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    rt = Runtime(settings, engine=engine, redis=redis)
    rt.__dict__["limiter"] = RateLimiter(redis, key_prefix=f"{prefix}:rl")
    yield f"http://127.0.0.1:{port}", rt, sink
    server.should_exit = True
    thread.join(10)
    controller.stop()
    from outreach.channels import close_shared
    close_shared()
    keys = list(redis.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis.delete(*keys)
    redis.close()
    engine.dispose()


@pytest.fixture
def browser(tmp_path):
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--lang=en-US"):
        options.add_argument(flag)
    # the browser believes it is in Seoul: the sign-up form must capture that zone
    service = Service(DRIVER, env={**os.environ, "TZ": "Asia/Seoul"})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def _shoot(driver, name: str) -> None:
    """Each page on a phone and a desktop window, when $OUTREACH_SCREENSHOTS asks for it;
    and in any case: nothing wider than the window (no sideways scrolling on a phone)."""
    where = os.environ.get("OUTREACH_SCREENSHOTS")
    for size, (w, h) in SIZES.items():
        driver.set_window_size(w, h)
        inner = driver.execute_script("return window.innerWidth")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= inner, f"{name} is wider than a {size} window ({scroll} > {inner})"
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(where) / f"{name}-{size}.png"))
    driver.set_window_size(*SIZES["desktop"])


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


def test_subscribe_confirm_preferences_unsubscribe(served, browser):
    from selenium.webdriver.common.by import By

    base, rt, sink = served
    engine = rt.engine
    # a person opens the sign-up form, types their address and name, keeps the topics, submits
    browser.get(f"{base}/subscribe")
    _shoot(browser, "1-subscribe")
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "en"
    browser.find_element(By.ID, "email").send_keys("neo@example.org")
    browser.find_element(By.ID, "name").send_keys("Neo Kim")
    _press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "Check your inbox" in browser.find_element(By.TAG_NAME, "h1").text
    _shoot(browser, "2-check-inbox")
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
    _shoot(browser, "3-confirm")
    assert get_subscriber(engine, "neo@example.org").status == "pending"
    _press(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "You are subscribed" in browser.find_element(By.TAG_NAME, "h1").text
    assert get_subscriber(engine, "neo@example.org").status == "confirmed"
    # from there, the preferences: Korean, only events, a two-week break
    _press(browser, browser.find_element(By.LINK_TEXT, "Manage your subscription"))
    _shoot(browser, "4-preferences")
    browser.find_element(By.CSS_SELECTOR, "input[name=language][value=ko]").click()
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=topics]"):
        if box.is_selected() != (box.get_attribute("value") == "events"):
            box.click()
    browser.find_element(By.CSS_SELECTOR, "input[name=pause][value='2']").click()
    _press(browser, browser.find_element(By.XPATH, "//form[.//input[@name='action'][@value='save']]//button"))
    assert browser.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "ko"
    assert "설정이 저장되었습니다" in browser.find_element(By.CSS_SELECTOR, ".notice").text
    _shoot(browser, "5-preferences-saved-ko")
    neo = get_subscriber(engine, "neo@example.org")
    assert neo.language == "ko" and get_tags(engine, neo.id) == ["events"]
    # and at last, unsubscribe from everything
    _press(browser, browser.find_element(By.XPATH, "//form[.//input[@name='action'][@value='unsubscribe']]//button"))
    _shoot(browser, "6-unsubscribed-ko")
    assert get_subscriber(engine, "neo@example.org").status == "unsubscribed"
    assert "구독이 취소되었습니다" in browser.find_element(By.CSS_SELECTOR, ".notice").text
