"""One driver per run: the lease in the run folder, locally and on S3."""

import json
import subprocess
import sys
import time

import pytest

from longvid.manifest import RunStatus
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.runlock import LOCK, LeaseHolder, RunLock, RunLocked, _this_host, lease_is_stale
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
    holder = LeaseHolder("other", _this_host(), child.pid, time.time() + seconds)
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


def test_a_paused_holder_that_lost_its_lease_does_not_write_over_the_new_one(tmp_path):
    """A holder paused past its expiry (GC, a suspended laptop) finds at its next renewal
    that another driver took over: it stops (on_lost) and leaves the new lease alone."""
    import threading

    run = LocalRunStore(tmp_path).create("r")
    lost = threading.Event()
    first = RunLock(run, ttl_s=0.3, on_lost=lost.set).acquire()
    first._stop.set()  # pause its renewals, as a stopped process would
    first._renewer.join()
    time.sleep(0.35)  # its lease expires
    second = RunLock(run, ttl_s=30).acquire()  # a stale lease is taken over
    first._stop.clear()
    first._renewer = __import__("threading").Thread(target=first._renew, daemon=True)
    first._renewer.start()  # the first holder wakes up
    assert lost.wait(2) and first.lost
    first.release()
    assert json.loads(run.read_bytes(LOCK))["owner"] == second.owner  # not overwritten, not removed
    second.release()
    assert not run.exists(LOCK)


def test_two_takers_of_one_stale_lease_cannot_both_win(tmp_path):
    run = LocalRunStore(tmp_path).create("r")
    stale = LeaseHolder("gone", "elsewhere", 1, time.time() - 1).to_bytes()
    run.write_bytes(LOCK, stale)
    assert run.swap(LOCK, stale, b"A")
    assert not run.swap(LOCK, stale, b"B")  # B read the same stale lease, but A changed it first
    assert run.read_bytes(LOCK) == b"A"


def test_a_serve_replica_that_loses_the_lease_leaves_the_winners_run_alone(tmp_path):
    from longvid.runtime.store import MANIFEST, read_manifest, write_model
    from serve.worker import RenderWorker

    store = LocalRunStore(tmp_path)
    spec = RenderSpec(prompt="a kite over a beach", duration_s=5, resolution="360p", judge="off")
    RenderPipeline(store, InlineSegmentRunner()).render(spec, run_id="r")
    run = store.open("r")
    write_model(run, MANIFEST, read_manifest(run).model_copy(update={"status": RunStatus.RENDERING}))  # the winner is mid-render
    child = _locked_elsewhere(run)
    try:
        worker = RenderWorker(store, InlineSegmentRunner, judge_factory=lambda spec: None)
        worker.start("r", "attempt-2")
        for _ in range(100):
            if not worker.running():
                break
            time.sleep(0.1)
        after = read_manifest(run)
        assert after.status == "rendering" and after.error is None  # not marked failed by the loser
        assert json.loads(run.read_bytes(LOCK))["owner"] == "other"
    finally:
        child.kill()
        child.wait()
