"""Hotspots from py-spy's raw collapsed stacks (`py-spy record --format raw`).

Each line is `frame;frame;...;leaf COUNT`, root first. A function's cumulative (inclusive)
share is the fraction of samples whose stack contains it; its own (self) share, the
fraction where it is the leaf. Frames found in (nearly) every sample are the pool process's
startup chain (runpy, click, celery bootsteps, billiard's work loop) and say nothing, so
they are left out of the cumulative list.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_LINE_NO = re.compile(r":\d+\)$")
EVERYWHERE = 99.0  # percent of samples above which a frame is part of the startup chain


def _function(frame: str) -> str:
    # "send (outreach/channels/base.py:81)" -> "send (outreach/channels/base.py)"
    return _LINE_NO.sub(")", frame.strip())


def _stacks(path: Path):
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield [_function(f) for f in stack.split(";") if "(" in f], int(count)


def hotspots(path: Path, top: int = 15) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """(samples, top cumulative, top self)."""
    cumulative: Counter[str] = Counter()
    own: Counter[str] = Counter()
    samples = 0
    for frames, n in _stacks(path):
        samples += n
        for fn in set(frames):
            cumulative[fn] += n
        if frames:
            own[frames[-1]] += n
    if not samples:
        return 0, [], []
    cum = [(100.0 * c / samples, fn) for fn, c in cumulative.most_common()
           if 100.0 * c / samples < EVERYWHERE][:top]
    return samples, cum, [(100.0 * c / samples, fn) for fn, c in own.most_common(top)]


def format_rows(rows: list[tuple[float, str]]) -> str:
    return "\n".join(f"  {pct:6.1f}%  {fn}" for pct, fn in rows)
