"""One driver per run: a lease in the run folder (lock.json).

Two processes rendering the same run (a second `longvid resume`, a batch job re-submitted
while the first still runs, two Serve replicas) would each create provider tasks for the
same segments and pay twice. The driver that renders a run holds its lease and renews it
from a background thread; a lease whose holder stopped renewing it (its expiry passed), or
whose process is gone on this same host, is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import logging

from ..errors import RenderError
from ..settings import DEFAULT_RUN_LOCK_TTL_S
from .layout import LOCK

DEFAULT_TTL_S = DEFAULT_RUN_LOCK_TTL_S


log = logging.getLogger(__name__)


class RunLocked(RenderError):
    """Another live driver is rendering this run (busy, not bad input: retry later)."""


@dataclass(frozen=True)
class LeaseHolder:
    owner: str
    host: str
    pid: int
    expires_at: float  # wall clock: the lease must be readable by other hosts

    @classmethod
    def parse(cls, data: bytes) -> LeaseHolder | None:
        try:
            raw = json.loads(data)
            return cls(str(raw["owner"]), str(raw["host"]), int(raw["pid"]), float(raw["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: treated as stale

    def to_bytes(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": self.host, "pid": self.pid, "expires_at": self.expires_at}).encode()


def lease_is_stale(holder: LeaseHolder | None, now: float, host: str, pid_alive) -> bool:
    """May this lease be taken over? Expired, unreadable, or held by a dead process here."""
    if holder is None or holder.expires_at <= now:
        return True
    return holder.host == host and not pid_alive(holder.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _this_host() -> str:
    """Where a pid means something: the host name, this boot, and this PID namespace (two
    containers may share a host name but not their processes)."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            parts.append(handle.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:  # not Linux: the host name alone
        pass
    return "|".join(parts)


class RunLock:
    """`with RunLock(run): ...` holds the run's lease (renewed every ttl/3) or raises RunLocked.

    Every change to the lease is a compare-and-swap against the bytes this holder last wrote
    (a file lock locally, S3 conditional requests), so a holder that was paused past its
    expiry and lost the lease finds out at its next renewal (`lost`, then `on_lost()`)
    instead of writing over the new holder's lease.
    """

    def __init__(self, run, ttl_s: float | None = None, on_lost=None):
        self.run = run
        self.ttl_s = ttl_s if ttl_s is not None else DEFAULT_TTL_S  # the pipeline passes settings.store.run_lock_ttl_s
        self.owner = uuid.uuid4().hex
        self.host = _this_host()
        self.on_lost = on_lost
        self.lost = False
        self._held: bytes | None = None  # the lease as this holder last wrote it
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _lease(self) -> bytes:
        return LeaseHolder(self.owner, self.host, os.getpid(), time.time() + self.ttl_s).to_bytes()

    def _current(self) -> bytes | None:
        try:
            return self.run.read_bytes(LOCK) if self.run.exists(LOCK) else None
        except Exception:  # vanished between the two calls: released
            return None

    def acquire(self) -> RunLock:
        for _attempt in range(5):
            mine = self._lease()
            if self.run.create_exclusive(LOCK, mine):
                break
            current = self._current()
            if current is None:
                continue  # released meanwhile: try to create it again
            holder = LeaseHolder.parse(current)
            if not lease_is_stale(holder, time.time(), self.host, _pid_alive):
                left = max(0, round(holder.expires_at - time.time()))
                raise RunLocked(
                    f"run {self.run.run_id} is being rendered by another process (pid {holder.pid} on "
                    f"{holder.host.split('|')[0]}); wait for it to finish, or stop it and retry "
                    f"(its lease runs out {left} s after it stops)"
                )
            if self.run.swap(LOCK, current, mine):  # take the stale lease over, unless another taker did first
                break
        else:
            raise RunLocked(f"run {self.run.run_id} is contended by other processes; retry later")
        self._held = mine
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.run.run_id}", daemon=True)
        self._renewer.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            fresh = self._lease()
            try:
                if self.run.swap(LOCK, self._held, fresh):
                    self._held = fresh
                    continue
            except Exception as exc:  # a store hiccup: the next renewal (at ttl/3) tries again before expiry
                log.warning("could not renew the lease of run %s: %s", self.run.run_id, exc.__class__.__name__)
                continue
            log.warning("run %s: another process took its lease over; stopping", self.run.run_id)
            self.lost = True
            if self.on_lost is not None:
                self.on_lost()
            return

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        if self._held is not None and not self.lost:
            try:
                self.run.swap(LOCK, self._held, None)  # only our own lease, never a successor's
            except Exception:  # left behind: it expires on its own
                pass
        self._held = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
