"""Render campaign templates in Jinja2's sandbox, within bounds.

Templates are written by campaign managers and filled with subscriber data, so they
render sandboxed (no attribute tricks into Python internals, no rendering that runs for
ever or makes megabytes: sandbox.py), HTML is autoescaped, and an undefined variable
raises instead of printing a blank. Subject lines are forced onto one line so no
subscriber field can smuggle a header break into the message. Anything that goes wrong
inside a template (`{{ 1/0 }}`, a missing include, a limit) is a TemplateRenderError naming
the template file and line.
"""
from __future__ import annotations

import os
import re
import time
import traceback
import typing
from collections.abc import Generator, Mapping
from functools import cached_property
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateNotFound, select_autoescape

from ..errors import TemplateRenderError
from ..models import Subscriber
from . import sandbox
from .sandbox import Budget, Limits, Loader, RenderLimitExceeded, Sandbox, TemplateFileError

__all__ = ["Limits", "Renderer", "TemplateFileError", "describe_template_error", "one_line"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def one_line(text: str) -> str:
    """Collapse whitespace and drop control characters: a header value never breaks a line."""
    return " ".join(_CONTROL.sub(" ", text).split())


class Renderer:
    """Compiles each template once (Jinja2 caches by name) and renders it per recipient."""

    def __init__(self, templates_dir: Path, organization: Mapping[str, Any] | Any = None,
                 limits: Limits | None = None) -> None:
        self.templates_dir = templates_dir
        self.loader = Loader(templates_dir)
        self.limits = limits or Limits()
        self.env = Sandbox(
            loader=self.loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html", "htm"), default_for_string=False),
            # whitespace is left as written: text parts and tweets are whitespace-sensitive,
            # and `{%- -%}` gives authors exact control where they want it
            auto_reload=False,
            cache_size=-1,
        )
        self.organization = organization
        self._exists: dict[str, bool] = {}

    def exists(self, name: str) -> bool:
        # remembered: asked once per message, and the loader reads the file each time
        # (templates do not change under a running Renderer: auto_reload is off)
        known = self._exists.get(name)
        if known is None:
            try:
                self.loader.get_source(self.env, name)
                known = True
            except TemplateNotFound:
                known = False
            except TemplateFileError:
                known = True  # it is there; rendering it says what is wrong with it
            self._exists[name] = known
        return known

    def autoescapes(self, name: str) -> bool:
        """Whether `name` renders with HTML autoescaping (by its extension)."""
        auto = self.env.autoescape
        return bool(auto(name) if callable(auto) else auto)

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """`name` rendered with `context`, within the Limits; TemplateRenderError naming the
        template file and line for anything that goes wrong in it."""
        budget, previous = sandbox.begin(self.limits)
        try:
            return self._render(name, context, budget)
        except RecursionError as exc:
            file, line, _ = describe_template_error(exc, name)
            reason = "templates include (or extend, or call) each other without end"
            raise TemplateRenderError(f"{file}:{line}: {reason}" if line else f"{file}: {reason}", template=name,
                                      file=file, line=line, reason=reason) from None
        except Exception as exc:  # whatever a template raises is the template's error, e.g. {{ 1/0 }}
            raise self._error(exc, name) from None
        finally:
            sandbox.end(previous)

    def _render(self, name: str, context: Mapping[str, Any], budget: Budget) -> str:
        # Template.render, but taking the output a few pieces at a time (in C: islice, map) to
        # stop at the size and time limits, thrown in where the template is so the error names
        # its line. Pieces are references to strings already made: only the join copies them.
        template = self.env.get_template(name)
        pieces = typing.cast(Generator[str, None, None],
                             template.root_render_func(template.new_context(dict(context))))
        out: list[str] = []
        size = 0
        limits = self.limits
        try:
            while batch := list(islice(pieces, 32)):
                out += batch
                size += sum(map(len, batch))
                if size > limits.output_chars:
                    pieces.throw(RenderLimitExceeded(f"the output is larger than {limits.output_chars:,} characters"))
                if time.monotonic() > budget.deadline:
                    pieces.throw(RenderLimitExceeded(f"rendering took longer than {limits.seconds:g} s"))
        except Exception:
            self.env.handle_exception()  # re-raised with the template's file and line in the traceback
        text = "".join(out)
        if not text.isascii() and _SURROGATE.search(text):
            # an escape such as "\ud800" in the template: no message or file can hold it
            exc = RenderLimitExceeded("the output holds a lone surrogate (an escape such as \\ud800 that is not "
                                      "a character)")
            exc.filename = template.filename  # type: ignore[attr-defined]  # where describe_template_error looks
            raise exc
        return text

    @staticmethod
    def _error(exc: BaseException, name: str) -> TemplateRenderError:
        file, line, reason = describe_template_error(exc, name)
        where = f"{file}:{line}" if line else file
        return TemplateRenderError(f"{where}: {reason}", template=name, file=file, line=line, reason=reason)

    def context(self, campaign: Any, step: Any, recipient: Subscriber | None, links: Any) -> dict[str, Any]:
        ctx: dict[str, Any] = {"campaign": campaign.view, "step": step.view, "organization": self._organization}
        if recipient is not None:
            ctx["subscriber"] = recipient
        if links is not None:
            ctx["links"] = MappingProxyType(links.__dict__)  # plain data: the sandbox's fast path
        return ctx

    @cached_property
    def _organization(self) -> Mapping[str, Any]:
        org = self.organization
        return MappingProxyType(org.model_dump() if hasattr(org, "model_dump") else dict(org or {}))


def describe_template_error(exc: BaseException, fallback: str) -> tuple[str, int | None, str]:
    """(template file, line, reason): Jinja2 rewrites tracebacks so frames carry the
    template file and line, which is what a campaign manager needs to fix it."""
    filename, lineno = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    if lineno is None:
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename and not frame.filename.endswith(".py"):
                filename, lineno = frame.filename, frame.lineno
                break
    if filename is not None and os.path.isabs(filename):
        filename = os.path.relpath(filename)
    reason = getattr(exc, "message", None) or str(exc)
    if type(exc).__name__ == "UndefinedError":
        reason = f"undefined variable: {reason}"
    elif not isinstance(exc, TemplateError):  # a Python error inside the template: say which
        reason = "division by zero" if isinstance(exc, ZeroDivisionError) else f"{type(exc).__name__}: {reason}"
    return filename or fallback, lineno, reason
