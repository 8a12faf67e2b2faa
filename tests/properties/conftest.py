"""Property-based tests of every parser of what people write: generated and mutated inputs
must each end in success or in clean, one-line errors, within a time bound.

Example counts are bounded so the whole folder runs in about a minute. In CI (`CI` set) the
examples are derandomized, so a run is repeatable; locally each run explores new ones. Every
nasty input found this way is also kept as an explicit regression test next to the code it
broke (see the test files)."""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

settings.register_profile(
    "outreach", deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example])
settings.load_profile("outreach")


class Hang(Exception):
    """An example ran past its time bound: a hang, for a person at a terminal."""


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail an example that runs longer than `seconds` (hypothesis' deadline only looks once
    the example has finished, which a hang never does). SIGALRM: main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Values people (and copy-paste) put where they do not belong: each has broken something once.
NASTY = [
    "", " ", "~", "null", "yes", "no", "0", "-1", "-300", "1e309", ".inf", "-.inf", ".nan", "99999999999999999999",
    "99999999999999999999d", "14/0s", "0/1s", "-5m", "Asia", "America", "../etc/passwd", "/etc/passwd",
    "../.env", "..\\\\x", "\"x\\ud800\"", "\"\\udcff\"", "\"\\x00\"", "\"0 9 31 2 *\"", "\"* * * * * * *\"",
    "\"@daily\"", "\"R 9 * * *\"", "\"61 9 * * *\"", "2030-02-30 09:00", "2030-01-15", "12345",
    "\"javascript:alert(1)\"", "http://example.org", "https://", "[]", "{}", "[1, [2, [3]]]", "&a [*a]",
    "*undefined", "!!python/object:os.system x", "!!binary aGVsbG8=", "'", "\"", "{{ 1/0 }}", "a: b: c",
    "ünicode@exämple.org", "x" * 300, "=HYPERLINK(\"x\")", "\t", "\"\\r\\n\"", "0x1F", "1_000", "+1", "@x",
]
