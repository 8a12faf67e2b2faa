"""`outreach demo` stops everything it started when interrupted (the full run is CI's smoke
test, `.ci/run`)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_ctrl_c_stops_everything_and_a_second_run_finishes_without_resending(tmp_path):
    # given a copy of the sample project and no external Redis or database configured
    project = tmp_path / "project"
    for part in ("config", "templates"):
        shutil.copytree(ROOT / part, project / part)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH")}
    # the demo serves its links at base_url: a port of its own, not the 8025 of a demo you run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env["OUTREACH_BASE_URL"] = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen([sys.executable, "-m", "outreach", "--root", str(project), "demo", "--fresh"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # when it has started its worker and beat, and the user presses Ctrl-C
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Worker pid" in line or not line:
                break
        assert any("Worker pid" in line for line in lines), "".join(lines)
        assert processes_mentioning(str(project)), "the demo's worker should be running"
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    # then it says so, exits 130, and leaves no worker, beat or Redis of its own behind
    assert proc.returncode == 130, out
    assert "Interrupted" in out
    time.sleep(0.5)
    assert processes_mentioning(str(project)) == []
    # and when run again, it finishes the interrupted runs: one valid email per eligible
    # subscriber per email step in the outbox, none twice (the CI smoke check, on this copy)
    again = subprocess.run([sys.executable, "-m", "outreach", "--root", str(project), "demo", "--serve-for", "0"],
                           env=env,
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_demo.py"), str(project)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
