"""The demo's embedded Redis: a real redis-server on a unix socket, reached by redis-py and by
Celery/kombu, and gone when stopped or when its parent dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from outreach.devtools.embedded_redis import EmbeddedRedis
from outreach.errors import ConfigurationError
from outreach.worker.app import make_app


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="outreach-er-") as name:
        yield Path(name)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_redis_py_and_celery_reach_it_and_stop_leaves_nothing(short_dir):
    # given a started server
    server = EmbeddedRedis(short_dir / "redis").start()
    pid = server.pid
    try:
        assert server.url == f"unix://{short_dir}/redis/redis.sock"
        assert server.broker_url == f"redis+socket://{short_dir}/redis/redis.sock"
        # when redis-py and kombu connect with the URLs it gives
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        with Connection(server.broker_url) as conn:
            conn.connect()
            assert conn.connected
        # and the real Celery app queues a task through it
        app = make_app(broker_url=server.broker_url, tick_seconds=5)
        app.send_task("outreach.tick", queue="control")
        # then the message is in the `control` list, as a worker would BRPOP it
        assert client.llen("control") == 1
        # and there is no TCP listener
        assert client.config_get("port") == {"port": "0"}
        client.close()
    finally:
        server.stop()
    # then the process is gone and the socket removed; a second stop is harmless
    assert not alive(pid)
    assert not server.socket_path.exists()
    server.stop()
    assert not server.running


def test_context_manager_and_db_number(short_dir):
    with EmbeddedRedis(short_dir, db=3) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.connection_pool.connection_kwargs["db"] == 3
        # kombu spells the database as virtual_host for a socket URL
        with Connection(server.broker_url) as conn:
            assert conn.default_channel.client.get("k") == b"v"
        client.close()
        pid = server.pid
    assert not alive(pid)


def test_no_persistence_files_unless_asked(short_dir):
    # given a server without persistence that held data
    with EmbeddedRedis(short_dir / "a") as server:
        server.client().set("k", "v")
    # then stopping it wrote no RDB or AOF
    assert not list((short_dir / "a").glob("*.rdb")) and not list((short_dir / "a").glob("*.aof"))
    # and with persist=True the data survives a restart
    with EmbeddedRedis(short_dir / "b", persist=True) as server:
        server.client().set("k", "v")
    with EmbeddedRedis(short_dir / "b", persist=True) as server:
        assert server.client().get("k") == b"v"


def test_parent_killed_takes_the_server_with_it(short_dir):
    # given a process that started a server and was then SIGKILLed (no atexit, no cleanup)
    script = textwrap.dedent(f"""
        import sys, time
        from outreach.devtools.embedded_redis import EmbeddedRedis
        server = EmbeddedRedis({str(short_dir)!r}).start()
        print(server.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    # then the server goes too (PR_SET_PDEATHSIG)
    try:
        assert wait_gone(pid), "redis-server outlived its parent"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_stale_socket_is_cleared_and_live_one_refused(short_dir):
    # given a socket file left behind by a server that is gone
    (short_dir / "redis.sock").write_bytes(b"")
    with EmbeddedRedis(short_dir) as first:
        assert first.client().ping()
        # when a second server is started on the same directory
        with pytest.raises(ConfigurationError, match="already listening"):
            EmbeddedRedis(short_dir).start()
        # then the first one is untouched
        assert first.client().ping()


def test_too_long_socket_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="longer than 107 bytes"):
        EmbeddedRedis(tmp_path / ("x" * 120)).start()
