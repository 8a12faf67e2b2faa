"""What every page shares: headers, the access log, errors, probes, languages."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .conftest import UNSUBSCRIBE, link, person

WEB = Path(__file__).resolve().parents[2] / "outreach" / "web"


def test_pages_carry_the_security_headers(client):
    headers = client.get("/subscribe?lang=ko").headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "__Host-csrf=" in headers["set-cookie"] and "Secure" in headers["set-cookie"]


def test_the_access_log_names_routes_not_tokens_or_addresses(client, site, engine, caplog):
    ana = person(engine)
    url = link(site, UNSUBSCRIBE, ana)
    with caplog.at_level(logging.INFO, logger="outreach.web.access"):
        client.get(url)
        client.get("/subscribe?email=ana@example.org")
        client.get("/no/such/page/ana@example.org")
    lines = [r.getMessage() for r in caplog.records if r.name == "outreach.web.access"]
    assert lines[0].startswith("GET /unsubscribe/{token} 200")
    assert lines[1].startswith("GET /subscribe 200") and lines[2].startswith("GET - 404")
    text = "\n".join(lines)
    assert url.rsplit("/", 1)[1] not in text and "ana@" not in text and ana.link_id not in text


def test_unknown_pages_and_methods_get_a_page_not_a_traceback(client):
    assert client.get("/nope").status_code == 404
    assert client.put("/subscribe").status_code == 405


def test_no_open_redirect_anywhere(client, site, engine):
    # no page redirects, whatever it is given
    ana = person(engine)
    for url in ("/subscribe?next=https://evil.example", link(site, UNSUBSCRIBE, ana) + "?next=//evil.example"):
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 200 and "location" not in response.headers


def test_probes(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_the_language_follows_the_subscriber_then_the_browser(client, site, engine):
    ko = person(engine, "ko@example.org", language="ko-KR")
    assert 'lang="ko"' in client.get(link(site, UNSUBSCRIBE, ko)).text
    assert 'lang="ko"' in client.get("/subscribe", headers={"accept-language": "ko;q=0.9, en;q=0.8"}).text
    assert 'lang="en"' in client.get("/subscribe", headers={"accept-language": "fr, de;q=0.5"}).text
    assert "구독하기" in client.get("/subscribe?lang=ko").text


def test_every_message_of_the_pages_has_a_korean_translation():
    # given the messages the pages use now, extracted as `pybabel extract -F outreach/web/babel.cfg` does
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    methods = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    wanted = {msg[2] for msg in extract_from_dir(str(WEB), methods)}
    ko = read_po((WEB / "locale" / "ko" / "LC_MESSAGES" / "messages.po").open("rb"), locale="ko")
    translated = {m.id: m.string for m in ko if m.id and m.string and "fuzzy" not in m.flags}
    # then each has a translation (outreach/web/i18n.py says how to update the catalog)...
    assert sorted(wanted - set(translated)) == []
    # ...that keeps every placeholder of the English
    for msgid, string in translated.items():
        assert sorted(re.findall(r"%\(\w+\)s", msgid)) == sorted(re.findall(r"%\(\w+\)s", string)), msgid
