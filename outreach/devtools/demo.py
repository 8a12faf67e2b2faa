"""`outreach demo`: the whole pipeline on one machine with nothing installed by hand.

Starts what is missing (an embedded Redis on a unix socket, SQLite under var/, a local SMTP
sink that keeps .eml files under var/outbox/, an X sandbox when no X credentials are set),
imports the sample subscribers, starts a real Celery worker process, the beat and the web
process (at base_url, so every link in the outbox works), sends every sample campaign now,
shows progress, prints a summary, keeps serving the links until Ctrl-C (or `--serve-for`
seconds), and stops what it started.

Each demo run sends the *next scheduled occurrence* of every step, due now: a second run
finds those runs already in the ledger and sends nothing again (use --fresh to start over).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from ..channels import CHANNELS
from ..errors import ConfigurationError
from ..models import ACTIVE_STATES
from ..settings import Settings, account_env_name, load_settings

if TYPE_CHECKING:
    from ..authoring.campaigns import Campaign, Step
    from ..delivery.runtime import Runtime

DEMO_TIMEOUT = 100.0  # seconds to wait for deliveries before giving up and reporting


@dataclass
class Services:
    redis_url: str
    broker_url: str
    database_url: str
    smtp_port: int | None
    outbox: Path
    sandbox: list[Path]  # where accounts that cannot send for real record what they would send
    notes: list[str]


def _var(settings: Settings) -> Path:
    return settings.path(Path("var"))


def _secret_key(var: Path) -> str:
    """Links must be signed even in the demo; keep one key under var/ so links stay valid."""
    if os.environ.get("OUTREACH_SECRET_KEY"):
        return os.environ["OUTREACH_SECRET_KEY"]
    path = var / "demo-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _fresh(var: Path, settings: Settings) -> None:
    """Remove only what the demo itself creates."""
    for name in ("outbox", "celerybeat-schedule", "demo-worker.log", "demo-beat.log", "demo-web.log"):
        target = var / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if not os.environ.get("OUTREACH_DATABASE_URL") and settings.database_url.startswith("sqlite:///"):
        db = settings.path(Path(settings.database_url.removeprefix("sqlite:///")))
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)


def start_services(stack: ExitStack, settings: Settings, var: Path, console: Console) -> Services:
    from ..store import engine_for, upgrade
    from .embedded_redis import EmbeddedRedis
    from .sink import SmtpSink

    notes: list[str] = []
    if os.environ.get("OUTREACH_REDIS_URL"):
        redis_url = broker_url = settings.redis_url
        notes.append(f"Redis: {redis_url} (from OUTREACH_REDIS_URL)")
    else:
        embedded = stack.enter_context(EmbeddedRedis(var / "redis"))
        redis_url, broker_url = embedded.url, embedded.broker_url
        notes.append(f"Redis: embedded server on {embedded.url} (pid {embedded.pid})")

    engine = engine_for(settings)
    upgrade(engine)
    notes.append(f"Database: {engine.url.render_as_string(hide_password=True)} (migrations applied)")
    database_url = engine.url.render_as_string(hide_password=False)
    engine.dispose()

    outbox = var / "outbox"
    sink = stack.enter_context(SmtpSink(outbox / "email"))
    notes.append(f"SMTP: local sink on 127.0.0.1:{sink.port}, keeping every message in {outbox / 'email'}")

    sandbox = []
    for cls in CHANNELS.values():
        unusable = [name for name, a in settings.accounts(cls.name).items() if not cls.usable(a)]
        if unusable:
            record = cls.sandbox_record(outbox)
            record.parent.mkdir(parents=True, exist_ok=True)
            sandbox.append(record)
            notes.append(f"{cls.display_name()}: no credentials for {', '.join(unusable)}, so {cls.noun}s go to the "
                         f"SANDBOX ({record}), not to {cls.display_name()}. Set the account's credentials in .env "
                         "(see .env.example) to send for real.")
    return Services(redis_url, broker_url, database_url, sink.port, outbox, sandbox, notes)


def child_env(settings: Settings, services: Services, secret: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "OUTREACH_ROOT": str(settings.root),
        "OUTREACH_REDIS_URL": services.redis_url,
        "OUTREACH_BROKER_URL": services.broker_url,
        "OUTREACH_DATABASE_URL": services.database_url,
        "OUTREACH_SECRET_KEY": secret,
        "OUTREACH__DISPATCH__TICK_SECONDS": "1",
    })
    for name in settings.email.accounts:
        key = account_env_name(name)
        env[f"OUTREACH__EMAIL__ACCOUNTS__{key}__HOST"] = "127.0.0.1"
        env[f"OUTREACH__EMAIL__ACCOUNTS__{key}__PORT"] = str(services.smtp_port)
        env[f"OUTREACH__EMAIL__ACCOUNTS__{key}__SECURITY"] = "none"
    if services.sandbox:
        env["OUTREACH__SANDBOX_DIR"] = str(services.outbox)
    return env


def _spawn(stack: ExitStack, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own session, so Ctrl-C reaches only the demo, which then stops the
    children in order (worker first: it finishes the batch in hand)."""
    out = log.open("ab")
    started: list[subprocess.Popen[bytes]] = []

    def stop() -> None:
        if not started:
            out.close()
            return
        proc = started[0]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()
    # the way to stop it is in place before it exists: Ctrl-C right after it starts stops it too
    stack.callback(stop)
    started.append(subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    return started[0]


def _web_port(base_url: str) -> int | None:
    """The port to serve base_url on here, or None when base_url is not this machine (then
    the links in the outbox point somewhere else, and the demo says so)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    return parts.port or 80


def _start_web(stack: ExitStack, settings: Settings, outreach: list[str], env: dict[str, str],
               var: Path) -> subprocess.Popen[bytes] | None:
    """`outreach web` at base_url (None when base_url is not this machine)."""
    port = _web_port(settings.base_url)
    if port is None:
        return None
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigurationError(
                f"port {port} of base_url {settings.base_url} is in use, so the links in the demo's emails would "
                f"not work: stop what listens there, or set OUTREACH_BASE_URL=http://127.0.0.1:PORT with a free "
                "port") from None
    return _spawn(stack, outreach + ["web", "--host", "127.0.0.1", "--port", str(port), "-l", "warning"], env,
                  var / "demo-web.log")


def _wait_for_web(settings: Settings, web: subprocess.Popen[bytes] | None, var: Path, console: Console) -> None:
    """Ready before the first email goes out, so every link in the outbox works."""
    if web is None:
        console.print(f"[bold]•[/bold] Web: not started: base_url {settings.base_url} is not this machine, so the "
                      "links in the outbox point there")
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and web.poll() is None:
        try:
            with urllib.request.urlopen(f"{settings.base_url}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise ConfigurationError(f"the web process did not start; see {os.path.relpath(var)}/demo-web.log")
    console.print(f"[bold]•[/bold] Web: subscriber pages at {settings.base_url} (pid {web.pid}): unsubscribe, "
                  f"view online, preferences and {settings.base_url}/subscribe")


def _serve(settings: Settings, web: subprocess.Popen[bytes], serve_for: float | None, console: Console) -> None:
    """Keep the web process up so a person can click the links in the outbox."""
    how = "press Ctrl-C to stop" if serve_for is None else f"for {serve_for:g} s"
    console.print(f"Serving the links in the outbox at {settings.base_url} ({how}); try "
                  f"{settings.base_url}/subscribe")
    until = None if serve_for is None else time.monotonic() + serve_for
    try:
        while web.poll() is None and (until is None or time.monotonic() < until):
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nStopped serving.")


def _import_samples(settings: Settings, database_url: str, console: Console) -> None:
    from ..store import make_engine
    from ..subscribers.csvfile import import_csv
    from ..subscribers.samples import sample_file

    path = sample_file(settings)
    engine = make_engine(database_url)
    try:
        with path.open("rb") as fh:
            result = import_csv(engine, fh, os.path.relpath(path), report=lambda line: console.print(f"  {line}"))
    finally:
        engine.dispose()
    console.print(f"Subscribers: {result.inserted} new, {result.updated} updated from {os.path.relpath(path)}")


def run_demo(root: Path, fresh: bool = False, timeout: float = DEMO_TIMEOUT, console: Console | None = None,
             serve_for: float | None = None) -> int:
    """`serve_for`: seconds to keep serving the links after the summary (None: until Ctrl-C)."""
    # wide enough for the summary table when the output is a log, not a terminal
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    settings = load_settings(root)
    var = _var(settings)
    var.mkdir(parents=True, exist_ok=True)
    if fresh:
        _fresh(var, settings)
    secret = _secret_key(var)
    started = time.monotonic()
    # `kill PID` stops the demo like Ctrl-C does (a background job in a script ignores SIGINT)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(root, settings, var, secret, timeout, started, console, serve_for)
    except KeyboardInterrupt:
        # everything started was stopped on the way out of the ExitStack
        console.print("\nInterrupted: stopped the worker, the beat, the SMTP sink and Redis. Nothing sent is "
                      "lost or resent: run `outreach demo` again to finish.")
        return 130


def _run(root: Path, settings: Settings, var: Path, secret: str, timeout: float, started: float,
         console: Console, serve_for: float | None = None) -> int:
    with ExitStack() as stack:
        services = start_services(stack, settings, var, console)
        for note in services.notes:
            console.print(f"[bold]•[/bold] {note}")
        env = child_env(settings, services, secret)
        os.environ.update({k: v for k, v in env.items() if k.startswith("OUTREACH")})
        settings = load_settings(root)  # now pointing at the demo's services
        _import_samples(settings, services.database_url, console)

        outreach = [sys.executable, "-m", "outreach", "--root", str(settings.root)]
        worker = _spawn(stack, outreach + ["worker", "-Q", "email,social,control", "-c", "2", "-l", "warning"],
                        env, var / "demo-worker.log")
        beat = _spawn(stack, outreach + ["beat", "-l", "warning"], env, var / "demo-beat.log")
        web = _start_web(stack, settings, outreach, env, var)
        console.print(f"Worker pid {worker.pid} (queues email, social, control; 2 processes), beat pid {beat.pid}; "
                      f"logs in {os.path.relpath(var)}/demo-*.log")
        _wait_for_web(settings, web, var, console)
        code = _send_and_watch(settings, services, worker, timeout, started, console)
        if web is not None and serve_for != 0:
            _serve(settings, web, serve_for, console)
        return code


def _send_and_watch(settings: Settings, services: Services, worker: subprocess.Popen[bytes], timeout: float,
                    started: float, console: Console) -> int:
    from .. import delivery, store
    from ..cli.progress import watch
    from ..delivery.runtime import Runtime
    from ..delivery.scheduling import now_utc
    from ..worker.app import make_app

    app = make_app(services.broker_url, settings.dispatch.tick_seconds)
    app.set_current()
    from ..worker.tasks import enqueue

    rt = Runtime(settings)
    now = now_utc().replace(microsecond=0)
    run_ids: list[int] = []
    already = 0
    for campaign in rt.campaigns().values():
        for step, occurrence in ((s, o) for s in campaign.steps for o in demo_occurrences(campaign, s, now)):
            run_id = delivery.create_run_now(rt, campaign, step, now, occurrence=occurrence, due_at=now)
            if run_id is not None:
                run_ids.append(run_id)
                continue
            # made by an earlier demo run: finish what it left (e.g. after Ctrl-C), resend nothing
            earlier = store.find_run(rt.engine, campaign.name, step.id, occurrence)
            counts = store.run_progress(rt.engine, earlier.id) if earlier else {}
            if earlier and any(counts.get(state) for state in ACTIVE_STATES):
                run_ids.append(earlier.id)
            else:
                already += 1
    if already:
        console.print(f"{already} step occurrence(s) were already sent by an earlier demo run: not sending "
                      "them again (use --fresh to start over)")
    delivery.dispatch_due(rt, enqueue, now)
    if run_ids:
        watch(rt, run_ids, console.print, timeout=timeout, console=console,
              stop=lambda: worker.poll() is not None)
    if worker.poll() is not None:
        console.print(f"[red]the worker exited with status {worker.returncode}; see var/demo-worker.log[/red]")
    return summary(rt, services, run_ids, time.monotonic() - started, console)


def demo_occurrences(campaign: Campaign, step: Step, now: datetime) -> list[datetime]:
    """What the demo sends of a step: its next occurrence, or for a step sent before each event,
    one per stop (each to that stop's people)."""
    from ..authoring.campaigns import root_step
    from ..delivery.scheduling import occurrences

    if root_step(campaign, step)[0].schedule.before_event is not None:
        return occurrences(campaign, step, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    return [next_occurrence(campaign, step, now)]


def next_occurrence(campaign: Campaign, step: Step, now: datetime) -> datetime:
    """The occurrence the demo sends: the step's next one from now (a past one-off counts as
    its own time), so repeated demo runs map to the same run and never resend."""
    from ..authoring.campaigns import root_step
    from ..delivery.scheduling import occurrences, resolve_wall_time

    anchor, delay = root_step(campaign, step)
    if anchor.schedule.at is not None:
        zone = anchor.schedule.zone
        assert zone is not None  # validation: `at` needs a `timezone`
        return resolve_wall_time(anchor.schedule.at, zone).astimezone(UTC) + delay
    found = occurrences(campaign, step, now, now + timedelta(days=400))
    return found[0] if found else now


def summary(rt: Runtime, services: Services, run_ids: list[int], elapsed: float, console: Console) -> int:
    from .. import store

    table = Table(title="outreach demo: summary")
    for col in ("run", "campaign / step", "channel", "sent", "failed", "skipped", "unknown", "remaining"):
        table.add_column(col, justify="left" if col in ("campaign / step", "channel") else "right")
    problems = 0
    totals = {"sent": 0}
    for run_id in run_ids:
        run = store.get_run(rt.engine, run_id)
        assert run is not None  # a run is never deleted
        step = rt.campaigns()[run.campaign].step(run.step)
        c = store.run_progress(rt.engine, run_id)
        remaining = sum(c[s] for s in ACTIVE_STATES)
        problems += remaining + c["failed"] + c["unknown"]
        totals["sent"] += c["sent"]
        table.add_row(str(run_id), f"{run.campaign} / {run.step}", step.channel, str(c["sent"]), str(c["failed"]),
                      str(c["skipped"]), str(c["unknown"]), str(remaining))
    console.print(table)
    emails = len(list((services.outbox / "email").glob("*.eml")))
    console.print(f"Outbox: {emails} email(s) in {services.outbox / 'email'}"
                  + "".join(f"; sandbox: {path}" for path in services.sandbox))
    console.print(f"Done in {elapsed:.1f} s. Open any .eml in a mail client; run again to see that nothing is resent.")
    (services.outbox / "summary.json").write_text(json.dumps(
        {"runs": run_ids, "sent": totals["sent"], "emails_in_outbox": emails, "problems": problems}, indent=2))
    return 1 if problems else 0
