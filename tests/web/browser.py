"""What the browser tests share: headless Chromium (Debian's chromium and chromedriver, driven
by Selenium; scripts/dev installs them), and the app served by uvicorn on a loopback port with
an SMTP sink and a Runtime to send with.

Without chromium a browser test is skipped locally and fails under CI.
Screenshots of each page go to $OUTREACH_SCREENSHOTS when it is set (to look at them).
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
import uvicorn

from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.settings import Settings
from outreach.store import make_engine, upgrade
from outreach.web import create_app
from tests.channels.conftest import SmtpSink, _start
from tests.conftest import delete_keys

from .conftest import REDIS_TEST_URL

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SIZES = {"phone": (390, 844), "desktop": (1280, 900)}


def need_browser() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if p is None]
    if missing:
        message = f"{' and '.join(missing)} not installed (scripts/dev test installs Debian's packages)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base: str          # the app's address, http://127.0.0.1:PORT
    rt: Runtime        # to send with, on the app's database and rate-limit keys
    sink: SmtpSink     # what was sent


@contextmanager
def serving(tmp_path: Path, settings_for: Callable[[str, int, str], Settings]) -> Iterator[Served]:
    """The app under uvicorn on a free loopback port, on a new SQLite database, a real SMTP sink
    and rate-limit keys of its own in the test Redis (deleted after). `settings_for(db_url,
    smtp_port, base_url)` writes the test's project and returns its settings."""
    need_browser()
    sink = SmtpSink()
    controller = _start(sink)
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'outreach.db'}"
    settings = settings_for(db, controller.port, f"http://127.0.0.1:{port}")
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
    try:
        yield Served(f"http://127.0.0.1:{port}", rt, sink)
    finally:
        server.should_exit = True
        thread.join(10)
        controller.stop()
        from outreach.channels import close_shared
        close_shared()
        delete_keys(redis, prefix)
        redis.close()
        engine.dispose()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium in English, believing it is in Seoul (the sign-up form must capture
    the zone)."""
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--lang=en-US"):
        options.add_argument(flag)
    service = Service(DRIVER, env={**os.environ, "TZ": "Asia/Seoul"})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def shoot(driver, name: str) -> None:
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
