"""What a process needs to plan and send, built once per process and reused.

The beat, each worker process and `outreach send` own one Runtime: settings, the database
engine, Redis and the rate limiter, the link signer and composer, the validated campaigns
(re-read only when a file under config/ or templates/ changes) and the channels (one SMTP
connection per account per process).
"""
from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path

import redis as redis_lib
from sqlalchemy.engine import Engine

from ..authoring.audience import Filter, segments_for
from ..authoring.campaigns import Campaign, campaign_files
from ..channels import Channel, FakeChannel, shared_channel
from ..content.compose import Composer
from ..content.links import LinkSigner
from .ratelimit import RateLimiter
from ..settings import Settings
from ..store import engine_for

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, *, engine: Engine | None = None,
                 redis: redis_lib.Redis | None = None, x_sandbox: Path | None = None,
                 channel_override: str | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._redis = redis
        # Where tweets go when an X account has no credentials (the demo's X sandbox).
        self.x_sandbox = x_sandbox
        # "fake": every channel is the recording fake (dry runs and tests).
        self.channel_override = channel_override
        self._campaigns: dict[str, Campaign] = {}
        self._segments: dict[str, Filter] = {}
        self._signature: tuple | None = None
        self._fakes: dict[str, Channel] = {}

    @cached_property
    def engine(self) -> Engine:
        return self._engine or engine_for(self.settings)

    @cached_property
    def redis(self) -> redis_lib.Redis:
        return self._redis or redis_lib.Redis.from_url(self.settings.redis_url)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis)

    @cached_property
    def composer(self) -> Composer:
        signer = LinkSigner(self.settings.require_secret_key(), self.settings.base_url)
        return Composer(self.settings, signer)

    @property
    def worker_id(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}"

    # --- campaigns -----------------------------------------------------------------------

    def _files_signature(self) -> tuple:
        s = self.settings
        roots = [s.path(s.data_dir), s.path(s.templates_dir)]
        stamp = []
        for root in roots:
            for path in sorted(root.rglob("*")) if root.is_dir() else ():
                if path.is_file():
                    st = path.stat()
                    stamp.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def campaigns(self) -> dict[str, Campaign]:
        """The campaigns that validate. A campaign with any problem is left out (and logged):
        nothing is sent from a campaign that does not validate."""
        signature = self._files_signature()
        if signature != self._signature:
            from ..authoring.validation import validate

            segments = segments_for(self.settings)
            valid: dict[str, Campaign] = {}
            for path in campaign_files(self.settings):
                report = validate(self.settings, [path], segments=segments)
                for problem in report.problems:
                    log.error("campaign not scheduled: %s", problem)
                if report.ok:
                    valid.update(report.campaigns.campaigns)
            self._campaigns, self._segments, self._signature = valid, segments, signature
            # templates changed too, perhaps: a new composer (renderer, render cache) reads them
            self.__dict__.pop("composer", None)
        return self._campaigns

    def segments(self) -> dict[str, Filter]:
        """The segments the current campaigns were validated against (read with them)."""
        self.campaigns()
        return self._segments

    # --- channels ------------------------------------------------------------------------

    def channel(self, kind: str, account_name: str | None) -> Channel:
        if self.channel_override:
            return self._fake(f"{self.channel_override}:{kind}")
        if kind == "email":
            return shared_channel("email", self.settings.smtp_account(account_name))
        account = self.settings.x_account(account_name)
        if not account.has_credentials and self.x_sandbox is not None:
            return self._fake(f"x-sandbox:{account.name}", account=account)
        return shared_channel("x", account)

    def _fake(self, key: str, account=None) -> Channel:
        if key not in self._fakes:
            record = self.x_sandbox / "tweets.jsonl" if key.startswith("x-sandbox") and self.x_sandbox else None
            self._fakes[key] = FakeChannel(account, record_path=record)
        return self._fakes[key]
