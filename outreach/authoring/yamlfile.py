"""Read YAML a person wrote, keeping the line of every key so errors can point at it.

A file is bounded before it is built into Python objects: its size, how deep it nests and how
many values it holds once every alias is expanded (PyYAML expands aliases without limit, so a
"billion laughs" file of a few hundred bytes would otherwise hang whatever reads it). A value
that is not text (a lone surrogate such as "\\ud800" written as an escape) is refused here,
where its line is known, instead of crashing a preview or a send later.
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Problem

Loc = tuple[str | int, ...]

# Campaign, settings and data files are written by hand: these bounds are far above any real
# one (the sample campaigns are under 10 KB, depth 6 and 300 values) and far below what hangs.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_VALUES = 100_000  # scalars and collections, counting an alias as everything it repeats

_SURROGATE = re.compile("[\ud800-\udfff]")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML silently keeps the last one otherwise."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a single value, not a list or a mapping", key_node.start_mark)
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
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _index_lines(value_node, loc + (key,), lines)
            lines[loc + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), lines)


def _check_bounds(text: str, file: str) -> None:
    """Walk the parser's events (no recursion, nothing built) and refuse a document that nests
    too deeply, expands to too many values through its aliases, refers to itself, or holds a
    string that is not text. The composer and constructor that run afterwards recurse per
    level and copy nothing per alias, so this is what keeps them bounded."""
    open_anchors: list[str | None] = []
    sizes: list[int] = []          # values inside each open collection, expanded
    anchored: dict[str, int] = {}  # expanded size of each finished anchor
    total = 0

    def fail(event: yaml.Event, message: str, hint: str) -> typing.NoReturn:
        line = event.start_mark.line + 1 if event.start_mark else None
        raise YamlSyntaxError(Problem(file, line, None, message, hint))

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        size = 0
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            open_anchors.append(event.anchor)
            sizes.append(1)
            if len(sizes) > MAX_DEPTH:
                fail(event, f"nested more than {MAX_DEPTH} levels deep", "flatten the structure")
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, size = open_anchors.pop(), sizes.pop()
            if anchor is not None:
                anchored[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            if _SURROGATE.search(event.value):
                fail(event, "a string holds a lone surrogate (an escape such as \\ud800 that is not a character)",
                     "remove the escape or write the character itself")
            size = 1
            if event.anchor is not None:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                fail(event, f"alias *{event.anchor} refers to a value that contains it",
                     "an alias may only repeat a value that is complete")
            size = anchored.get(event.anchor or "", 1)  # an undefined alias is reported by the composer
        else:
            continue
        total += size
        if total > MAX_VALUES:
            fail(event, f"more than {MAX_VALUES:,} values once aliases are expanded",
                 "repeat less through aliases (*name), or split the file")
        if sizes:
            sizes[-1] += size


def load(path: Path, display: str | None = None) -> Located:
    """Parse `path`; raise `YamlSyntaxError` carrying a located Problem when it is not YAML,
    is too large, or is unreadable."""
    file = display or str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise YamlSyntaxError(Problem(file, None, None, f"cannot read the file: {exc.strerror or exc}",
                                      "check that it is a readable file")) from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlSyntaxError(Problem(file, None, None, f"the file is larger than {MAX_FILE_BYTES:,} bytes",
                                      "split it into smaller files")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(Problem(file, raw[:exc.start].count(b"\n") + 1, None, f"not UTF-8 text ({exc.reason})",
                                      "save the file as UTF-8")) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    loader: _UniqueKeyLoader | None = None
    try:
        _check_bounds(text, file)
        loader = _UniqueKeyLoader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.reader.ReaderError as exc:  # a control character: the reader refuses the whole text
        line = text[:exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        message = f"invalid YAML: character {chr(exc.character)!r} is not allowed"
        raise YamlSyntaxError(Problem(file, line, None, message, "remove the control character")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = " ".join(x for x in (exc.context, exc.problem) if x)
        raise YamlSyntaxError(Problem(file, mark.line + 1 if mark else None, None, f"invalid YAML: {msg}",
                                      "check indentation, colons and quotes on this line")) from None
    except yaml.YAMLError as exc:  # e.g. a control character the reader refuses
        raise YamlSyntaxError(Problem(file, None, None, f"invalid YAML: {exc}",
                                      "remove control characters; save the file as UTF-8 text")) from None
    finally:
        if loader is not None:
            loader.dispose()
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


def _clean_loc(raw: tuple[str | int, ...], data: Any, missing: bool) -> tuple[Loc, bool]:
    """pydantic's loc without the names it gives union members (`str`, `list[str]`,
    `TagFilter`): a part is kept when it is a key or index of the input, or when it is the
    last part of a `missing` error (a key the input lacks). Also says whether a part was
    dropped (the error is about one member of a union)."""
    out: list[str | int] = []
    cur = data
    dropped = False
    for i, part in enumerate(raw):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif missing and i == len(raw) - 1:
            pass
        else:
            dropped = True
            continue
        out.append(part)
    return tuple(out), dropped


def located_errors(exc: ValidationError, model: type[BaseModel], data: Any,
                   prefix: Loc = ()) -> list[tuple[Loc, str, str | None]]:
    """(loc, message, hint) for each error a person should read, in order: union members'
    alternatives merged into one message, a misspelt key reported once (as unknown, with
    the close match) rather than also as a missing one."""
    base = data
    for part in prefix:
        base = base.get(part) if isinstance(base, dict) else None
    found: list[tuple[Loc, str, str | None, bool, str]] = []
    for err in exc.errors(include_url=False):
        loc, dropped = _clean_loc(tuple(err["loc"]), base, err["type"] == "missing")
        msg, hint = err["msg"], None
        if err["type"] == "extra_forbidden" and loc:
            owner = _model_at(model, loc[:-1])
            known = sorted((f.alias or n) for n, f in owner.model_fields.items()) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), [k for k in known if k != loc[-1]], n=1)
            msg = f"unknown key {loc[-1]!r}"
            hint = f"did you mean {close[0]!r}?" if close else (
                f"allowed keys: {', '.join(known)}" if known else None)
        elif err["type"] == "missing" and loc:
            msg = f"required key {loc[-1]!r} is missing"
            hint = "add it"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        found.append((prefix + loc, msg, hint, dropped, err["type"]))
    # One member of a union that got further (a mapping with an unknown key) makes the other
    # members' "should be a valid list" noise: keep the deepest. Members failing at the same
    # place are one message: "should be a valid string or a valid list".
    deeper = {loc[:n] for loc, _, _, _, _ in found for n in range(len(loc))}
    merged: dict[Loc, tuple[list[str], str | None]] = {}
    for loc, msg, hint, dropped, _ in found:
        if dropped and loc in deeper:
            continue
        if loc in merged and dropped:
            merged[loc][0].append(msg)
        else:
            merged.setdefault(loc, ([], hint))[0].append(msg)
    out: list[tuple[Loc, str, str | None]] = []
    for loc, (messages, hint) in merged.items():
        messages = list(dict.fromkeys(messages))
        if len(messages) > 1 and all(m.startswith("Input should be ") for m in messages):
            text = "should be " + " or ".join(m[len("Input should be "):] for m in messages)
        else:
            text = "; ".join(messages)
        out.append((loc, text, hint))
    suggested = {h for _, _, h in out if h and h.startswith("did you mean")}
    return [(loc, msg, hint) for loc, msg, hint in out
            if not (msg.startswith("required key") and f"did you mean {loc[-1]!r}?" in suggested)]


def problems_from(exc: ValidationError, doc: Located, model: type[BaseModel],
                  prefix: Loc = ()) -> list[Problem]:
    return [doc.problem(loc, msg, hint) for loc, msg, hint in located_errors(exc, model, doc.data, prefix)]
