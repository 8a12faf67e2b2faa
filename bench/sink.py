"""Postfix's `smtp-sink` on loopback: the receiving server of the benchmarks.

Only the sink runs, never the Postfix daemon. When `/usr/sbin/smtp-sink` is missing, the
Debian package `postfix` is installed with service starts refused (a `policy-rc.d` that exits
101, kept only for the install) and debconf told "No configuration", so nothing listens on
port 25 afterwards.

`smtp-sink -c` prints running counters on stdout (`sess=N quit=N mesg=N`, `\\r`-separated
updates), updated whenever a message is received, QUIT is sent or a session ends; `mesg` of
the last update is the number of messages the sink accepted.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

SMTP_SINK = Path("/usr/sbin/smtp-sink")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_REFUSE_STARTS = "#!/bin/sh\n# written by outreach bench: no service starts during this install\nexit 101\n"


def ensure_installed(log=print) -> Path:
    """Install Debian's postfix (for its smtp-sink) without starting Postfix; return the path."""
    if SMTP_SINK.exists():
        return SMTP_SINK
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{SMTP_SINK} is missing; install the Debian package `postfix` "
                           "(as root: apt-get install postfix, with service starts disabled)")
    log("bench: installing postfix for /usr/sbin/smtp-sink (the Postfix daemon is not started)")
    added_policy = not POLICY_RC_D.exists()
    if added_policy:
        POLICY_RC_D.write_text(_REFUSE_STARTS)
        POLICY_RC_D.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select No configuration\n",
                       check=True, env=env)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"], check=True,
                       env=env, stdout=subprocess.DEVNULL)
    finally:
        if added_policy and POLICY_RC_D.read_text() == _REFUSE_STARTS:
            POLICY_RC_D.unlink()
    if not SMTP_SINK.exists():
        raise RuntimeError(f"postfix installed but {SMTP_SINK} is still missing")
    return SMTP_SINK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    """`smtp-sink -c -u root 127.0.0.1:PORT BACKLOG` as a child process; counts what it accepts."""

    def __init__(self, port: int | None = None, backlog: int = 1000) -> None:
        self.port = port or free_port()
        self.backlog = backlog
        self.proc: subprocess.Popen | None = None
        self._last = ""
        self._reader: threading.Thread | None = None

    def start(self) -> SmtpSink:
        args = [str(ensure_installed()), "-c"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # smtp-sink refuses to run as root without a user to switch to
        args += [f"127.0.0.1:{self.port}", str(self.backlog)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink exited at once with status {self.proc.returncode}: {self._last}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(512).startswith(b"220"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("smtp-sink did not answer within 10 s")
        time.sleep(0.2)  # let the probe session's counter update land
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(4096)  # type: ignore[attr-defined]  # a BufferedReader: Popen without text=True
            if not chunk:
                return
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for part in parts:
                if part.strip():
                    self._last = part.decode("ascii", "replace").strip()

    def counters(self) -> dict[str, int]:
        """The last counter line, e.g. {"sess": 3, "quit": 2, "mesg": 1200}."""
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", self._last)}

    @property
    def messages(self) -> int:
        return self.counters().get("mesg", 0)

    def wait_settled(self, expect: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.messages < expect and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.messages

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
