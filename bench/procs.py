"""CPU and memory of a process tree (a Celery worker: its main process and pool children).

CPU is user+system of every live process of the tree plus what the main process collected
from children that already exited; memory is sampled every `interval` seconds (RSS) and read
as the kernel's high-water mark (VmHWM in /proc/PID/status) at the end.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import psutil


def vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree(pid: int) -> list[psutil.Process]:
    try:
        main = psutil.Process(pid)
        return [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu(pid: int) -> float:
    """Seconds of user+system CPU used so far by the tree rooted at `pid`."""
    total = 0.0
    for i, proc in enumerate(tree(pid)):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
        if i == 0:
            total += t.children_user + t.children_system
    return total


@dataclass
class Mem:
    role: str
    first_kb: int = 0
    last_kb: int = 0
    peak_sampled_kb: int = 0
    hwm_kb: int | None = None
    samples: list[int] = field(default_factory=list)


class TreeSampler:
    """Samples RSS of every process of the tree in a background thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.mem: dict[int, Mem] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        for i, proc in enumerate(tree(self.pid)):
            try:
                rss = proc.memory_info().rss // 1024
            except psutil.NoSuchProcess:
                continue
            m = self.mem.setdefault(proc.pid, Mem("main" if i == 0 else "pool child", first_kb=rss))
            m.last_kb = rss
            m.peak_sampled_kb = max(m.peak_sampled_kb, rss)
            m.samples.append(rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[int, Mem]:
        """Stop sampling and read each live process's VmHWM (call before the worker exits)."""
        self._stop.set()
        self._thread.join()
        self.sample()
        for pid, m in self.mem.items():
            m.hwm_kb = vm_hwm_kb(pid)
        return self.mem
