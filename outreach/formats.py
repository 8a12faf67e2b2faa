"""How a person writes the values of config files: durations, time zones, site and service
URLs, sender addresses. Each check returns the value or raises ValueError saying how to
write it; pydantic turns that into a problem at the file, line and key (or variable)."""
from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")


# Longer than any schedule or limit a person means (ten years), far below timedelta's limit.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str | int | float) -> timedelta:
    """'90s', '5m', '2h', '1d' (or a number of seconds) to a timedelta, between 0 and
    MAX_DURATION: a negative, infinite or absurdly long duration is a mistake, not a plan."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 1d")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 1d")
        seconds = float(m.group(1)) * _PERIODS[m.group(2)]
    if seconds != seconds or seconds < 0:  # NaN, or negative
        raise ValueError(f"{text!r} is not a duration: it must be 0 or more, e.g. 30s, 5m, 2h or 1d")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_base_url(url: str) -> None:
    """The public address of the web process, which every unsubscribe link starts with: an
    https URL (http only on loopback, for the demo and tests)."""
    shown = repr(re.sub(r"//[^/]*@", "//***@", url))  # never repeat a password pasted into it
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError for a malformed port)
    except ValueError:
        raise ValueError(f"{shown} is not a URL; write e.g. https://news.example.org") from None
    loopback = host in _LOOPBACK or host.startswith("127.")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(f"{shown}: links in emails must use https (http only for 127.0.0.1 or localhost); "
                         "write e.g. https://news.example.org")
    if not host or parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"{shown} is not a site address; write e.g. https://news.example.org or "
                         "https://example.org/outreach")


def check_service_url(url: str, example: str) -> None:
    """A database or Redis URL that the drivers can parse: a scheme, and a port that is a
    number from 1 to 65535 when there is one. The message never repeats the URL: it may
    hold a password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"the port is not a number from 1 to 65535; write e.g. {example}") from None
    if not parts.scheme or port == 0:
        raise ValueError(f"not a URL; write e.g. {example}")


def zone(name: str) -> ZoneInfo:
    """The zone `name`, or ValueError saying how to write one. ZoneInfo raises more than
    ZoneInfoNotFoundError: IsADirectoryError for `Asia` (a folder of zones), ValueError for
    a path or a NUL, PermissionError..."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def zone_name(name: str | None) -> str | None:
    """A pydantic validator for an optional `timezone:` field: the name, checked (see zone)."""
    if name is not None:
        zone(name)
    return name


def check_mailbox(value: str, bare: bool = False) -> None:
    """An address as the SMTP channel will need it (mime.check_address: ASCII addr-spec,
    IDN domain), optionally with a display name: `Name <news@example.org>`."""
    from email.utils import parseaddr

    from .channels.smtp.mime import check_address  # here: the channels import these settings

    name, addr = parseaddr(value)
    try:
        if not addr or (bare and name) or (bare and addr != value.strip()):
            raise ValueError
        check_address(addr)
    except ValueError:
        example = "news@example.org" if bare else "Name <news@example.org>"
        raise ValueError(f"{value!r} is not an email address; write e.g. {example}") from None
