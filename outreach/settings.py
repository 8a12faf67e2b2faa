"""Typed settings, loaded once and layered: defaults < config/outreach.yaml < environment
and .env < CLI flags.

Secrets (SMTP passwords, X keys, the link-signing key) are read only from the
environment or .env, never from YAML, so they cannot end up in git. Every error names
the file and key, or the environment variable, to set.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .authoring import yamlfile
from .errors import ConfigurationError, Problem, ValidationFailed
from .formats import check_base_url, check_mailbox, check_service_url
from .formats import parse_duration as parse_duration  # where settings and campaigns used to find it
from .formats import zone as _zone
from .passwords import MIN_TOKEN, check_password_hash_format

ENV_PREFIX = "OUTREACH_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
AccountT = TypeVar("AccountT")
class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Limit(Strict):
    """At most `count` sends per `period`, shared by every worker on every host."""

    count: int = Field(gt=0)
    period: timedelta

    @field_validator("period")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("the period of a rate limit must be longer than 0, e.g. 14/1s")
        return v

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

    @field_validator("from_", "reply_to")
    @classmethod
    def _mailbox(cls, v: str | None) -> str | None:
        if v is not None:
            check_mailbox(v)
        return v

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            check_mailbox(v, bare=True)
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError(f"port {v} is not a TCP port; use 1 to 65535 (25, 465 or 587 for SMTP)")
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if not 0 < v <= 3600:
            raise ValueError(f"timeout {v} must be between 0 and 3600 seconds")
        return v


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


def _distinct(accounts: dict[str, AccountT]) -> dict[str, AccountT]:
    """Account names that map to different secret variables: `a-b` and `a_b` would both
    read OUTREACH_SMTP_A_B_PASSWORD."""
    seen: dict[str, str] = {}
    for name in accounts:
        key = account_env_name(name)
        if key in seen:
            raise ValueError(f"accounts {seen[key]!r} and {name!r} would share the secret variables "
                             f"OUTREACH_*_{key}_*; rename one of them")
        seen[key] = name
    return accounts


class EmailSettings(Strict):
    accounts: dict[str, SmtpAccount] = Field(default_factory=dict)
    default_account: str | None = None

    _distinct = field_validator("accounts")(_distinct)


class XSettings(Strict):
    accounts: dict[str, XAccount] = Field(default_factory=dict)
    default_account: str | None = None

    _distinct = field_validator("accounts")(_distinct)


class Organization(Strict):
    """Who sends: shown in every email's footer, which the law wants (CAN-SPAM: a postal
    address). Required by `outreach validate` when any campaign sends email."""

    name: str = ""
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
        return parse_duration(v) if isinstance(v, (str, int, float)) else v

    @field_validator("lease", "backoff_base", "backoff_max")
    @classmethod
    def _positive(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        if v <= timedelta(0):
            raise ValueError(f"dispatch.{info.field_name} must be longer than 0, e.g. 5m")
        return v


class Subscribers(Strict):
    """Custom attributes templates may use as subscriber.attrs.NAME."""

    attributes: list[str] = Field(default_factory=list)


# --- the web process (outreach web) -------------------------------------------------------

def _origin(value: str) -> str:
    m = re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?/?", value.strip())
    if not m:
        raise ValueError(f"{value!r} is not an origin; write e.g. https://www.example.org (scheme and host, "
                         "no path)")
    return value.strip().rstrip("/").lower()


class Web(Strict):
    """`outreach web`: the subscriber pages (unsubscribe, view online, sign-up, preferences)."""

    # Sites that may show the sign-up form in a frame (CSP frame-ancestors) and post to
    # /api/subscribe from a browser (CORS), e.g. https://www.example.org. Empty: none.
    embed_origins: list[str] = Field(default_factory=list)
    # Proxies (the TLS terminator) whose X-Forwarded-For and X-Forwarded-Proto are believed:
    # the client address they name is what the sign-up limits count.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    # Sign-ups (each may send a confirmation email) per address and per client address.
    signup_limits_per_address: list[Limit] = Field(default_factory=lambda: [Limit.parse("3/1h"),
                                                                            Limit.parse("5/1d")])
    signup_limits_per_client: list[Limit] = Field(default_factory=lambda: [Limit.parse("30/1h")])
    # How long the link in a confirmation email works, and the email account that sends it
    # (default: email.default_account).
    confirm_expires: timedelta = timedelta(days=7)
    confirm_account: str | None = None

    _norm_limits = field_validator("signup_limits_per_address", "signup_limits_per_client", mode="before")(_limits)

    @field_validator("embed_origins", mode="before")
    @classmethod
    def _origins(cls, v: Any) -> Any:
        return [_origin(o) if isinstance(o, str) else o for o in v] if isinstance(v, list) else v

    @field_validator("confirm_expires", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


# --- bounces and complaints -----------------------------------------------------------------

_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class Breaker(Strict):
    """A run whose rates pass these, once it has sent `min_sent`, pauses itself."""

    min_sent: int = Field(default=500, ge=1)
    hard_bounce_rate: float = Field(default=0.05, gt=0, le=1)  # Gmail and Yahoo reject bulk senders well before
    complaint_rate: float = Field(default=0.001, gt=0, le=1)   # they ask for under 0.1%, reject at 0.3%


class Webhooks(Strict):
    """Provider webhooks under /webhooks/PROVIDER of `outreach web`. A provider is served only
    once it is configured: its secret (env), key or topics set."""

    # Amazon SES through SNS: the topics whose messages are believed (ARNs), and the hosts
    # SNS signing certificates and subscription URLs may come from (a full-match pattern).
    ses_topics: list[str] = Field(default_factory=list)
    sns_hosts: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    sns_schemes: list[Literal["https", "http"]] = Field(default_factory=lambda: ["https"])  # type: ignore[arg-type]
    # SendGrid's signed event webhook: its verification key (public, base64 as SendGrid shows it).
    sendgrid_public_key: str | None = None
    # Postmark: the user name of the basic auth in the webhook's URL; the password is
    # OUTREACH_POSTMARK_WEBHOOK_PASSWORD.
    postmark_username: str = "postmark"
    postmark_password: str | None = Field(default=None, exclude=True, repr=False)
    # Mailgun: OUTREACH_MAILGUN_WEBHOOK_KEY, the "HTTP webhook signing key".
    mailgun_signing_key: str | None = Field(default=None, exclude=True, repr=False)
    # Signed requests older (or further in the future) than this are refused as replays.
    tolerance: timedelta = timedelta(minutes=10)

    @field_validator("tolerance", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, (str, int, float)) else v

    @field_validator("sns_hosts")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"{v!r} is not a regular expression ({exc})") from None
        return v


class Bounces(Strict):
    """Bounces and complaints: VERP envelope senders, the suppression rules, the breaker."""

    # Envelope senders are local_part+TOKEN@domain (VERP): a bounce names its delivery.
    # Unset: the account's own address is the envelope sender, and bounces are matched by
    # Message-ID or address only. The domain's MX must reach `outreach bounces serve` (or an
    # MTA piping to `outreach bounces ingest`).
    domain: str | None = None
    local_part: str = "bounces"
    # Soft bounces (mailbox full, greylisted for days) suppress after this many in `soft_window`.
    soft_limit: int = Field(default=3, ge=1)
    soft_window: timedelta = timedelta(days=7)
    breaker: Breaker = Breaker()
    webhooks: Webhooks = Webhooks()
    # `outreach bounces serve` offers STARTTLS with this certificate (PEM, the chain after the
    # server's own) and key, as mail servers expect of an MX; unset, it takes bounces in clear.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> Bounces:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key (a PEM certificate and its private key), or neither")
        return self

    @field_validator("soft_window", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, (str, int, float)) else v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is not None and not _DOMAIN.fullmatch(v.strip().lower()):
            raise ValueError(f"{v!r} is not a domain name; write e.g. bounces.example.org")
        return v.strip().lower() if v is not None else None

    @field_validator("local_part")
    @classmethod
    def _local(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,30}", v):
            raise ValueError(f"{v!r} is not a short local part; use lower-case letters, digits, . _ -, e.g. bounces")
        return v

    @property
    def verp(self) -> bool:
        return self.domain is not None


# A topic's label: one text, or one per language ({en: Events, ko: 행사}).
TopicLabel = str | dict[str, str]


class Settings(Strict):
    root: Path = Path(".")
    organization: Organization = Organization()
    base_url: str = "http://127.0.0.1:8025"
    timezone: str = "UTC"
    database_url: str = "sqlite:///var/outreach.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str | None = Field(default=None, exclude=True, repr=False)
    # Keys that signed links before the current one (OUTREACH_PREVIOUS_SECRET_KEYS, comma-
    # separated): links they made still verify. Keep a replaced key here for at least 60 days.
    previous_secret_keys: list[str] = Field(default_factory=list, exclude=True, repr=False)
    # The operator's dashboard (/admin): a user and a password hash (`outreach admin password`
    # makes one), or a token (`outreach admin token`), or both; none set, the dashboard is off.
    # /metrics wants OUTREACH_METRICS_TOKEN (what Prometheus sends) or the admin token. All
    # four come only from the environment or .env: there are no default credentials.
    admin_user: str | None = Field(default=None, exclude=True)
    admin_password_hash: str | None = Field(default=None, exclude=True, repr=False)
    admin_token: str | None = Field(default=None, exclude=True, repr=False)
    metrics_token: str | None = Field(default=None, exclude=True, repr=False)
    campaigns_dir: Path = Path("config/campaigns")
    templates_dir: Path = Path("templates")
    data_dir: Path = Path("config")
    email: EmailSettings = EmailSettings()
    x: XSettings = XSettings()
    dispatch: Dispatch = Dispatch()
    subscribers: Subscribers = Subscribers()
    segments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Tags a subscriber may choose on the preferences page and the sign-up form, with their
    # labels; a campaign reaches only those who chose one by filtering on its tag.
    topics: dict[str, TopicLabel] = Field(default_factory=dict)
    web: Web = Web()
    bounces: Bounces = Bounces()
    # Where a channel whose account cannot send for real (an X account without credentials)
    # records what it would send instead, per channel (SANDBOX/x/tweets.jsonl): the demo's
    # sandbox. Unset (the default), such an account is an error naming the variables to set.
    sandbox_dir: Path | None = None
    # The least severe log events the worker, beat and web processes write (one JSON line
    # each, outreach/logs.py): DEBUG, INFO, WARNING, ERROR or CRITICAL. OUTREACH_LOG_LEVEL,
    # or a command's --loglevel, overrides it.
    log_level: str = "INFO"

    _source: Path | None = PrivateAttr(default=None)
    _doc: yamlfile.Located | None = PrivateAttr(default=None)

    @property
    def source_file(self) -> Path | None:
        """The settings file these settings were read from; None when there was none."""
        return self._source

    def problem(self, loc: yamlfile.Loc, message: str, hint: str | None = None) -> Problem:
        """A problem with the setting at `loc`, at its line of the settings file."""
        if self._doc is not None:
            return self._doc.problem(loc, message, hint)
        return Problem("config/outreach.yaml", None, ".".join(map(str, loc)), message, hint)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        _zone(v)
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{v!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("previous_secret_keys", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return [k.strip() for k in v.split(",") if k.strip()] if isinstance(v, str) else v

    @field_validator("admin_password_hash")
    @classmethod
    def _password_hash(cls, v: str | None) -> str | None:
        if v is not None:
            check_password_hash_format(v)
        return v

    @field_validator("admin_token", "metrics_token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and (len(v) < MIN_TOKEN or not v.isascii() or not v.isprintable() or " " in v):
            raise ValueError(f"a token must be at least {MIN_TOKEN} printable ASCII characters without spaces; "
                             "make one with `outreach admin token`")
        return v

    @field_validator("admin_user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or len(v) > 100 or not v.isprintable()):
            raise ValueError("the admin user must be a printable name of at most 100 characters")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        check_base_url(v)
        return v.strip().rstrip("/")

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: dict[str, TopicLabel]) -> dict[str, TopicLabel]:
        for tag in v:
            if not tag or len(tag) > 100 or ";" in tag or tag != tag.strip():
                raise ValueError(f"topic {tag!r} is not a tag; use a short word such as events")
        return v

    def topic_label(self, tag: str, language: str) -> str:
        """A topic's label in `language` (else English, else any, else the tag itself)."""
        label = self.topics.get(tag, tag)
        if isinstance(label, str):
            return label
        return label.get(language) or label.get("en") or next(iter(label.values()), tag)

    def link_keys(self) -> tuple[str, list[str]]:
        """(the key that signs links now, the keys whose links still verify)."""
        return self.require_secret_key(), list(self.previous_secret_keys)

    @field_validator("database_url", "redis_url")
    @classmethod
    def _service_url(cls, v: str, info: ValidationInfo) -> str:
        check_service_url(v, "redis://127.0.0.1:6379/0" if info.field_name == "redis_url" else
                          "postgresql://user@db.example.org:5432/outreach or sqlite:///var/outreach.db")
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
_ENV_KEYS = ("database_url", "redis_url", "base_url", "secret_key", "previous_secret_keys", "timezone", "log_level",
             "admin_user", "admin_password_hash", "admin_token", "metrics_token")
# Only from the environment or .env (a credential in config/ would end up in git).
_ENV_ONLY = ("secret_key", "previous_secret_keys", "password", "admin_user", "admin_password_hash", "admin_token",
             "metrics_token")
_SMTP_SECRETS = ("password", "username")
_X_SECRETS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret", "user_token")


# Where a value came from when it was not config/outreach.yaml: (file, line, variable), so a
# problem with it names the variable and the .env line instead of a line of the YAML.
Origin = tuple[str, int | None, str]
_SURROGATE = re.compile("[\ud800-\udfff]")
_PASSWORD_IN_URL = re.compile(r"(//[^/@\s:]*:)[^@\s/]*@")
_DOTENV_NAME = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def _environment(root: Path, environ: Mapping[str, str] | None) -> tuple[dict[str, str], dict[str, Origin]]:
    """The variables (.env, then the real environment over it) and where each came from.
    A .env that is not UTF-8, or a variable whose value is not text, is a problem naming it."""
    env: dict[str, str] = {}
    origins: dict[str, Origin] = {}
    dotenv = root / ".env"
    if dotenv.is_file():
        display = os.path.relpath(dotenv)
        try:
            raw = dotenv.read_bytes()
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed([Problem(display, raw[:exc.start].count(b"\n") + 1, None,
                                            f"not UTF-8 text ({exc.reason})", "save .env as UTF-8")]) from None
        except OSError as exc:
            raise ValidationFailed([Problem(display, None, None, f"cannot read it: {exc.strerror or exc}",
                                            "make .env a readable file")]) from None
        lines = {m.group(1): n for n, line in enumerate(text.splitlines(), 1) if (m := _DOTENV_NAME.match(line))}
        for name, value in dotenv_values(stream=io.StringIO(text)).items():
            if value is not None:
                env[name] = value
                origins[name] = (display, lines.get(name), name)
    for name, value in (os.environ if environ is None else environ).items():  # the real environment wins
        env[name] = value
        origins[name] = ("environment", None, name)
    bad = [origins[n] for n, v in env.items() if n.startswith(ENV_PREFIX) and _SURROGATE.search(v)]
    if bad:
        raise ValidationFailed([Problem(file if file != "environment" else name, line, None,
                                        f"{name} is not UTF-8 text", "set it again as UTF-8 text")
                                for file, line, name in bad])
    return env, origins


def _set(tree: dict[str, Any], keys: list[str], value: Any, variable: str) -> yamlfile.Loc:
    """Set the key `keys` names; return its path as written in the YAML."""
    path: list[str] = []
    for k in keys[:-1]:
        path.append(_existing_key(tree, k))
        tree = tree.setdefault(path[-1], {})
        if not isinstance(tree, dict):
            raise ConfigurationError(f"{variable} sets a key inside {k!r}, which is not a section")
    path.append(_existing_key(tree, keys[-1]))
    tree[path[-1]] = value
    return tuple(path)


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
    for secret in _ENV_ONLY:
        if secret in data:
            raise ValidationFailed([doc.problem((secret,), "secrets may not live in YAML",
                                                f"set OUTREACH_{secret.upper()} in the environment or .env")])

    hooks = data.get("bounces", {}).get("webhooks") if isinstance(data.get("bounces"), dict) else None
    for key, var in _WEBHOOK_SECRETS.items():
        if isinstance(hooks, dict) and key in hooks:
            raise ValidationFailed([doc.problem(("bounces", "webhooks", key), "secrets may not live in YAML",
                                                f"set {var} in the environment or .env")])

    env, where = _environment(root, environ)
    origins: dict[yamlfile.Loc, Origin] = {}
    for key in _ENV_KEYS:
        if env.get(ENV_PREFIX + key.upper()):
            data[key] = env[ENV_PREFIX + key.upper()]
            origins[(key,)] = where[ENV_PREFIX + key.upper()]
    for name, value in env.items():
        if name.startswith(ENV_PREFIX + "_"):
            keys = [p.lower() for p in name[len(ENV_PREFIX) + 1:].split("__")]
            origins[_set(data, keys, value, name)] = where[name]
    _inject_secrets(data, env)
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
            origins[(key,)] = ("command line", None, "--" + key.replace("_", "-"))
    data["root"] = root
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed([_blame(doc, origins, loc, msg, hint)
                                for loc, msg, hint in yamlfile.located_errors(exc, Settings, data)]) from None
    settings._source = path if path.is_file() else None
    settings._doc = doc if path.is_file() else None
    return settings


def _blame(doc: yamlfile.Located, origins: dict[yamlfile.Loc, Origin], loc: yamlfile.Loc, message: str,
           hint: str | None) -> Problem:
    """A problem at the YAML line of `loc`, or at the variable (and .env line) that set it. A
    password in a URL the message quotes (a database URL in the wrong variable) is masked."""
    message = _PASSWORD_IN_URL.sub(r"\1***@", message)
    for n in range(len(loc), 0, -1):
        if loc[:n] in origins:
            file, line, variable = origins[loc[:n]]
            field = doc.problem(loc, message).field
            if file == "environment":
                file = f"environment variable {variable}"
            elif file != "command line":
                hint = f"set by {variable}" + (f"; {hint}" if hint else "")
            else:
                file = variable
            return Problem(file, line, field, message, hint)
    return doc.problem(loc, message, hint)


_WEBHOOK_SECRETS = {"postmark_password": "OUTREACH_POSTMARK_WEBHOOK_PASSWORD",
                    "mailgun_signing_key": "OUTREACH_MAILGUN_WEBHOOK_KEY"}


def _inject_secrets(data: dict[str, Any], env: dict[str, str]) -> None:
    hooks = (data.get("bounces") or {}).get("webhooks") if isinstance(data.get("bounces"), dict) else None
    for key, var in _WEBHOOK_SECRETS.items():
        if env.get(var):
            if hooks is None and isinstance(data.setdefault("bounces", {}), dict):
                hooks = data["bounces"].setdefault("webhooks", {})
            if isinstance(hooks, dict):
                hooks[key] = env[var]
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
