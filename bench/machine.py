"""What the numbers were measured on."""
from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.dbs import pg_server_version

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _redis_version(url: str) -> str:
    try:
        import redis

        client = redis.Redis.from_url(url)
        try:
            return client.info("server")["redis_version"]
        finally:
            client.close()
    except Exception as exc:
        return f"unavailable ({exc.__class__.__name__})"


def _run(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _git() -> str:
    # --no-optional-locks: `status` must not rewrite the index of a tree others are editing
    head = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = _run(["git", "--no-optional-locks", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def code_id() -> str:
    """Which code a run used: HEAD, whether the tree differs from it, and a hash of the
    outreach/ sources as they are now (others may commit or edit while a benchmark runs)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "outreach").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".lua") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return f"{_git()}, outreach/ sha256 {digest.hexdigest()[:10]}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(redis_url: str, pg_admin_url: str) -> dict[str, str]:
    load1, load5, _ = os.getloadavg()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "ram": f"{_mem_total_gib():.1f} GiB",
        "os": f"{_run(['sh', '-c', '. /etc/os-release && echo $PRETTY_NAME']) or platform.system()}, "
              f"kernel {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_server_version(pg_admin_url),
        "redis": _redis_version(redis_url),
        "smtp-sink": f"postfix {_run(['dpkg-query', '-W', '-f=${Version}', 'postfix']) or '?'}",
        "libraries": ", ".join(f"{d} {_version(d)}" for d in ("celery", "kombu", "SQLAlchemy", "psycopg", "redis",
                                                             "Jinja2")),
        "code at start": code_id(),
        "load before": f"{load1:.2f} (1 min), {load5:.2f} (5 min)",
    }
