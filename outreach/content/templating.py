"""Render campaign templates in Jinja2's sandbox.

Templates are written by campaign managers and filled with subscriber data, so they
render sandboxed (no attribute tricks into Python internals), HTML is autoescaped, and
an undefined variable raises instead of printing a blank. Subject lines are forced onto
one line so no subscriber field can smuggle a header break into the message.
"""
from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import TemplateRenderError
from ..models import TEMPLATE_FIELDS, Subscriber

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str) -> str:
    """Collapse whitespace and drop control characters: a header value never breaks a line."""
    return " ".join(_CONTROL.sub(" ", text).split())


_DICT_ATTRS = frozenset(dir(dict))


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with a fast path for the lookups that make up most of a newsletter:
    keys of plain data (campaign.data, loaded from YAML) and a recipient's fields. Neither can
    reach Python internals, so the general safety check (about 1.5 µs a lookup, a hundred
    lookups a message) is skipped for them; everything else takes the checked path. Jinja's
    order is kept: a dict's own methods (`items`, `keys`...) still win over keys."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict or kind is MappingProxyType:
            if attribute in obj and attribute not in _DICT_ATTRS:
                return obj[attribute]
        elif kind is Subscriber and attribute in TEMPLATE_FIELDS:
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)


class Renderer:
    """Compiles each template once (Jinja2 caches by name) and renders it per recipient."""

    def __init__(self, templates_dir: Path, organization: Mapping[str, Any] | Any = None) -> None:
        self.templates_dir = templates_dir
        self.loader = FileSystemLoader(str(templates_dir))
        self.env = _Sandbox(
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
            self._exists[name] = known
        return known

    def autoescapes(self, name: str) -> bool:
        """Whether `name` renders with HTML autoescaping (by its extension)."""
        auto = self.env.autoescape
        return bool(auto(name) if callable(auto) else auto)

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except TemplateError as exc:
            file, line, reason = describe_template_error(exc, name)
            where = f"{file}:{line}" if line else file
            raise TemplateRenderError(f"{where}: {reason}", template=name, file=file, line=line,
                                      reason=reason) from None

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
    reason = getattr(exc, "message", None) or str(exc)
    if type(exc).__name__ == "UndefinedError":
        reason = f"undefined variable: {reason}"
    return filename or fallback, lineno, reason
