"""A project whose email goes through the demo's real SMTP sink with VERP envelope senders,
on a real database (SQLite and PostgreSQL) and Redis DB 14 under a key prefix per test."""
from __future__ import annotations

import email
import email.policy
import secrets
import sys
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from outreach.delivery import create_run_now
from outreach.delivery.ratelimit import RateLimiter
from outreach.delivery.runtime import Runtime
from outreach.delivery.scheduling import now_utc
from outreach.delivery.sender import send_batch
from outreach.devtools.sink import SmtpSink
from outreach.store.schema import deliveries
from tests.conftest import delete_keys
from tests.web.conftest import REDIS_TEST_URL, TWO_STEPS, person, write_project

BOUNCES = """
bounces:
  domain: bounces.example.org
  soft_limit: 2
  soft_window: 7d
  breaker: {min_sent: 4, hard_bounce_rate: 0.5, complaint_rate: 0.25}
"""


class World:
    def __init__(self, rt: Runtime, sink: SmtpSink, project, env: dict[str, str]) -> None:
        self.rt, self.sink, self.project, self.env = rt, sink, project, env

    @property
    def engine(self) -> sa.Engine:
        return self.rt.engine

    def plan(self, step: str = "letter") -> int:
        """Plan a run of `step` due now; return its id."""
        campaign = self.rt.campaigns()["news"]
        now = now_utc()
        run_id = create_run_now(self.rt, campaign, campaign.step(step), now, due_at=now)
        assert run_id is not None
        return run_id

    def send(self, step: str = "letter", run_id: int | None = None) -> int:
        """Send a run (planned now when not given) through the sink; return the run id."""
        run_id = run_id or self.plan(step)
        send_batch(self.rt, self.delivery_ids(run_id))
        return run_id

    def delivery_ids(self, run_id: int) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.run_id == run_id)
                                     .order_by(deliveries.c.id)).scalars())

    def delivery(self, run_id: int, recipient: str):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(deliveries).where(deliveries.c.run_id == run_id,
                                                            deliveries.c.recipient == recipient)).one()

    def received(self, to: str) -> list[tuple[str, email.message.EmailMessage]]:
        """(Return-Path, message) of what the sink saved for `to`, oldest first."""
        out = []
        for path in self.sink.files():
            if path.name.endswith(f"-{to}.eml"):
                msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                out.append((str(msg["Return-Path"]).strip("<>"), msg))
        return out

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 60):
        import subprocess

        return subprocess.run([sys.executable, "-m", "outreach", "--root", str(self.project.root), *args],
                              input=input, capture_output=True, timeout=timeout, env={**_base_env(), **self.env})


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}


@pytest.fixture
def world(tmp_path: Path, db_url: str, engine):
    prefix = f"outreach-test:{secrets.token_hex(4)}"
    env = {"OUTREACH_SECRET_KEY": "bounce-secret", "OUTREACH_DATABASE_URL": db_url,
           "OUTREACH_REDIS_URL": REDIS_TEST_URL}
    with SmtpSink(tmp_path / "outbox") as sink:
        project = write_project(tmp_path / "project", env, smtp_port=sink.port)
        project.write("config/campaigns/news.yaml", TWO_STEPS)
        (project.root / "config" / "outreach.yaml").write_text(
            (project.root / "config" / "outreach.yaml").read_text() + BOUNCES)
        settings = project.settings()
        redis = redis_lib.Redis.from_url(REDIS_TEST_URL)
        rt = Runtime(settings, engine=engine, redis=redis)
        rt.__dict__["limiter"] = RateLimiter(redis, key_prefix=f"{prefix}:rl")
        yield World(rt, sink, project, env)
        from outreach.channels import close_shared
        close_shared()
        delete_keys(redis, prefix)
        redis.close()


__all__ = ["World", "person"]
