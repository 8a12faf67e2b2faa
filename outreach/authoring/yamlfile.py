"""Read YAML a person wrote, keeping the line of every key so errors can point at it."""
from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Problem

Loc = tuple[str | int, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML silently keeps the last one otherwise."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {key!r} (first defined on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class Located:
    """A parsed YAML document and the line (1-based) of every key and list item."""

    def __init__(self, file: str, data: Any, lines: dict[Loc, int]) -> None:
        self.file = file
        self.data = data
        self._lines = lines

    def line(self, loc: Loc) -> int | None:
        """Line of the deepest prefix of `loc` that exists in the document."""
        loc = tuple(loc)
        while loc:
            if loc in self._lines:
                return self._lines[loc]
            loc = loc[:-1]
        return self._lines.get((), 1)

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> Problem:
        return Problem(self.file, self.line(loc), _dotted(loc), message, hint)


def _dotted(loc: Loc) -> str | None:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _index_lines(value_node, loc + (key,), lines)
            lines[loc + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), lines)


def load(path: Path, display: str | None = None) -> Located:
    """Parse `path`; raise `YamlSyntaxError` carrying a located Problem when it is not YAML."""
    file = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(Problem(file, None, None, f"not UTF-8 text ({exc.reason})",
                                      "save the file as UTF-8")) from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = " ".join(x for x in (exc.context, exc.problem) if x)
        raise YamlSyntaxError(Problem(file, line, None, f"invalid YAML: {msg}",
                                      "check indentation, colons and quotes on this line")) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return Located(file, data, lines)


class YamlSyntaxError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


# --- turning pydantic errors into located, actionable problems ---------------------------

def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return [annotation]


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at `loc`, for did-you-mean suggestions."""
    current: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for ann in current:
            origin = typing.get_origin(ann)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                field = ann.model_fields.get(str(part)) or next(
                    (f for f in ann.model_fields.values() if f.alias == part), None)
                if field is not None:
                    nxt.extend(_unwrap(field.annotation))
            elif origin in (list, tuple, dict):
                nxt.extend(_unwrap(typing.get_args(ann)[-1]))
            elif isinstance(part, str) and origin is None:
                # a discriminated union member is named by its tag in the loc; skip it
                nxt.append(ann)
        current = nxt or current
        if not nxt:
            break
    for ann in current:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
    return None


def problems_from(exc: ValidationError, doc: Located, model: type[BaseModel],
                  prefix: Loc = ()) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = err["msg"]
        hint = None
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[len(prefix):-1])
            known = sorted((f.alias or n) for n, f in owner.model_fields.items()) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = f"unknown key {loc[-1]!r}"
            hint = f"did you mean {close[0]!r}?" if close else (
                f"allowed keys: {', '.join(known)}" if known else None)
        elif err["type"] == "missing":
            msg = f"required key {loc[-1]!r} is missing"
            hint = "add it"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(doc.problem(loc, msg, hint))
    # A misspelt required key shows up twice (unknown 'templat', missing 'template'):
    # the did-you-mean already says it, so drop the "missing" half.
    suggested = {(p.line, p.hint) for p in out if p.hint and p.hint.startswith("did you mean")}
    return [p for p in out if not (p.message.startswith("required key") and
                                   any(h == f"did you mean {p.message.split(chr(39))[1]!r}?" for _, h in suggested))]
