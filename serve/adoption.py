"""Renderer replicas take over renders whose replica died.

A Renderer replica that dies mid-render (killed, its node lost) leaves its run "rendering"
with a heartbeat that stopped. Serve starts a replacement replica, but nothing told it about
the run: the render would sit there until it is shown interrupted (stale_after_s) and a user
resumes it. So every Renderer replica scans the store now and then for API runs that are
unfinished, whose heartbeat stopped beating at least `adopt_after_s` ago (and less than
`stale_after_s` ago: a render shown interrupted waits for a user's resume, as before), and
whose run lease is free (expired, or held by a dead process on this host). It claims one
with a compare-and-swap of worker.json from the orphan's bytes to a new attempt, so of two
replicas scanning at once only one starts it; the pipeline's run lease still guards the
provider tasks (a resume never pays for a task twice).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable

from longvid.manifest import RunStatus
from longvid.runtime.layout import CANCEL, LOCK, MANIFEST, REQUEST, WORKER
from longvid.runtime.runlock import LeaseHolder, _pid_alive, _this_host, lease_is_stale

from .runs import worker_record

log = logging.getLogger("longvid.serve")


def heartbeat_of(worker: bytes | None) -> tuple[str | None, float | None]:
    """(attempt, heartbeat_at) of worker.json's bytes; (None, None) if unreadable."""
    try:
        raw = json.loads(worker) if worker else None
        return str(raw["attempt"]), float(raw["heartbeat_at"])
    except (ValueError, KeyError, TypeError):
        return None, None


def is_orphan(status: RunStatus, heartbeat_at: float | None, lease: LeaseHolder | None | bool, now: float,
              adopt_after_s: float, stale_after_s: float, host: str, pid_alive=_pid_alive) -> bool:
    """Should a replica take this run over? Unfinished, silent for [adopt_after_s,
    stale_after_s), and its lease free (`lease`: the holder, None when unreadable, False when
    there is no lease file)."""
    if status.finished or heartbeat_at is None:
        return False
    silent_s = now - heartbeat_at
    if not adopt_after_s <= silent_s < stale_after_s:
        return False
    return lease is False or lease_is_stale(lease, now, host, pid_alive)


def _read(run, name: str) -> bytes | None:
    try:
        return run.read_bytes(name) if run.exists(name) else None
    except OSError:  # removed between the calls
        return None


def adopt_orphans(store, start: Callable[[str, str], bool], adopt_after_s: float, stale_after_s: float,
                  now: float | None = None) -> list[str]:
    """Claim and start (`start(run_id, attempt)`) every orphaned API render; the run ids."""
    now = time.time() if now is None else now
    host, adopted = _this_host(), []
    for run_id in store.list_runs():
        run = store.open(run_id)
        worker = _read(run, WORKER)
        attempt, heartbeat_at = heartbeat_of(worker)
        if attempt is None or not run.exists(REQUEST) or now - heartbeat_at < adopt_after_s:
            continue  # not an API render, or its replica beats: cheap checks first
        try:
            status = RunStatus(json.loads(_read(run, MANIFEST) or b"{}").get("status"))
        except (ValueError, AttributeError):
            continue  # no readable manifest: nothing to resume
        if _cancelled_attempt(_read(run, CANCEL)) == attempt:
            continue  # its user asked it to stop: left for them to see (interrupted) and resume
        lock = _read(run, LOCK)
        lease = False if lock is None else LeaseHolder.parse(lock)
        if not is_orphan(status, heartbeat_at, lease, now, adopt_after_s, stale_after_s, host):
            continue
        fresh = secrets.token_hex(8)
        if not run.swap(WORKER, worker, worker_record(fresh)):
            continue  # another replica claimed it (or its replica beat) meanwhile
        log.warning("render %s: its replica stopped beating %.0f s ago; taking it over", run_id, now - heartbeat_at)
        if start(run_id, fresh):
            adopted.append(run_id)
    return adopted


def _cancelled_attempt(marker: bytes | None) -> str | None:
    try:
        return str(json.loads(marker)["attempt"]) if marker else None
    except (ValueError, KeyError, TypeError):
        return None


class OrphanAdopter:
    """A daemon thread of a Renderer replica: adopt_orphans every adopt_after_s/4 (jittered,
    so replicas started together do not scan in step)."""

    def __init__(self, store, start: Callable[[str, str], bool], adopt_after_s: float, stale_after_s: float):
        self.store, self.start = store, start
        self.adopt_after_s, self.stale_after_s = adopt_after_s, stale_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adopt-orphans", daemon=True)

    def run_in_background(self) -> OrphanAdopter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        period = self.adopt_after_s / 4
        while not self._stop.wait(period * random.uniform(0.75, 1.25)):
            try:
                adopt_orphans(self.store, self.start, self.adopt_after_s, self.stale_after_s)
            except Exception:  # a store hiccup: the next scan tries again
                log.warning("could not scan the run store for orphaned renders", exc_info=True)
