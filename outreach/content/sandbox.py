"""The sandbox campaign templates render in, and what one rendering may cost.

Jinja2's sandbox bounds what a template may touch, not what it may cost. A rendering is
also bounded here (`Limits`), each bound checked where the sandbox lets us see the
template work (its calls, attribute lookups, operators, loops and every piece of output,
which templating.Renderer takes a few at a time):
- time: a rendering that runs longer than `seconds` stops (nested loops, `lipsum(10**8)`);
- size: output over `output_chars`, and any value (a string or list made by `*`, `**`, a
  padding filter or method, a format width) over `value_size`, stops before it is made;
- loops: `range()` of more than `range_items`; every `for` checks the clock as it goes;
- recursion: macros calling each other more than `depth` deep.
Template files are read only from inside templates/ (links resolved), as UTF-8.
"""
from __future__ import annotations

import os
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import (
    FileSystemLoader,
    TemplateError,
    TemplateNotFound,
    TemplateRuntimeError,
    nodes,
)
from jinja2.environment import Environment
from jinja2.loaders import split_template_path
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from ..models import TEMPLATE_FIELDS, Subscriber

_LOOP_GUARD = "outreach_loop_guard"  # wraps every for loop's iterable; a name no template uses
MAX_TEMPLATE_BYTES = 1_000_000


@dataclass(frozen=True)
class Limits:
    """What one rendering of one template may cost. A real newsletter renders in a few
    milliseconds into tens of kilobytes: these are far above it and far below a hang."""

    seconds: float = 2.0
    output_chars: int = 2_000_000
    value_size: int = 1_000_000
    range_items: int = 10_000
    depth: int = 50


class RenderLimitExceeded(TemplateRuntimeError):
    """A template went past one of the Limits."""


class TemplateFileError(TemplateError):
    """A template file that cannot be used: outside templates/, not UTF-8, too large."""

    def __init__(self, message: str, filename: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.filename = filename
        self.lineno = lineno


class Budget:
    """The running rendering's bounds, per thread (a process may render in several)."""

    __slots__ = ("limits", "deadline", "depth", "chunks")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.depth = 0
        self.chunks = 0


_state = threading.local()


def _budget() -> Budget | None:
    return getattr(_state, "budget", None)


def begin(limits: Limits) -> tuple[Budget, Budget | None]:
    """Start bounding a rendering in this thread: (its budget, the one to restore with `end`)."""
    previous = _budget()
    budget = _state.budget = Budget(limits)
    return budget, previous


def end(previous: Budget | None) -> None:
    _state.budget = previous


def _tick() -> None:
    budget = _budget()
    if budget is not None and time.monotonic() > budget.deadline:
        raise RenderLimitExceeded(f"rendering took longer than {budget.limits.seconds:g} s "
                                  "(a loop too long or nested too deeply?)")


def _check_size(value: Any) -> Any:
    budget = _budget()
    if budget is not None and isinstance(value, (str, list, tuple, dict)) and len(value) > budget.limits.value_size:
        raise RenderLimitExceeded(f"a value of {len(value):,} items is larger than the "
                                  f"{budget.limits.value_size:,} a template may make")
    return value


def _check_width(value: Any) -> None:
    """An integer that sizes what is made (a padding width, a repeat count) within bounds."""
    budget = _budget()
    limit = budget.limits.value_size if budget is not None else Limits.value_size
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        raise RenderLimitExceeded(f"{value:,} is larger than the {limit:,} a template may use as a size")


_FORMAT_WIDTH = re.compile(r"\d{7,}")  # a width or precision of a million or more


def _check_format(spec: Any) -> None:
    if isinstance(spec, str) and _FORMAT_WIDTH.search(spec):
        raise RenderLimitExceeded("a format width or precision of a million characters or more")


# str methods whose integer arguments size the result
_SIZING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every `for` loop's iterable: looks at the clock every 256 items, so nested loops over
    long lists stop at the time limit even when their bodies call nothing."""
    for i, item in enumerate(iterable):
        if not i & 255:
            _tick()
        yield item


def _bounded_range(*args: int) -> range:
    budget = _budget()
    limit = budget.limits.range_items if budget is not None else Limits.range_items
    items = range(*args)
    if len(items) > limit:
        raise RenderLimitExceeded(f"range() of {len(items):,} items; at most {limit:,}")
    return items


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    for value in (n, min, max):
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise RenderLimitExceeded("lipsum() takes at most 100 paragraphs of at most 100 words")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _sized_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A builtin filter that can make something much larger than its input (`center`,
    `indent`, `format`, `replace`, `batch`, `wordwrap`), refusing sizes past the limit
    before the value is made."""
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        # the value and the filter's arguments, without the context Jinja passes some filters
        values = [a for a in args if not isinstance(a, (EvalContext, Environment, Context))]
        for value in (*values, *kwargs.values()):
            _check_size(value)
            _check_width(value)
        text = values[0] if values and isinstance(values[0], str) else None
        if text is not None and name == "format":
            _check_format(text)
        elif text is not None and name == "replace" and len(values) >= 3 and isinstance(values[2], str):
            old = values[1] if isinstance(values[1], str) else ""
            _check_size_estimate(len(text) + (text.count(old) if old else len(text) + 1) * len(values[2]))
        elif text is not None and name == "indent":
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            _check_size_estimate(len(text) + (text.count("\n") + 1) * pad)
        return _check_size(function(*args, **kwargs))

    bounded.__name__ = getattr(function, "__name__", name)
    for attr in ("jinja_pass_arg",):  # keep Jinja's marker: which context the filter is passed
        if hasattr(function, attr):
            setattr(bounded, attr, getattr(function, attr))
    return bounded


def _check_size_estimate(size: int) -> None:
    budget = _budget()
    limit = budget.limits.value_size if budget is not None else Limits.value_size
    if size > limit:
        raise RenderLimitExceeded(f"this would make {size:,} characters; at most {limit:,}")


_DICT_ATTRS = frozenset(dir(dict))


class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with a fast path for the lookups that make up most of a newsletter:
    keys of plain data (campaign.data, loaded from YAML) and a recipient's fields. Neither can
    reach Python internals, so the general safety check (about 1.5 µs a lookup, a hundred
    lookups a message) is skipped for them; everything else takes the checked path. Jinja's
    order is kept: a dict's own methods (`items`, `keys`...) still win over keys.

    Every other lookup, call and intercepted operator also checks the rendering's budget."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.globals[_LOOP_GUARD] = _loop_guard
        for name in ("center", "indent", "format", "replace", "batch", "wordwrap"):
            self.filters[name] = _sized_filter(name, self.filters[name])

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict or kind is MappingProxyType:
            if attribute in obj and attribute not in _DICT_ATTRS:
                return obj[attribute]
        elif kind is Subscriber and attribute in TEMPLATE_FIELDS:
            return getattr(obj, attribute)
        _tick()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(obj)  # the sandbox hands out a wrapper: the call cannot see the string
        return _check_size(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return _check_size(super().getitem(obj, argument))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _SIZING_METHODS:
                for value in args:
                    _check_width(value)
            elif name == "replace" and len(args) >= 2 and isinstance(args[1], str):
                old = args[0] if isinstance(args[0], str) else ""
                _check_size_estimate(len(owner) + (owner.count(old) if old else len(owner) + 1) * len(args[1]))
        for value in args:
            _check_size(value)
        budget = _budget()
        if budget is not None:
            budget.depth += 1
            try:
                if budget.depth > budget.limits.depth:
                    raise RenderLimitExceeded(f"macros call each other more than {budget.limits.depth} deep "
                                              "(a macro that calls itself without end?)")
                return _check_size(super().call(__context, __obj, *args, **kwargs))
            finally:
                budget.depth -= 1
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                    _check_size_estimate(len(seq) * count)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right > 0 and right * max(abs(left).bit_length(), 1) > 4096:  # a 1,200-digit number is plenty
                raise RenderLimitExceeded(f"{left} ** {right} is too large a number")
        elif operator == "%":
            _check_format(left)
        return _check_size(super().call_binop(context, operator, left, right))

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        # Only compiled code changes: parse() (validation's static analysis) sees the template
        # as written.
        for loop in source.find_all(nodes.For):
            guard = nodes.Name(_LOOP_GUARD, "load", lineno=loop.iter.lineno)
            loop.iter = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.iter.lineno)
        return str(super()._generate(source, name, filename, defer_init=defer_init))


class Loader(FileSystemLoader):
    """Templates under one folder, read only from inside it: a link that points out of
    templates/ (to a .env, say) is refused, and a file that is not UTF-8 or too large is a
    TemplateFileError naming it, not a UnicodeDecodeError."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = root

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        try:
            pieces = split_template_path(template)
        except TemplateNotFound:  # a `..` in the name
            raise TemplateNotFound(template, f"template {template!r} not found: a template name is a path "
                                             "inside the templates folder, without ..") from None
        filename = posixpath.join(str(self.root), *pieces)
        if not os.path.isfile(filename):
            raise TemplateNotFound(template, f"template {template!r} not found in {os.path.relpath(self.root)}/")
        display = os.path.relpath(filename)
        root = os.path.realpath(self.root)
        real = os.path.realpath(filename)
        if not real.startswith(root + os.sep):
            raise TemplateFileError("a link to a file outside the templates folder: nothing outside it is read",
                                    display)
        try:
            with open(real, "rb") as stream:
                raw = stream.read(MAX_TEMPLATE_BYTES + 1)
            mtime = os.path.getmtime(real)
        except OSError as exc:
            raise TemplateFileError(f"cannot read the file: {exc.strerror or exc}", display) from None
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise TemplateFileError(f"the file is larger than {MAX_TEMPLATE_BYTES:,} bytes", display)
        try:
            contents = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TemplateFileError(f"not UTF-8 text ({exc.reason}); save the file as UTF-8", display,
                                    raw[:exc.start].count(b"\n") + 1) from None

        def uptodate() -> bool:
            try:
                return os.path.getmtime(real) == mtime
            except OSError:
                return False

        return contents, os.path.normpath(filename), uptodate
