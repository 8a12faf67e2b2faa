"""One person's values, checked and normalized the same way wherever they come from (a CSV
row, the sign-up form, the sample file): every check raises DataError saying what is wrong
and how to write it instead.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from email_validator import EmailNotValidError, ValidatedEmail, validate_email

from ..errors import DataError
from ..models import Subscriber, SubscriberStatus

_LIMITS = {"name": 200, "city": 200, "region": 100, "consent_source": 200}
_SURROGATE = re.compile("[\ud800-\udfff]")  # not a character: no UTF-8 file, database or message holds it
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")

# Plain ASCII dot-atom local parts, the overwhelming majority: for these, email_validator's
# answer depends only on the domain, which repeats across a list, so its verdict on the domain
# is cached (importing a million rows spent most of its time re-validating gmail.com).
_SIMPLE_LOCAL = re.compile(r"^[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*$")


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    return _sendable(validate_email(f"x@{domain}", check_deliverability=False, allow_smtputf8=False)
                     ).rpartition("@")[2]


def _sendable(result: ValidatedEmail) -> str:
    """The address to store: as normalized, unless the SMTP channel would write its domain
    differently. The channel writes an address in ASCII with Python's IDNA 2003 codec,
    email_validator with IDNA 2008; where they disagree (`straße.de` is strasse.de to one and
    xn--strae-oqa.de to the other) the ASCII form is stored, so the message goes to the domain
    that was validated."""
    from ..channels.smtp.mime import check_address  # the channels import settings, which import us late

    ascii_form = result.ascii_email
    if ascii_form is None:  # not reachable with allow_smtputf8=False; kept as the guard it is
        raise EmailNotValidError("the part before the @-sign must be ASCII")
    try:
        sent = check_address(result.normalized)
    except ValueError:
        sent = None
    if sent is not None and sent.lower() == ascii_form.lower():
        return str(result.normalized)
    check_address(ascii_form)
    local = result.normalized.rpartition("@")[0]
    return f"{local}@{ascii_form.rpartition('@')[2]}"


def normalize_email(address: str) -> str:
    """The stored form of an address: domain lower-cased and IDN-decoded, local part as written
    (email_validator's `normalized`). Raises DataError naming what is wrong. An address is only
    accepted when the SMTP channel can send to it: its local part is ASCII (no SMTPUTF8) and
    its domain is stored in the form the sender writes the same way as the validator."""
    text = (address or "").strip()
    if not text:
        raise DataError("email address is empty")
    try:
        local, at, domain = text.rpartition("@")
        if at and len(text) <= 254 and len(local) <= 64 and _SIMPLE_LOCAL.match(local):
            return f"{local}@{_domain(domain)}"
        return _sendable(validate_email(text, check_deliverability=False, allow_smtputf8=False))
    except (EmailNotValidError, ValueError):
        # re-validate the whole address so the message is the one for this address
        exc: Exception = ValueError("not an address the SMTP channel can send to")
        try:
            _sendable(validate_email(text, check_deliverability=False, allow_smtputf8=False))
        except (EmailNotValidError, ValueError) as full:
            exc = full
        raise DataError(f"invalid email address {text!r}: {exc}") from None


@cache
def _country_ok(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


def normalize_country(code: str) -> str:
    value = code.strip().upper()
    if len(value) != 2 or not value.isalpha() or not _country_ok(value):
        raise DataError(f"unknown country code {code!r}; use an ISO 3166 alpha-2 code such as US, GB or KR")
    return value


@cache
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # `Asia` is a directory: IsADirectoryError
        return False
    return True


def normalize_timezone(name: str) -> str:
    value = name.strip()
    if not value or len(value) > 64 or not _zone_ok(value):
        raise DataError(f"unknown time zone {name!r}; use an IANA name such as America/New_York")
    return value


def normalize_language(tag: str) -> str:
    value = tag.strip()
    if not _LANGUAGE.match(value) or len(value) > 35:
        raise DataError(f"invalid language {tag!r}; use a code such as en, ko or pt-BR")
    return value


def normalize_status(status: str) -> SubscriberStatus:
    try:
        return SubscriberStatus(status.strip().lower())
    except ValueError:
        raise DataError(f"invalid status {status!r}; use one of {', '.join(SubscriberStatus)}") from None


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 date or date-time; a time without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"invalid date {text!r}; use ISO 8601 such as 2024-05-01 or "
                        "2024-05-01T09:30:00+02:00") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys(t.strip() for t in text.split(";") if t.strip()))
    for t in tags:
        if len(t) > 100:
            raise DataError(f"tag {t[:20]!r}... is longer than 100 characters")
    return tags


def _degrees(limit: float, what: str) -> Callable[[str], float]:
    def check(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise DataError(f"{what} {raw.strip()!r} is not a number of degrees, e.g. 38.9") from None
        if not -limit <= value <= limit:  # also NaN, which compares false
            raise DataError(f"{what} {raw.strip()!r} is not between -{limit:g} and {limit:g}")
        return value
    return check


def make_subscriber(values: Mapping[str, str | None], attrs: Mapping[str, str | None] | None = None) -> Subscriber:
    """Validate raw text values (CSV cells, form fields) into a Subscriber; raise DataError
    listing every problem. An empty value is "not given" (None)."""
    problems: list[str] = []
    out: dict[str, Any] = {}

    def take(key: str, fn: Callable[[str], Any]) -> None:
        raw = values.get(key)
        if raw is None or not str(raw).strip():
            return
        try:
            out[key] = fn(str(raw))
        except DataError as exc:
            problems.append(str(exc))

    def text(key: str) -> Callable[[str], str]:
        def check(raw: str) -> str:
            value = raw.strip()
            if len(value) > _LIMITS[key]:
                raise DataError(f"{key} is longer than {_LIMITS[key]} characters")
            return value
        return check

    for key, raw in (*values.items(), *(attrs or {}).items()):
        if raw is not None and _SURROGATE.search(str(raw)):
            problems.append(f"{key} is not text (it holds a lone surrogate such as \\ud800)")
    if problems:
        raise DataError("; ".join(problems))
    if not (values.get("email") or "").strip():
        problems.append("email address is empty")
    take("email", normalize_email)
    take("name", text("name"))
    take("city", text("city"))
    take("region", text("region"))
    take("country", normalize_country)
    take("timezone", normalize_timezone)
    take("language", normalize_language)
    take("status", normalize_status)
    take("consent_source", text("consent_source"))
    take("consent_at", parse_timestamp)
    take("tags", _tags)
    take("latitude", _degrees(90, "latitude"))
    take("longitude", _degrees(180, "longitude"))
    if ("latitude" in out) != ("longitude" in out) and not problems:
        problems.append("give both latitude and longitude, or neither")
    if problems:
        raise DataError("; ".join(problems))
    clean_attrs = {k: v.strip() for k, v in (attrs or {}).items() if v is not None and v.strip()}
    return Subscriber(attrs=MappingProxyType(clean_attrs), **out)
