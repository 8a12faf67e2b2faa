"""What every request of the web process shares, built once by create_app: settings, the
Runtime (database, Redis, campaigns, composer: the same as a worker's), the link signer,
the CSRF helper, the sign-up limiter and the page templates per language.

Nothing here holds state between requests beyond caches that can be rebuilt: the database
and Redis hold everything, so any number of web processes can serve.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import redis as redis_lib
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine

from ..content.links import LinkSigner, derive_key
from ..delivery.ratelimit import RateLimiter
from ..delivery.runtime import Runtime
from ..settings import Settings
from .admin.auth import Gate
from .i18n import NAMES, I18n, Language
from .security import Csrf

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class Site:
    settings: Settings
    runtime: Runtime
    i18n: I18n
    limiter_prefix: str = "outreach:web"  # Redis keys of the sign-up limits

    @classmethod
    def build(cls, settings: Settings, *, engine: Engine | None = None, redis: redis_lib.Redis | None = None,
              limiter_prefix: str = "outreach:web") -> Site:
        settings.require_secret_key()  # fail at start, not at the first click
        site = cls(settings, Runtime(settings, engine=engine, redis=redis), I18n(), limiter_prefix)
        site.gate  # noqa: B018 (a user without a password hash is an error at start too)
        return site

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @cached_property
    def signer(self) -> LinkSigner:
        key, previous = self.settings.link_keys()
        return LinkSigner(key, self.settings.base_url, previous)

    @cached_property
    def csrf(self) -> Csrf:
        return Csrf(self.settings.require_secret_key(), self.settings.base_url)

    @cached_property
    def gate(self) -> Gate:
        """The operator's sign-in (/admin, /metrics)."""
        return Gate(self.settings)

    @cached_property
    def address_key(self) -> bytes:
        """Hashes addresses into Redis keys (the sign-up limits): Redis never holds one."""
        return derive_key(self.settings.require_secret_key(), "address keys v1")

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.runtime.redis, key_prefix=self.limiter_prefix)

    @cached_property
    def _environments(self) -> dict[str, Environment]:
        envs = {}
        for code, translations in self.i18n.catalogs.items():
            env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                              extensions=["jinja2.ext.i18n"], auto_reload=False)
            env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            env.globals.update(organization=self.settings.organization, languages=self.i18n.codes,
                               language_names=NAMES)
            envs[code] = env
        return envs

    def environment(self, language: Language) -> Environment:
        return self._environments[language.code]

    def topics(self, language: Language) -> list[tuple[str, str]]:
        """(tag, label) of every topic a subscriber may choose, in the settings' order."""
        return [(tag, self.settings.topic_label(tag, language.code)) for tag in self.settings.topics]

    def page_context(self) -> dict[str, Any]:
        return {"base_url": self.settings.base_url}
