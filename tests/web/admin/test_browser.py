"""The dashboard in headless Chromium (Debian's chromium + chromedriver, as tests/web/
test_browser.py): sign in, watch a run's progress move while a worker's batches go out
through a real SMTP server (no reload: the page's own script updates it), pause it through
the confirmation page; on a phone-sized window nothing is wider than the screen."""
from __future__ import annotations

import pytest

from outreach.delivery.sender import send_batch
from outreach.store import get_run

from ..browser import browser, serving  # noqa: F401  (the browser fixture)
from .conftest import PASSWORD, admin_settings, make_run


@pytest.fixture
def served(tmp_path, metrics_key):
    def settings_for(db: str, smtp_port: int, base_url: str):
        return admin_settings(tmp_path / "project", db, smtp_port=smtp_port, OUTREACH_BASE_URL=base_url)

    with serving(tmp_path, settings_for) as s:
        yield s.base, s.rt


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
