"""The pieces of a reliability scenario: servers of its own that it may stop (redis-server on
its own port, a PostgreSQL cluster in a temporary directory), an SMTP server and an X
stand-in whose faults can be scripted, the project and its processes, and the final count.

Everything listens on 127.0.0.1. Every process started is stopped when the scenario ends.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import redis as redis_lib
import sqlalchemy as sa

from outreach.models import ACTIVE_STATES
from outreach.store.schema import deliveries, runs
from tests.channels.conftest import LOOPBACK, XApi, _handler_for, free_port
from tests.worker.conftest import Procs, TimedSink, wait_until

FULL = os.environ.get("OUTREACH_RELIABILITY_FULL") == "1"


def scale(default: int, full: int) -> int:
    """The default suite's size, or the heavier one with OUTREACH_RELIABILITY_FULL=1."""
    return full if FULL else default


# --- Redis of its own --------------------------------------------------------------------------

def redis_binary() -> str:
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    from outreach.devtools.embedded_redis import redis_executable

    return redis_executable()


class RedisServer:
    """A redis-server on a port of its own, with its data in `folder`: it can be stopped
    (keeping its data, or losing it) and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--dbfilename", "dump.rdb", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        client = self.client()
        wait_until(lambda: _pings(client), 10, f"redis-server on port {self.port}")
        client.close()

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def stop(self, keep_data: bool) -> None:
        """Stop it: SHUTDOWN SAVE keeps the queues for the next start; SIGKILL with the
        files removed is a server that comes back empty."""
        assert self.proc is not None
        if keep_data:
            client = self.client()
            try:
                client.shutdown(save=True)
            except redis_lib.ConnectionError:
                pass  # the server closes the connection as it goes
            client.close()
        else:
            self.proc.kill()
        self.proc.wait(10)
        self.proc = None
        if not keep_data:
            (self.folder / "dump.rdb").unlink(missing_ok=True)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def _pings(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


# --- PostgreSQL of its own ----------------------------------------------------------------------

def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


class PgCluster:
    """initdb + pg_ctl in a temporary directory, on a port of its own (run as the `postgres`
    user when the tests run as root: PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        binaries = pg_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = binaries
        # a folder of its own under /tmp: pytest's are private to root, and the server runs
        # as `postgres`
        self.folder = Path(tempfile.mkdtemp(prefix="outreach-reliability-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '{LOOPBACK}'\nport = {self.port}\nunix_socket_directories = ''\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n")

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "pg.log"), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)


# --- an SMTP server with scriptable faults ---------------------------------------------------------

class FaultySink(TimedSink):
    """The SMTP server of a scenario. On top of the channel tests' scripting (fixed replies to
    recipients, `drop_after_data`): a pause before the reply to RCPT or DATA for some
    recipients (slower than the client's timeout), a hang-up after a message's data without
    keeping it, a burst of 421s that close the connection, and a server requiring STARTTLS."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_rcpt: dict[str, float] = {}    # once each
        self.slow_data: dict[str, float] = {}    # once each; the message is kept after the pause
        self.drop_unkept: set[str] = set()       # once each: hang up after the data, message not kept
        self.rcpt_once: dict[str, str] = {}      # a reply given once, then the recipient is accepted
        self.burst_421 = 0                       # the next N MAIL commands get 421 and a hang-up
        self.tls_required = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.tls_required:
            return "530 5.7.0 Must issue a STARTTLS command first"
        if self.burst_421 > 0:
            self.burst_421 -= 1
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 Server busy, closing connection"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.slow_rcpt:
            await asyncio.sleep(self.slow_rcpt.pop(address))
        if address in self.rcpt_once:
            return self.rcpt_once.pop(address)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        if first in self.drop_unkept:
            self.drop_unkept.discard(first)
            server.transport.close()
            return "250 2.0.0 never heard"  # the connection is gone: nobody reads this
        if first in self.slow_data:
            await asyncio.sleep(self.slow_data.pop(first))
        return await super().handle_DATA(server, session, envelope)


# --- an X stand-in with scriptable faults ----------------------------------------------------------

@dataclass
class FaultyX(XApi):
    """The X stand-in, also: answers held back past the client's timeout (the post is made),
    posts accepted without an id, and a count of the posts made per text."""

    slow: deque[float] = field(default_factory=deque)   # one pause per request, in order
    no_id: int = 0                                      # the next N posts answer 201 without an id
    created: Counter[str] = field(default_factory=Counter)

    def answer(self, method: str, path: str, headers: dict[str, str], body: dict):
        with self.lock:
            pause = self.slow.popleft() if self.slow else 0.0
            hide_id = self.no_id > 0 and not self.script
            if hide_id:
                self.no_id -= 1
        status, head, payload = super().answer(method, path, headers, body)
        if status == 201:
            with self.lock:
                self.created[body.get("text", "")] += 1
            if hide_id:
                payload = {"data": {"text": body.get("text", "")}}
        if pause:
            time.sleep(pause)
        return status, head, payload


def start_x(api: FaultyX) -> Callable[[], None]:
    server = ThreadingHTTPServer((LOOPBACK, 0), _handler_for(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    api.base = f"http://{LOOPBACK}:{server.server_address[1]}"

    def stop() -> None:
        server.shutdown()
        server.server_close()
    return stop


# --- the project ---------------------------------------------------------------------------------

MAIL_CAMPAIGN = """\
name: alert
title: Urgent alert
audience:
  filter:
    tags: [advocacy]
steps:
  - id: mail
    channel: email
    template: alert
    schedule:
      at: 2030-01-15 09:00
      timezone: Europe/Paris
"""

X_CAMPAIGN = """\
name: post{n:02d}
title: Post {n:02d}
audience:
  filter:
    tags: [advocacy]
steps:
  - id: post
    channel: x
    template: post
    schedule:
      at: 2030-01-15 09:00
      timezone: Europe/Paris
"""


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def settings(self):
        from outreach.settings import load_settings

        return load_settings(self.root, environ=self.env)


# --- counting ------------------------------------------------------------------------------------

@dataclass
class Counts:
    planned: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    active: int             # still pending/queued/sending/retry: 0 when the scenario ended
    received: int           # messages the SMTP server kept + posts X made
    duplicates: int         # recipients (or post texts) that got more than one
    duplicates_unknown: int  # ... of which recorded `unknown` (may be resent only by an operator)
    lost: int               # recorded sent, never received
    unknown_received: int   # recorded unknown, and in fact received

    def line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in asdict(self).items())


def count(engine: sa.Engine, sink: FaultySink, x: FaultyX | None) -> Counts:
    """The ledger against what the servers received."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.recipient, deliveries.c.channel, deliveries.c.state,
                                      runs.c.campaign).join(runs, runs.c.id == deliveries.c.run_id)).all()
    by_state = Counter(r.state for r in rows)
    got_mail = sink.per_recipient()
    got_post: Counter[str] = Counter()
    if x is not None:
        for text, n in x.created.items():  # "Post 07: part one" → the thread of campaign post07
            title = text.split(":")[0]
            got_post[title] = max(got_post[title], n)
    duplicates = duplicates_unknown = lost = unknown_received = 0
    for r in rows:
        received = got_mail[r.recipient] if r.channel == "email" else got_post[_title(r.campaign)]
        if received > 1:
            duplicates += 1
            duplicates_unknown += r.state == "unknown"
        if r.state == "sent" and received == 0:
            lost += 1
        if r.state == "unknown" and received:
            unknown_received += 1
    return Counts(planned=len(rows), sent=by_state["sent"], failed=by_state["failed"], skipped=by_state["skipped"],
                  unknown=by_state["unknown"], active=sum(by_state[s] for s in ACTIVE_STATES),
                  received=sum(got_mail.values()) + (sum(x.created.values()) if x else 0),
                  duplicates=duplicates, duplicates_unknown=duplicates_unknown, lost=lost,
                  unknown_received=unknown_received)


def _title(campaign: str) -> str:
    return f"Post {campaign.removeprefix('post')}" if campaign.startswith("post") else campaign


def check(counts: Counts, sink: FaultySink, engine: sa.Engine) -> None:
    """What every scenario promises: every planned delivery has a final outcome, nothing
    recorded sent was lost, nobody got a message twice unless its delivery is `unknown`,
    and nothing the ledger calls failed or skipped reached anyone."""
    assert counts.active == 0, counts
    assert counts.planned == counts.sent + counts.failed + counts.skipped + counts.unknown, counts
    assert counts.lost == 0, counts
    assert counts.duplicates - counts.duplicates_unknown == 0, counts
    with engine.connect() as conn:
        refused = set(conn.execute(sa.select(deliveries.c.recipient).where(
            deliveries.c.channel == "email", deliveries.c.state.in_(("failed", "skipped")))).scalars())
    got = sink.per_recipient()
    assert not [r for r in refused if got[r]], "a delivery recorded failed or skipped was received"
    assert set(got) <= set(_recipients(engine)), "a message reached someone outside the runs"


def _recipients(engine: sa.Engine) -> Iterator[str]:
    with engine.connect() as conn:
        yield from conn.execute(sa.select(deliveries.c.recipient)).scalars()


# --- results ---------------------------------------------------------------------------------------

RESULTS: list[dict[str, object]] = []


def results_path() -> Path:
    default = Path(__file__).resolve().parents[2] / "var" / "reliability" / "results.json"
    return Path(os.environ.get("OUTREACH_RELIABILITY_RESULTS", default))


def save_results() -> Path | None:
    if not RESULTS:
        return None
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    scenarios = {r["scenario"]: r for r in previous.get("scenarios", [])}
    scenarios.update({str(r["scenario"]): r for r in RESULTS})
    path.write_text(json.dumps({"full": FULL, "updated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                "scenarios": sorted(scenarios.values(), key=lambda r: str(r["scenario"]))},
                               indent=1) + "\n")
    return path


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGKILL, group: bool = True) -> None:
    """Send `sig` to a process started by Procs (its whole group: the pool too)."""
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


__all__ = ["FULL", "Counts", "FaultySink", "FaultyX", "PgCluster", "Procs", "Project", "RedisServer", "RESULTS",
           "check", "count", "save_results", "scale", "start_x", "stop_process", "wait_until"]
