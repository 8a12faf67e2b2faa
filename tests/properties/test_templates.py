"""Generated template text, rendered the way every channel renders: a string or a
TemplateRenderError naming the template, within the time bound; never anything else."""
from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.content.templating import Limits, Renderer
from outreach.errors import TemplateRenderError
from outreach.models import Subscriber
from tests.properties.conftest import bounded

SNIPPETS = [
    "{{ subscriber.name }}", "{{ subscriber.attrs.chapter }}", "{{ campaign.data.items }}", "{{ 1/0 }}",
    "{% for i in range(10**6) %}", "{% for i in campaign.data.items %}", "{% endfor %}", "{% if x %}", "{% endif %}",
    "{{ x|nosuch }}", "{% include 'nope.txt' %}", "{% include 't.txt' %}", "{% extends 'base.txt' %}",
    "{% block b %}", "{% endblock %}", "{{ lipsum(10**4) }}", "{{ 'x' * 10**7 }}", "{{ 9 ** 9 ** 9 }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{{ subscriber.__class__ }}", "{{ ''.format }}",
    "{{ '%s' % subscriber }}", "{{ range(10)|batch(10**7, 'x')|list }}", "{{ subscriber.name|center(10**8) }}",
    "{% set ns = namespace(s='ab') %}", "{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{{ campaign.data['items'][99] }}", "{{ subscriber.email.split('@') }}", "{{", "}}", "{%", "%}", "{#", "#}",
    "{{ links.unsubscribe }}", "{{ organization.name|upper }}", "\ud800", "{% raw %}", "{% endraw %}",
    "{{ dict(a=1)|tojson }}", '{{ "\\ud800" }}', "{{ '\\x00\\U0001F600' }}", "{{ cycler(1,2).next() }}",
    "{% for a, b in campaign.data.items %}{% endfor %}",
]


@st.composite
def template_text(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(SNIPPETS) | st.text(max_size=12), max_size=8))
    return "".join(parts)


CONTEXT = {
    "subscriber": Subscriber(email="ana@example.org", name="Ana", attrs=MappingProxyType({"chapter": None})),
    "campaign": MappingProxyType({"name": "c", "title": "T", "data": {"items": [1, 2, 3]}}),
    "links": MappingProxyType({"unsubscribe": "https://x.example/u"}),
    "organization": MappingProxyType({"name": "Org"}),
}


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 300)))
@given(text=template_text(), base=template_text())
def test_any_template_renders_or_fails_as_a_template_error(tmp_path_factory, text, base):
    root: Path = tmp_path_factory.mktemp("templates")
    (root / "t.txt").write_text(text, encoding="utf-8", errors="surrogatepass")
    (root / "base.txt").write_text(base + "{% block b %}{% endblock %}", encoding="utf-8", errors="surrogatepass")
    renderer = Renderer(root, limits=Limits(seconds=1.0))
    with bounded(20):
        try:
            out = renderer.render("t.txt", CONTEXT)
        except TemplateRenderError as exc:
            assert exc.context.get("file") and "\n" not in str(exc.context.get("reason", "")).strip(), exc
        else:
            assert isinstance(out, str) and len(out) <= Limits().output_chars
            out.encode("utf-8")  # what renders can be sent: every message and file is UTF-8
