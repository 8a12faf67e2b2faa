"""The dashboard's door: credentials only from the environment, sign-in counted in Redis,
signed sessions, and nothing under /admin (or /metrics) for anyone without them."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from outreach.cli import cli
from outreach.errors import ConfigurationError, ValidationFailed
from outreach.passwords import check_password_hash_format, hash_password, verify_password
from outreach.web import create_app
from outreach.web.admin.auth import Gate, Operator

from ..conftest import BASE, csrf_of, write_project
from .conftest import HASH, PASSWORD, TOKEN, admin_paths, admin_settings, sign_in

# --- passwords --------------------------------------------------------------------------------

def test_a_password_hash_verifies_its_password_only():
    assert verify_password(HASH, PASSWORD)
    assert not verify_password(HASH, PASSWORD + " ")
    assert not verify_password("scrypt:99999999999:8:1$a$00", PASSWORD)  # absurd cost: refused, not run
    assert not verify_password("nonsense", PASSWORD)


def test_werkzeug_style_pbkdf2_hashes_are_accepted():
    # given a hash in werkzeug's pbkdf2 format, made by hand
    import hashlib
    digest = hashlib.pbkdf2_hmac("sha256", b"s3cret-pass", b"saltsalt", 20000).hex()
    stored = f"pbkdf2:sha256:20000$saltsalt${digest}"
    check_password_hash_format(stored)
    assert verify_password(stored, "s3cret-pass") and not verify_password(stored, "other")


@pytest.mark.parametrize("bad", ["hunter2", "scrypt:3:8:1$salt$00", "md5$x$00", "scrypt:32768:8:1$salt$zz"])
def test_a_malformed_hash_is_refused_naming_the_variable(tmp_path, db_url, bad):
    with pytest.raises(ValidationFailed, match="OUTREACH_ADMIN_PASSWORD_HASH.*outreach admin password"):
        admin_settings(tmp_path, db_url, OUTREACH_ADMIN_PASSWORD_HASH=bad)


def test_a_short_token_is_refused_naming_the_variable(tmp_path, db_url):
    with pytest.raises(ValidationFailed, match="OUTREACH_ADMIN_TOKEN.*outreach admin token"):
        admin_settings(tmp_path, db_url, OUTREACH_ADMIN_TOKEN="short")


def test_credentials_may_not_live_in_the_yaml(tmp_path, db_url):
    project = write_project(tmp_path, {"OUTREACH_SECRET_KEY": "x"})
    path = tmp_path / "config" / "outreach.yaml"
    path.write_text(path.read_text() + f"admin_password_hash: '{HASH}'\n")
    with pytest.raises(ValidationFailed, match="secrets may not live in YAML"):
        project.settings()


def test_a_user_without_a_hash_stops_the_web_app_at_start(tmp_path, db_url):
    settings = admin_settings(tmp_path, db_url, OUTREACH_ADMIN_PASSWORD_HASH=None)
    with pytest.raises(ConfigurationError, match="OUTREACH_ADMIN_PASSWORD_HASH"):
        Gate(settings)


def test_the_cli_prints_env_lines_and_never_the_password():
    result = CliRunner().invoke(cli, ["admin", "password", "--user", "ops"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("OUTREACH_")]
    assert lines[0] == "OUTREACH_ADMIN_USER=ops"
    stored = lines[1].split("=", 1)[1].strip("'")
    assert verify_password(stored, PASSWORD) and PASSWORD not in result.output.replace("Password", "")
    short = CliRunner().invoke(cli, ["admin", "password"], input="short\nshort\n")
    assert short.exit_code != 0 and "12 characters" in short.output
    token = CliRunner().invoke(cli, ["admin", "token", "--for", "metrics"])
    assert re.fullmatch(r"OUTREACH_METRICS_TOKEN=[A-Za-z0-9_-]{43}\n", token.output)


# --- sessions ---------------------------------------------------------------------------------

def test_sessions_are_signed_expire_and_end_when_the_credential_changes(tmp_path, db_url):
    gate = Gate(admin_settings(tmp_path, db_url))
    value = gate.session_value(Operator("ops", "session"), now=1_000_000)
    assert gate.read_session(value, now=1_000_100) == Operator("ops", "session")
    # expired
    assert gate.read_session(value, now=1_000_000 + 13 * 3600) is None
    # tampered: another user in the body, the old tag
    body, tag = value.split(".")
    import base64
    import json
    forged = base64.urlsafe_b64encode(json.dumps({"u": "root", "e": 2_000_000, "f": "x"}).encode()).decode().rstrip("=")
    assert gate.read_session(f"{forged}.{tag}", now=1_000_100) is None
    assert gate.read_session(value[:-2] + "AA", now=1_000_100) is None
    assert gate.read_session("garbage", now=1_000_100) is None
    # a new password: the old session is worthless
    other = Gate(admin_settings(tmp_path / "2", db_url, OUTREACH_ADMIN_PASSWORD_HASH=hash_password("another one!!")))
    assert other.read_session(value, now=1_000_100) is None
    # a rotated secret key: sessions made with the previous one still verify
    rotated = Gate(admin_settings(tmp_path / "3", db_url, OUTREACH_SECRET_KEY="new-key",
                                  OUTREACH_PREVIOUS_SECRET_KEYS="admin-test-secret"))
    assert rotated.read_session(value, now=1_000_100) == Operator("ops", "session")
    # and a key no longer listed signs nothing valid
    dropped = Gate(admin_settings(tmp_path / "4", db_url, OUTREACH_SECRET_KEY="new-key"))
    assert dropped.read_session(value, now=1_000_100) is None


# --- the door ---------------------------------------------------------------------------------

def test_every_admin_page_and_action_refuses_an_anonymous_visitor(admin_app, browser_client):
    paths = admin_paths(admin_app)
    assert ("GET", "/admin") in paths and len(paths) >= 2
    for method, path in paths:
        # a person is sent to sign in; a script gets 401; neither gets the page
        page = browser_client.request(method, path, headers={"accept": "text/html", "origin": BASE},
                                      data={"csrf": "x"} if method == "POST" else None)
        if method == "GET":
            assert page.status_code == 303 and page.headers["location"].startswith("/admin/login?next="), path
        else:
            assert page.status_code in (401, 403), (method, path, page.status_code)
        api = browser_client.request(method, path, headers={"authorization": "Bearer wrong-token-" + "x" * 30})
        assert api.status_code == 401, (method, path)
        browser_client.cookies.set("outreach-admin", "e30.AAAA")
        forged = browser_client.request(method, path)
        browser_client.cookies.clear()
        assert forged.status_code in (303, 401, 403), (method, path)
    # and /metrics too
    assert browser_client.get("/metrics").status_code == 401


def test_sign_in_with_the_password_then_out(browser_client):
    # wrong password: the form again, 401, no cookie
    wrong = sign_in(browser_client, password="guess")
    assert wrong.status_code == 401 and "Wrong name, password or token" in wrong.text
    assert "outreach-admin" not in browser_client.cookies
    wrong_user = sign_in(browser_client, user="root")
    assert wrong_user.status_code == 401
    # right: back to where the person was going, with a session
    ok = sign_in(browser_client, next="/admin/schedule")
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/schedule"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert browser_client.get("/admin", headers={"accept": "text/html"}).status_code == 200
    # out: the cookie goes, and the page is refused again
    page = browser_client.get("/admin", headers={"accept": "text/html"})
    out = browser_client.post("/admin/logout", data={"csrf": csrf_of(page.text)}, headers={"origin": BASE})
    assert out.status_code == 303
    assert browser_client.get("/admin", headers={"accept": "text/html"}).status_code == 303


def test_sign_in_never_sends_anyone_to_another_site(browser_client):
    for target in ("https://evil.example/admin", "//evil.example/admin", "/\\evil.example", "/subscribe"):
        ok = sign_in(browser_client, next=target)
        assert ok.headers["location"] == "/admin", target


def test_sign_in_with_the_token_and_the_bearer_header(browser_client):
    assert sign_in(browser_client, user="", password="", token=TOKEN).status_code == 303
    browser_client.cookies.clear()
    assert browser_client.get("/admin", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    # the metrics token reads /metrics only
    assert browser_client.get("/admin", headers={"authorization": "Bearer " + "m" * 40}).status_code == 401


def test_a_cross_site_or_tokenless_sign_in_is_refused(browser_client):
    page = browser_client.get("/admin/login")
    no_token = browser_client.post("/admin/login", data={"user": "ops", "password": PASSWORD},
                                   headers={"origin": BASE})
    assert no_token.status_code == 403
    cross = browser_client.post("/admin/login", data={"csrf": csrf_of(page.text), "user": "ops",
                                                      "password": PASSWORD},
                                headers={"origin": "https://evil.example"})
    assert cross.status_code == 403 and "outreach-admin" not in browser_client.cookies


def test_guessing_is_cut_off_after_five_attempts_a_minute_even_with_the_right_password(browser_client):
    codes = [sign_in(browser_client, password=f"guess {i}").status_code for i in range(5)]
    assert codes == [401] * 5
    # the sixth, even right, is refused: the limiter counts before it checks
    limited = sign_in(browser_client)
    assert limited.status_code == 429 and "Too many attempts" in limited.text
    assert "outreach-admin" not in browser_client.cookies


def test_without_credentials_the_dashboard_is_off_and_says_what_to_set(tmp_path, db_url, engine, redis_prefix):
    settings = admin_settings(tmp_path, db_url, OUTREACH_ADMIN_USER=None, OUTREACH_ADMIN_PASSWORD_HASH=None,
                              OUTREACH_ADMIN_TOKEN=None, OUTREACH_METRICS_TOKEN=None)
    app = create_app(settings, engine=engine, limiter_prefix=redis_prefix)
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        for path in ("/admin", "/admin/login"):
            page = c.get(path, headers={"accept": "text/html"})
            assert page.status_code == 403 and "OUTREACH_ADMIN_TOKEN" in page.text
        assert c.post("/admin/login", data={"user": "admin", "password": "admin"}).status_code == 403
        assert c.get("/metrics").status_code == 401
    app.state.site.runtime.redis.close()


def test_the_sign_in_page_speaks_korean(browser_client):
    page = browser_client.get("/admin/login?lang=ko")
    assert page.status_code == 200 and 'lang="ko"' in page.text and "로그인" in page.text
