"""What a process needs to plan and send, built once per process and reused.

The beat, each worker process and `outreach send` own one Runtime: settings, the database
engine, Redis and the rate limiter, the composer (templates, links, render cache), the
campaigns (authoring.catalog: re-read only when a file changed) and the channels (one SMTP
connection per account per process).
"""
from __future__ import annotations

import os
import threading
from functools import cached_property

import redis as redis_lib
from sqlalchemy.engine import Engine

from ..authoring.audience import Filter
from ..authoring.campaigns import Campaign, Step
from ..authoring.catalog import Catalog
from ..channels import Channel, FakeChannel, shared_channel
from ..content.compose import Composer
from ..content.links import LinkSigner
from ..settings import Settings
from ..store import engine_for
from .ratelimit import RateLimiter


class Runtime:
    def __init__(self, settings: Settings, *, engine: Engine | None = None,
                 redis: redis_lib.Redis | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._redis = redis
        self.catalog = Catalog(settings, min_interval=settings.dispatch.tick_seconds)
        self._composer: tuple[int, Composer] | None = None
        self._sandboxes: dict[str, FakeChannel] = {}
        # set when the process is asked to stop: the batch in hand hands nothing more to its
        # channel and gives the rest back (see worker/tasks.py)
        self.stopping = threading.Event()

    @cached_property
    def engine(self) -> Engine:
        return self._engine or engine_for(self.settings)

    @cached_property
    def redis(self) -> redis_lib.Redis:
        return self._redis or redis_lib.Redis.from_url(self.settings.redis_url)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis)

    @property
    def composer(self) -> Composer:
        """Built for the current templates: a new one (renderer, render cache) after the
        catalog saw a file change."""
        generation = self.catalog.generation
        if self._composer is None or self._composer[0] != generation:
            key, previous = self.settings.link_keys()
            signer = LinkSigner(key, self.settings.base_url, previous)
            self._composer = (generation, Composer(self.settings, signer))
        return self._composer[1]

    @property
    def worker_id(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}"

    def campaigns(self) -> dict[str, Campaign]:
        """The campaigns of config/campaigns/ that validate: what the beat schedules."""
        return self.catalog.campaigns()

    def campaign(self, name: str) -> Campaign | None:
        """A campaign by name, the built-in ones (delivery/system.py) included: what a run or
        a link names may be either."""
        return self.campaigns().get(name) or self._system.get(name)

    @cached_property
    def _system(self) -> dict[str, Campaign]:
        from .system import system_campaigns

        return system_campaigns(self.settings)

    def segments(self) -> dict[str, Filter]:
        return self.catalog.segments()

    def channel(self, step: Step) -> Channel:
        """The channel a step sends through. An account that cannot send for real (no
        credentials) records what it would send in the sandbox, when one is set (the demo)."""
        cls = step.channel_class
        account = cls.account_for(self.settings, step.account)
        sandbox = self.settings.sandbox_dir
        if sandbox is not None and not cls.usable(account):
            key = f"{cls.name}:{account.name}"
            if key not in self._sandboxes:
                record = cls.sandbox_record(self.settings.path(sandbox))
                self._sandboxes[key] = FakeChannel(account, imitates=cls, record_path=record)
            return self._sandboxes[key]
        return shared_channel(cls.name, account)
