"""Renderer replicas take over renders whose replica died (serve/adoption.py), Ray-free: run
folders in a local store, the decision and the claim (a compare-and-swap of worker.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from longvid.manifest import RunStatus
from longvid.runtime import LocalRunStore
from longvid.runtime.layout import CANCEL, LOCK, MANIFEST, REQUEST, WORKER
from longvid.runtime.runlock import LeaseHolder, _this_host
from serve.adoption import adopt_orphans, is_orphan
from serve.runs import worker_record

ADOPT, STALE = 30.0, 120.0
NOW = 1_000_000.0


@pytest.fixture(scope="module")
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lease(pid: int, expires_in: float = 60.0, host: str | None = None) -> LeaseHolder:
    return LeaseHolder("owner", host or _this_host(), pid, NOW + expires_in)


def make_run(store, run_id: str, *, silent_s: float, status: str = "rendering", lock: LeaseHolder | None = None,
             api: bool = True, cancel: bool = False):
    run = store.create(run_id)
    run.write_bytes(MANIFEST, json.dumps({"status": status}).encode())
    run.write_bytes(WORKER, worker_record("old-attempt", now=NOW - silent_s))
    if api:
        run.write_bytes(REQUEST, b'{"owner": "x"}')
    if lock is not None:
        run.write_bytes(LOCK, lock.to_bytes())
    if cancel:
        run.write_bytes(CANCEL, json.dumps({"attempt": "old-attempt", "requested_at": NOW}).encode())
    return run


def test_a_silent_render_whose_lease_holder_died_is_claimed_once(tmp_path, dead_pid):
    store = LocalRunStore(tmp_path)
    run = make_run(store, "orphan", silent_s=40, lock=lease(dead_pid))
    started: list[tuple[str, str]] = []
    adopted = adopt_orphans(store, lambda run_id, attempt: started.append((run_id, attempt)) or True, ADOPT, STALE, now=NOW)
    assert adopted == ["orphan"]
    claimed = json.loads(run.read_bytes(WORKER))
    assert started == [("orphan", claimed["attempt"])] and claimed["attempt"] != "old-attempt"
    # the claim beats for it: a second scan (another replica) leaves it to the first
    assert adopt_orphans(store, lambda *a: started.append(a) or True, ADOPT, STALE, now=time.time()) == []
    assert len(started) == 1


@pytest.mark.parametrize("case", ["beating", "finished", "interrupted", "lease_alive", "cancelled", "not_api", "no_lease"])
def test_what_is_left_alone(tmp_path, dead_pid, case):
    store = LocalRunStore(tmp_path)
    kwargs = {
        "beating": dict(silent_s=3, lock=lease(dead_pid)),
        "finished": dict(silent_s=40, status="failed", lock=lease(dead_pid)),
        "interrupted": dict(silent_s=STALE + 1, lock=lease(dead_pid)),  # shown interrupted: the user resumes it
        "lease_alive": dict(silent_s=40, lock=lease(os.getpid())),  # its driver still renders (a slow store)
        "cancelled": dict(silent_s=40, lock=lease(dead_pid), cancel=True),
        "not_api": dict(silent_s=40, lock=lease(dead_pid), api=False),
        "no_lease": dict(silent_s=40),  # queued, never started, its replica gone: adopted
    }[case]
    run = make_run(store, case, **kwargs)
    before = run.read_bytes(WORKER)
    adopted = adopt_orphans(store, lambda *a: True, ADOPT, STALE, now=NOW)
    if case == "no_lease":
        assert adopted == [case] and run.read_bytes(WORKER) != before
    else:
        assert adopted == [] and run.read_bytes(WORKER) == before


def test_a_lease_on_another_host_is_free_only_once_expired():
    other = "another-host|boot|ns"
    host = _this_host()
    assert not is_orphan(RunStatus.RENDERING, NOW - 40, lease(123, 10, other), NOW, ADOPT, STALE, host)
    assert is_orphan(RunStatus.RENDERING, NOW - 40, lease(123, -1, other), NOW, ADOPT, STALE, host)
    assert is_orphan(RunStatus.PLANNED, NOW - 40, None, NOW, ADOPT, STALE, host)  # an unreadable lease is stale
    assert not is_orphan(RunStatus.DONE, NOW - 40, False, NOW, ADOPT, STALE, host)
