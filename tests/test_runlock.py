"""One driver per run: the lease in the run folder, locally and on S3."""

import json
import os
import subprocess
import sys
import time

import pytest

from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.runlock import LOCK, LeaseHolder, RunLock, RunLocked, lease_is_stale
from longvid.spec import RenderSpec


def test_stale_leases():
    alive = {42}.__contains__
    live = LeaseHolder("a", "here", 42, expires_at=100.0)
    assert not lease_is_stale(live, 50.0, "here", alive)
    assert lease_is_stale(live, 100.0, "here", alive)  # expired
    assert lease_is_stale(LeaseHolder("a", "here", 7, 100.0), 50.0, "here", alive)  # its process is gone
    assert not lease_is_stale(LeaseHolder("a", "there", 7, 100.0), 50.0, "here", alive)  # cannot tell: wait for expiry
    assert lease_is_stale(None, 0.0, "here", alive)  # unreadable


def _locked_elsewhere(run, seconds=60.0):
    """A lease held by a live process (a sleeping child), as a second driver would hold it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = LeaseHolder("other", os.uname().nodename, child.pid, time.time() + seconds)
    run.write_bytes(LOCK, holder.to_bytes())
    return child


def test_a_second_driver_is_refused_and_a_dead_ones_lease_is_taken_over(tmp_path):
    store = LocalRunStore(tmp_path)
    spec = RenderSpec(prompt="a kite over a beach", duration_s=5, resolution="360p", judge="off")
    pipeline = RenderPipeline(store, InlineSegmentRunner())
    pipeline.render(spec, run_id="r")
    run = store.open("r")
    assert not run.exists(LOCK)  # released when the render ended
    child = _locked_elsewhere(run)
    try:
        with pytest.raises(RunLocked, match=f"pid {child.pid}"):
            pipeline.resume("r")
    finally:
        child.kill()
        child.wait()
    pipeline.resume("r")  # its holder died: taken over at once on the same host
    assert not run.exists(LOCK)


def test_the_lease_is_renewed_while_held(tmp_path):
    store = LocalRunStore(tmp_path)
    run = store.create("r")
    with RunLock(run, ttl_s=0.6) as lock:
        first = json.loads(run.read_bytes(LOCK))["expires_at"]
        time.sleep(0.5)
        assert json.loads(run.read_bytes(LOCK))["expires_at"] > first
        assert json.loads(run.read_bytes(LOCK))["owner"] == lock.owner
        with pytest.raises(RunLocked):
            RunLock(run).acquire()  # same process, but the lease is live
    assert not run.exists(LOCK)


def test_the_lease_on_s3_uses_a_conditional_write(s3_server, tmp_path):
    from longvid.runtime.store import S3RunStore

    store = S3RunStore("s3://renders/locks/", scratch_root=tmp_path)
    run = store.create("r")
    with RunLock(run):
        assert run.exists(LOCK)
        with pytest.raises(RunLocked):
            RunLock(run).acquire()
    assert not run.exists(LOCK)
