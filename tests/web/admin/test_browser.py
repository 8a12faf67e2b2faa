"""The dashboard in headless Chromium (Debian's chromium + chromedriver, as tests/web/
test_browser.py): sign in, watch a run's progress move while a worker's batches go out
through a real SMTP server (no reload: the page's own script updates it), pause it through
the confirmation page; on a phone-sized window nothing is wider than the screen."""
from __future__ import annotations

import secrets
import threading
import time

import pytest
import redis as redis_lib
import uvicorn

from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.sender import send_batch
from outreach.store import get_run, make_engine, upgrade
from outreach.web import create_app
from tests.channels.conftest import SmtpSink, _start

from ..conftest import REDIS_TEST_URL
from ..test_browser import _free_port, _need_browser, browser  # noqa: F401  (the browser fixture)
from .conftest import PASSWORD, admin_settings, make_run


@pytest.fixture
def served(tmp_path, metrics_key):
    _need_browser()
    sink = SmtpSink()
    controller = _start(sink)
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'outreach.db'}"
    settings = admin_settings(tmp_path / "project", db, smtp_port=controller.port,
                              OUTREACH_BASE_URL=f"http://127.0.0.1:{port}")
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
    yield f"http://127.0.0.1:{port}", rt
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


def _wait(driver, predicate, timeout: float = 15.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def test_an_operator_signs_in_and_sees_a_run_move_then_pauses_it(served, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    base, rt = served
    run_id, ids = make_run(rt.engine, 30, people=True)
    # an anonymous visitor is sent to the sign-in page, which is labelled and in a <main>
    browser.get(f"{base}/admin/runs/{run_id}")
    assert "/admin/login" in browser.current_url
    assert browser.find_element(By.CSS_SELECTOR, "label[for=user]") and browser.find_element(By.TAG_NAME, "main")
    browser.find_element(By.ID, "user").send_keys("ops")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # and comes back to the run's page
    _wait(browser, lambda d: d.current_url.endswith(f"/admin/runs/{run_id}"))
    assert _text(browser, "dd[data-state=sent]") == "0" and _text(browser, "dd[data-state=remaining]") == "30"
    browser.execute_script("window.stillTheSamePage = true")
    # when a worker's batches go out, the page shows them without being reloaded
    for batch in (ids[:10], ids[10:20]):
        assert send_batch(rt, batch).sent == 10
        expected = str(ids.index(batch[-1]) + 1)
        _wait(browser, lambda d, e=expected: _text(d, "dd[data-state=sent]") == e)
    assert _text(browser, "dd[data-state=remaining]") == "10"
    assert browser.execute_script("return window.stillTheSamePage") is True
    # the rate was sampled as it moved: a number per second and a chart
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart polyline"))
    # nothing on the page is wider than a phone
    browser.set_window_size(390, 844)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.set_window_size(1280, 900)
    # pause: the button leads to a question; confirming pauses the run
    browser.find_element(By.PARTIAL_LINK_TEXT, "Pause").click()
    _wait(browser, lambda d: "Pause this run?" in d.find_element(By.TAG_NAME, "h1").text)
    assert get_run(rt.engine, run_id).status == "planned"
    browser.find_element(By.ID, "reason").send_keys("wrong link")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/pause'] button[type=submit]").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))
    run = get_run(rt.engine, run_id)
    assert run.status == "paused" and "wrong link" in run.reason
    assert _text(browser, "[data-status]") == "paused"
    # and a batch the broker still held sends nothing of it
    assert send_batch(rt, ids[20:]).sent == 0
