"""Run a command and measure it: wall time, per-child rusage (wait4) and the memory and CPU
of its whole process tree, sampled from /proc. Standard library only (psutil is not in the
project venv, and the moviepy venv must not need anything either).

Why both memory figures:
- wait4's ru_maxrss is the peak RSS of the *largest single process* among the child and
  the descendants it reaped. It is exact for a one-process tool, but it misses processes
  that were never reaped by it (Ray's workers belong to the raylet) and never sums.
- The sampled figure sums the tree's RSS (and PSS, which splits shared pages fairly, e.g.
  Ray's shared-memory object store) every `interval` seconds; a peak shorter than one
  interval can be missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MB = 1024 * 1024


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2 :].split()  # the name may hold spaces
    # rest[0] is state (field 3); ppid is field 4, utime 14, stime 15.
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICKS


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tree(root: int) -> list[int]:
    """The root and all its live descendants."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                parents.setdefault(info[0], []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, ()))
    return found


@dataclass
class TreeStats:
    peak_rss: int = 0  # bytes, sum over the tree at the worst sample
    peak_pss: int | None = None
    peak_processes: int = 0
    cpu_s: dict[int, float] = field(default_factory=dict)  # last CPU time seen per pid
    samples: int = 0

    @property
    def cpu_total_s(self) -> float:
        return sum(self.cpu_s.values())


class TreeSampler(threading.Thread):
    def __init__(self, root: int, interval: float = 0.05, pss_every: int = 4):
        super().__init__(daemon=True)
        self.root, self.interval, self.pss_every = root, interval, pss_every
        self.stats = TreeStats()
        self._halt = threading.Event()
        self.available = os.path.isdir("/proc")

    def run(self) -> None:
        if not self.available:
            return
        n = 0
        while not self._halt.is_set():
            pids = tree(self.root)
            rss = sum(_rss_bytes(p) for p in pids)
            s = self.stats
            s.peak_rss = max(s.peak_rss, rss)
            s.peak_processes = max(s.peak_processes, len(pids))
            for p in pids:
                info = _stat(p)
                if info is not None:
                    s.cpu_s[p] = max(s.cpu_s.get(p, 0.0), info[1])
            if n % self.pss_every == 0:
                values = [_pss_bytes(p) for p in pids]
                if any(v is not None for v in values):
                    pss = sum(v or 0 for v in values)
                    s.peak_pss = max(s.peak_pss or 0, pss)
            s.samples += 1
            n += 1
            self._halt.wait(self.interval)

    def stop(self) -> TreeStats:
        self._halt.set()
        self.join()
        return self.stats


@dataclass
class Measured:
    returncode: int
    wall_s: float
    stdout: str
    stderr: str
    maxrss_bytes: int  # wait4: largest single process among the child and what it reaped
    user_s: float
    sys_s: float
    tree: TreeStats


def run_measured(cmd: list[str], cwd: str | None = None, env: dict | None = None, timeout: float | None = None,
                 interval: float = 0.05) -> Measured:
    """Run `cmd`, sampling its process tree, and reap it with wait4 for its own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid, interval)
        sampler.start()
        deadline = None if timeout is None else started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stats = sampler.stop()
        out.seek(0)
        err.seek(0)
        # Linux reports ru_maxrss in KiB (macOS in bytes).
        scale = 1 if sys.platform == "darwin" else 1024
        return Measured(
            returncode=proc.returncode,
            wall_s=wall,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            maxrss_bytes=usage.ru_maxrss * scale,
            user_s=usage.ru_utime,
            sys_s=usage.ru_stime,
            tree=stats,
        )


def self_maxrss_bytes() -> int:
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain aligned text table (no dependencies)."""
    right = set(range(1, len(headers))) if right is None else right
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
