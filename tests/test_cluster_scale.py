"""The cluster paths on real multi-node Ray clusters on this machine (each node its own raylet
and workers; longvid.testing.ray_cluster): an autoscaler that brings a GPU node up for GPU
segments and lets it go when idle, a worker node killed while its segments run, and a Serve
Renderer replica killed mid-render (another replica takes the render over: serve/adoption.py).

Each scenario runs in tests/cluster_child.py, a process of its own: it starts its own
cluster (its own ports and temp dir, stopped by killing exactly its processes) and connects
to it as its driver, which this pytest process cannot do beside the session Ray fixture.
Marked `cluster` (`-m "not cluster"` leaves them out); about two minutes together on 2 cores.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from longvid.media import probe
from longvid.testing.ray_cluster import run_stoppable

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]


def run_child(*args: str, timeout: float = 280) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("RAY_ADDRESS", None)
    done = run_stoppable([sys.executable, str(REPO / "tests" / "cluster_child.py"), *args], env, timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gpu_segments_bring_a_gpu_node_up_and_it_leaves_when_idle(tmp_path):
    seen = run_child("autoscale", "-", str(tmp_path))
    assert seen["gpus_before"] == 0  # the cluster started with a head alone (no CPU, no GPU)
    assert seen["segments"] == 4 and len(seen["gpu_nodes"]) == 1  # the autoscaler launched one GPU worker
    # Every segment task was granted half a GPU: it ran on the GPU node (the head has none,
    # and no CPU either, so nothing ran there), not shrunk to the GPU-less cluster it started on.
    assert all(r["GPU"] == 0.5 and r["CPU"] == 1.0 for r in seen["segment_resources"])
    assert seen["scale_up_s"] is not None and seen["scale_up_s"] < seen["render_s"]
    assert seen["scale_down_s"] is not None  # idle for the timeout (6 s here): terminated


def test_a_worker_node_killed_mid_render_pays_for_no_task_twice(tmp_path):
    seen = run_child("node-kill", str(tmp_path))
    assert seen["killed_at_tasks"] >= 2  # the node died while its segments were waiting on Runway
    assert seen["status"] == "done" and seen["segments"] == 2
    # The retried Ray tasks polled the tasks the driver had created: one create per segment.
    assert seen["creates"] == seen["tasks"] == 2 and len(set(seen["task_ids"])) == 2
    assert probe(Path(seen["output"])).frames == 120


def test_a_renderer_replica_killed_mid_render_is_taken_over_and_the_render_finishes(tmp_path):
    seen = run_child("replica-kill", str(tmp_path))
    assert seen["renderer_replicas"] == 2 and seen["victim_was_replica"]  # SIGKILL to the replica holding the lease
    assert seen["killed_at_tasks"] == 2  # while both segments waited on Runway
    assert seen["status"] == "done" and seen["new_holder_is_replica"]  # another live Renderer replica took the lease
    # It polled the tasks the dead replica had created: one create per segment.
    assert seen["creates"] == seen["tasks"] == seen["segments"] == 2 and len(set(seen["task_ids"])) == 2
    # One event stream, unbroken: statuses kept coming after the kill, through to `end: done`.
    events = seen["events"]
    assert [e for e in events if e[0] == "connect"] == events[:1]
    assert any(e[0] == "status" and e[2] > 0 for e in events) and events[-1][:2] == ["end", "done"]
    assert seen["video_status"] == 200 and probe(Path(seen["output"])).frames == 120
