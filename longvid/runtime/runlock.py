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

LOCK = "lock.json"
DEFAULT_TTL_S = 90.0


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


class RunLock:
    """`with RunLock(run): ...` holds the run's lease (renewed every ttl/3) or raises RunLocked."""

    def __init__(self, run, ttl_s: float | None = None):
        self.run = run
        self.ttl_s = ttl_s if ttl_s is not None else float(os.environ.get("LONGVID_RUN_LOCK_TTL_S", "") or DEFAULT_TTL_S)
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _lease(self) -> LeaseHolder:
        return LeaseHolder(self.owner, self.host, os.getpid(), time.time() + self.ttl_s)

    def acquire(self) -> RunLock:
        if not self.run.create_exclusive(LOCK, self._lease().to_bytes()):
            holder = LeaseHolder.parse(self.run.read_bytes(LOCK)) if self.run.exists(LOCK) else None
            if not lease_is_stale(holder, time.time(), self.host, _pid_alive):
                left = max(0, round(holder.expires_at - time.time()))
                raise RunLocked(
                    f"run {self.run.run_id} is being rendered by another process (pid {holder.pid} on {holder.host}); "
                    f"wait for it to finish, or stop it and retry (its lease runs out {left} s after it stops)"
                )
            # Take the stale lease over; a racing taker may write after us, so read back.
            self.run.write_bytes(LOCK, self._lease().to_bytes())
            current = LeaseHolder.parse(self.run.read_bytes(LOCK))
            if current is None or current.owner != self.owner:
                raise RunLocked(f"run {self.run.run_id} was just taken over by another process; retry later")
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.run.run_id}", daemon=True)
        self._renewer.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.run.write_bytes(LOCK, self._lease().to_bytes())
            except Exception as exc:  # a store hiccup: the next renewal (at ttl/3) tries again before expiry
                log.warning("could not renew the lease of run %s: %s", self.run.run_id, exc.__class__.__name__)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
            try:
                holder = LeaseHolder.parse(self.run.read_bytes(LOCK)) if self.run.exists(LOCK) else None
                if holder is not None and holder.owner == self.owner:
                    self.run.remove(LOCK)
            except Exception:  # left behind: it expires on its own
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
