"""Templates render sandboxed, escaped and strict; subscriber data cannot break headers."""
from __future__ import annotations

import email
import email.policy

import pytest
from jinja2.exceptions import SecurityError

from outreach.channels.base import OutgoingEmail
from outreach.channels.smtp.mime import build_email
from outreach.content.templating import Renderer, one_line
from outreach.errors import TemplateRenderError
from outreach.models import Subscriber


@pytest.fixture
def renderer(tmp_path):
    def make(files: dict[str, str]) -> Renderer:
        for rel, text in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return Renderer(tmp_path)
    return make


def test_html_is_autoescaped_but_text_is_not(renderer):
    r = renderer({"a.html": "<p>{{ subscriber.name }}</p>", "a.txt": "{{ subscriber.name }}"})
    ctx = {"subscriber": Subscriber(email="e@example.org", name="<script>alert(1)</script> & co")}
    assert r.render("a.html", ctx) == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"
    assert r.render("a.txt", ctx) == "<script>alert(1)</script> & co"


def test_undefined_variable_raises_with_template_line(renderer):
    r = renderer({"b.html": "line one\n{{ nothing.here }}"})
    with pytest.raises(TemplateRenderError) as info:
        r.render("b.html", {})
    assert info.value.context["line"] == 2 and "nothing" in str(info.value)


def test_sandbox_blocks_python_internals(renderer):
    r = renderer({"c.txt": "{{ subscriber.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises((TemplateRenderError, SecurityError)):
        r.render("c.txt", {"subscriber": Subscriber(email="e@example.org")})


def test_sandbox_blocks_mutating_campaign_data(renderer):
    r = renderer({"d.txt": "{{ data.items.append(1) }}"})
    with pytest.raises((TemplateRenderError, SecurityError)):
        r.render("d.txt", {"data": {"items": []}})


def test_subject_is_always_one_line():
    assert one_line("Hello\r\nBcc: victim@example.org\x00 there") == "Hello Bcc: victim@example.org there"


def test_subscriber_name_cannot_inject_headers():
    # given a subscriber whose name and subject try to add a Bcc header
    evil = "Eve\r\nBcc: victim@example.org"
    msg = OutgoingEmail(to_addr="eve@example.org", to_name=evil, subject=f"Hi {evil}", html="<p>x</p>", text="x")
    # when the message is assembled
    raw = build_email(msg, "Org <news@example.org>", None, "example.org")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    # then there is no Bcc header and To still names only the subscriber
    assert parsed["Bcc"] is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["eve@example.org"]
    assert b"\r\nBcc:" not in raw
