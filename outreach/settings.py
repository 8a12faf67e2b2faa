"""Typed settings, loaded once and layered: defaults < config/outreach.yaml < environment
and .env < CLI flags.

Secrets (SMTP passwords, X keys, the link-signing key) are read only from the
environment or .env, never from YAML, so they cannot end up in git. Every error names
the file and key, or the environment variable, to set.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .authoring import yamlfile
from .errors import ConfigurationError, Problem, ValidationFailed

ENV_PREFIX = "OUTREACH_"
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")


def parse_duration(text: str | int | float) -> timedelta:
    """'90s', '5m', '2h', '1d' (or a number of seconds) to a timedelta."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return timedelta(seconds=text)
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 1d")
    return timedelta(seconds=float(m.group(1)) * _PERIODS[m.group(2)])


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Limit(Strict):
    """At most `count` sends per `period`, shared by every worker on every host."""

    count: int = Field(gt=0)
    period: timedelta

    @classmethod
    def parse(cls, text: str | int) -> Limit:
        count, _, period = str(text).partition("/")
        if not count.strip().isdigit() or not period:
            raise ValueError(f"{text!r} is not a rate limit; write e.g. 14/1s, 50000/1d or 100/15m")
        period = period.strip()
        if period[0].isalpha():
            period = "1" + period
        return cls(count=int(count), period=parse_duration(period))

    def __str__(self) -> str:
        return f"{self.count}/{int(self.period.total_seconds())}s"


def _limits(value: Any) -> Any:
    if isinstance(value, list):
        return [Limit.parse(v) if isinstance(v, (str, int)) else v for v in value]
    return value


class Dkim(Strict):
    domain: str
    selector: str
    private_key_file: Path


class SmtpAccount(Strict):
    """One SMTP sender. The password comes from OUTREACH_SMTP_<ACCOUNT>_PASSWORD."""

    name: str = ""
    from_: str = Field(alias="from")
    reply_to: str | None = None
    host: str = "127.0.0.1"
    port: int = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: str | None = Field(default=None, exclude=True, repr=False)
    timeout: float = 30.0
    limits: list[Limit] = Field(default_factory=list)  # none given: the channel's default limits
    unsubscribe_mailto: str | None = None
    dkim: Dkim | None = None

    _norm_limits = field_validator("limits", mode="before")(_limits)


class XAccount(Strict):
    """One X account. Keys come from OUTREACH_X_<ACCOUNT>_{CONSUMER_KEY,CONSUMER_SECRET,
    ACCESS_TOKEN,ACCESS_TOKEN_SECRET} (OAuth 1.0a) or OUTREACH_X_<ACCOUNT>_USER_TOKEN (OAuth 2.0)."""

    name: str = ""
    handle: str
    api_base: str = "https://api.x.com"
    timeout: float = Field(default=30.0, gt=0)  # seconds to wait for X's answer to one post
    limits: list[Limit] = Field(default_factory=list)  # none given: the channel's default limits
    consumer_key: str | None = Field(default=None, exclude=True, repr=False)
    consumer_secret: str | None = Field(default=None, exclude=True, repr=False)
    access_token: str | None = Field(default=None, exclude=True, repr=False)
    access_token_secret: str | None = Field(default=None, exclude=True, repr=False)
    user_token: str | None = Field(default=None, exclude=True, repr=False)

    _norm_limits = field_validator("limits", mode="before")(_limits)

    @property
    def has_credentials(self) -> bool:
        oauth1 = all((self.consumer_key, self.consumer_secret, self.access_token, self.access_token_secret))
        return oauth1 or bool(self.user_token)


class EmailSettings(Strict):
    accounts: dict[str, SmtpAccount] = Field(default_factory=dict)
    default_account: str | None = None


class XSettings(Strict):
    accounts: dict[str, XAccount] = Field(default_factory=dict)
    default_account: str | None = None


class Organization(Strict):
    name: str = "outreach"
    postal_address: str = ""
    website: str = ""


class Dispatch(Strict):
    tick_seconds: float = Field(default=5.0, gt=0)
    batch_size: int = Field(default=200, gt=0)
    # How long a queued batch may go unreported before the tick assumes it was lost.
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = Field(default=8, gt=0)
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=2)
    # How far back the very first tick of a new database looks for due occurrences.
    catch_up: timedelta = timedelta(hours=1)

    @field_validator("lease", "backoff_base", "backoff_max", "catch_up", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class Subscribers(Strict):
    """Custom attributes templates may use as subscriber.attrs.NAME."""

    attributes: list[str] = Field(default_factory=list)


class Settings(Strict):
    root: Path = Path(".")
    organization: Organization = Organization()
    base_url: str = "http://127.0.0.1:8025"
    timezone: str = "UTC"
    database_url: str = "sqlite:///var/outreach.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str | None = Field(default=None, exclude=True, repr=False)
    campaigns_dir: Path = Path("config/campaigns")
    templates_dir: Path = Path("templates")
    data_dir: Path = Path("config")
    email: EmailSettings = EmailSettings()
    x: XSettings = XSettings()
    dispatch: Dispatch = Dispatch()
    subscribers: Subscribers = Subscribers()
    segments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Where a channel whose account cannot send for real (an X account without credentials)
    # records what it would send instead, per channel (SANDBOX/x/tweets.jsonl): the demo's
    # sandbox. Unset (the default), such an account is an error naming the variables to set.
    sandbox_dir: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        _zone(v)
        return v

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else self.root / p

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def accounts(self, section: str) -> dict[str, Any]:
        """Every account of a channel's section (`email`, `x`), by name."""
        return dict(getattr(self, section).accounts)

    def account(self, section: str, name: str | None) -> Any:
        """The account `name` (or the section's default) of a channel's section: `email` or
        `x`. ConfigurationError naming the key to set when there is none."""
        accounts: EmailSettings | XSettings = getattr(self, section)
        return _account(accounts.accounts, name or accounts.default_account, section)

    def require_secret_key(self) -> str:
        if not self.secret_key:
            raise ConfigurationError(
                "no link-signing key: set OUTREACH_SECRET_KEY in the environment or .env "
                "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        return self.secret_key


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


AccountT = TypeVar("AccountT")


def _account(accounts: Mapping[str, AccountT], name: str | None, kind: str) -> AccountT:
    if name is None:
        if len(accounts) == 1:
            return next(iter(accounts.values()))
        raise ConfigurationError(
            f"no {kind} account chosen: set {kind}.default_account in config/outreach.yaml "
            f"or give the step an account (defined: {', '.join(accounts) or 'none'})")
    try:
        return accounts[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown {kind} account {name!r}: define it under {kind}.accounts in config/outreach.yaml "
            f"(defined: {', '.join(accounts) or 'none'})") from None


# --- layering ------------------------------------------------------------------------------

# Top-level keys that may be overridden by OUTREACH_<KEY>; nested keys by OUTREACH__A__B.
_ENV_KEYS = ("database_url", "redis_url", "base_url", "secret_key", "timezone")
_SMTP_SECRETS = ("password", "username")
_X_SECRETS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret", "user_token")


def _environment(root: Path, environ: dict[str, str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    dotenv = root / ".env"
    if dotenv.is_file():
        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(os.environ if environ is None else environ)  # the real environment wins over .env
    return env


def _set(tree: dict[str, Any], keys: list[str], value: Any, variable: str) -> None:
    for k in keys[:-1]:
        tree = tree.setdefault(_existing_key(tree, k), {})
        if not isinstance(tree, dict):
            raise ConfigurationError(f"{variable} sets a key inside {k!r}, which is not a section")
    tree[_existing_key(tree, keys[-1])] = value


def _existing_key(tree: dict[str, Any], env_part: str) -> str:
    """The key of `tree` that a part of a variable name means: a variable name cannot hold
    `-` or lower case, so `NEWS_LETTERS` names an account written `news-letters` or `News`."""
    if env_part in tree:
        return env_part
    return next((key for key in tree if isinstance(key, str) and account_env_name(key).lower() == env_part),
                env_part)


def load_settings(root: Path | str = ".", config_file: Path | str | None = None,
                  environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the one Settings object; raise ValidationFailed listing every problem."""
    root = Path(root).resolve()
    path = Path(config_file) if config_file else root / "config" / "outreach.yaml"
    display = os.path.relpath(path, Path.cwd()) if path.is_absolute() else str(path)
    data: dict[str, Any] = {}
    doc = yamlfile.Located(display, {}, {})
    if path.is_file():
        try:
            doc = yamlfile.load(path, display)
        except yamlfile.YamlSyntaxError as exc:
            raise ValidationFailed([exc.problem]) from None
        if doc.data is None:
            doc.data = {}
        if not isinstance(doc.data, dict):
            raise ValidationFailed([Problem(display, 1, None, "expected a mapping of settings")])
        data = dict(doc.data)
    elif config_file:
        raise ConfigurationError(f"settings file {display} does not exist")
    for secret in ("secret_key", "password"):
        if secret in data:
            raise ValidationFailed([doc.problem((secret,), "secrets may not live in YAML",
                                                f"set OUTREACH_{secret.upper()} in the environment or .env")])

    env = _environment(root, environ)
    for key in _ENV_KEYS:
        if env.get(ENV_PREFIX + key.upper()):
            data[key] = env[ENV_PREFIX + key.upper()]
    for name, value in env.items():
        if name.startswith(ENV_PREFIX + "_"):
            _set(data, [p.lower() for p in name[len(ENV_PREFIX) + 1:].split("__")], value, name)
    _inject_secrets(data, env)
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["root"] = root
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(yamlfile.problems_from(exc, doc, Settings)) from None


def _inject_secrets(data: dict[str, Any], env: dict[str, str]) -> None:
    for section, secrets, tag in (("email", _SMTP_SECRETS, "SMTP"), ("x", _X_SECRETS, "X")):
        accounts = (data.get(section) or {}).get("accounts") or {}
        if not isinstance(accounts, dict):
            continue
        for name, account in accounts.items():
            if not isinstance(account, dict):
                continue
            account.setdefault("name", name)
            for secret in secrets:
                var = f"{ENV_PREFIX}{tag}_{account_env_name(name)}_{secret.upper()}"
                if env.get(var):
                    account[secret] = env[var]
                elif secret != "username" and secret in account:
                    raise ValidationFailed([Problem("config/outreach.yaml", None,
                                                    f"{section}.accounts.{name}.{secret}",
                                                    "secrets may not live in YAML",
                                                    f"set {var} in the environment or .env")])


def account_env_name(account: str) -> str:
    """The part of an account's secret variables that names it: `news-letters` → NEWS_LETTERS."""
    return re.sub(r"[^A-Za-z0-9]", "_", account).upper()
