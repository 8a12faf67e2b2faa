"""A template cannot hang, exhaust memory or recurse without end: each bound stops the
rendering with a TemplateRenderError naming the template file and line. Template files are
read only from inside templates/, as UTF-8."""
from __future__ import annotations

import os
import time

import pytest

from outreach.content.templating import Limits, Renderer
from outreach.errors import TemplateRenderError


@pytest.fixture
def render(tmp_path):
    root = tmp_path / "templates"
    root.mkdir()

    def go(text: str, limits: Limits | None = None, **files: str) -> str:
        (root / "t.txt").write_text(text, encoding="utf-8")
        for rel, body in files.items():
            (root / rel).write_text(body, encoding="utf-8")
        return Renderer(root, limits=limits).render("t.txt", {"data": {"items": list(range(3))}})
    return go


def refused(render, text: str, expected: str, line: int = 1, files: tuple[str, ...] = ("t.txt",), **kwargs) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(text, **kwargs)
    assert expected in str(caught.value), caught.value
    assert caught.value.context["line"] == line, caught.value
    assert str(caught.value.context["file"]).endswith(files), caught.value


@pytest.mark.parametrize("text", [
    # nested loops whose bodies do nothing the sandbox sees: every `for` looks at the clock
    "{% set L = range(10000)|list %}{% for a in L %}{% for b in L %}{% for c in L %}{% endfor %}{% endfor %}"
    "{% endfor %}",
    "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}"
    "{% endfor %}",
])
def test_a_rendering_that_runs_too_long_stops_at_the_time_limit(render, text):
    # given a template that would loop for hours / when rendered with a 0.3 s budget
    started = time.monotonic()
    refused(render, text, "rendering took longer than 0.3 s", limits=Limits(seconds=0.3))
    # then it stopped (a bound on a hang, not a performance assertion: hours vs. a minute)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(("text", "expected"), [
    ("{{ range(10**8)|length }}", "range() of 100,000,000 items"),
    ("{{ lipsum(10**8) }}", "lipsum() takes at most 100 paragraphs"),
    ("{{ 'x' * 10**9 }}", "would make 1,000,000,000 characters"),
    ("{{ [0] * 10**9 }}", "would make 1,000,000,000 characters"),
    ("{{ 2 ** (10**7) }}", "too large a number"),
    ("{{ 'x'|center(10**9) }}", "larger than the 1,000,000 a template may use as a size"),
    ("{{ 'x'.ljust(10**9) }}", "larger than the 1,000,000 a template may use as a size"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ '%999999999d' % 1 }}", "format width"),
    ("{{ '%999999999d'|format(1) }}", "format width"),
    ("{{ ('x' * 100000)|replace('', 'y' * 1000) }}", "would make 100,101,000 characters"),
    ("{{ ('x\\n' * 1000)|indent(10**4) }}", "would make 10,012,000 characters"),
    ("{% for b in [1]|batch(10**8, 'x') %}{{ b }}{% endfor %}", "a template may use as a size"),
    # doubling a string: refused once it passes the value limit, not when memory runs out
    ("{% set ns = namespace(s='xx') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "larger than the 1,000,000 a template may make"),
    ("{% macro m(s) %}{{ m(s ~ s) }}{% endmacro %}{{ m('x') }}", "a template may make"),
    ("{% set s = 'x' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}", "output is larger than 2,000,000"),
])
def test_values_and_output_are_bounded_in_size(render, text, expected):
    refused(render, text, expected)


def test_a_macro_that_calls_itself_stops_at_the_depth_limit(render):
    refused(render, "line one\n{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "more than 50 deep", line=2)


def test_templates_including_each_other_stop_cleanly(render):
    refused(render, '{% include "b.txt" %}', "include (or extend, or call) each other without end",
            files=("t.txt", "b.txt"), **{"b.txt": '{% include "t.txt" %}'})


@pytest.mark.parametrize(("text", "expected", "line"), [
    ("ok\n{{ 1/0 }}", "division by zero", 2),
    ("{{ data.items[10] }}", "undefined variable", 1),
    ('{% include "nope.txt" %}', "template 'nope.txt' not found", 1),
    ('{% extends "nope.txt" %}', "template 'nope.txt' not found", 1),
    ("{{ data|nosuch }}", "No filter named 'nosuch'", 1),
    ("{{ int('x') }}", "undefined variable", 1),
])
def test_any_error_inside_a_template_is_a_template_render_error_with_its_line(render, text, expected, line):
    refused(render, text, expected, line=line)


def test_ordinary_templates_are_untouched_by_the_limits(render):
    text = ("{% for i in data['items'] %}{{ i }}{% if not loop.last %},{% endif %}{% endfor %} "
            "{{ '%5d' % 3 }} {{ 'ab' * 2 }} {{ 2 ** 10 }} {{ '{:,}'.format(2500000) }} {{ 'x'|center(5) }}|"
            "{% for a, b in [(1, 2)] %}{{ a + b }}{% else %}none{% endfor %}{{ range(3)|list }}")
    assert render(text) == "0,1,2     3 abab 1024 2,500,000   x  |3[0, 1, 2]"


def test_a_template_file_that_is_not_utf8_names_its_line(tmp_path):
    root = tmp_path / "templates"
    root.mkdir()
    (root / "t.txt").write_bytes(b"fine\ncaf\xe9 {{ 1 }}\n")
    with pytest.raises(TemplateRenderError) as caught:
        Renderer(root).render("t.txt", {})
    assert "not UTF-8 text" in str(caught.value) and caught.value.context["line"] == 2


def test_a_link_out_of_the_templates_folder_is_never_read(tmp_path):
    # given a secret next to templates/ and a template that is a link to it
    (tmp_path / ".env").write_text("OUTREACH_SECRET_KEY=top-secret\n")
    root = tmp_path / "templates"
    (root / "x").mkdir(parents=True)
    os.symlink(tmp_path / ".env", root / "x" / "leak.txt")
    renderer = Renderer(root)
    # then rendering it is refused without showing what it points at
    with pytest.raises(TemplateRenderError) as caught:
        renderer.render("x/leak.txt", {})
    assert "outside the templates folder" in str(caught.value) and "top-secret" not in str(caught.value)
    # and a path with .. is not found at all
    with pytest.raises(TemplateRenderError, match="not found"):
        renderer.render("../.env", {})


def test_a_surrogate_escape_in_a_template_is_refused(render):
    # found by review: Jinja decodes "\ud800" in a string literal into a lone surrogate, which
    # no email or file can hold (before: preview and send crashed encoding it)
    with pytest.raises(TemplateRenderError, match="lone surrogate") as caught:
        render('{{ "a\\ud800b" }}')
    assert str(caught.value.context["file"]).endswith("t.txt")
