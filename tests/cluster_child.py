"""Run by test_cluster_scale (and bench/bench_autoscale.py) in its own process: it starts its
own multi-node Ray cluster (longvid.testing.ray_cluster), renders on it, and prints one JSON
line with what it saw. A process of its own because a Ray driver joins one cluster for its
lifetime, and the pytest process may already be the session fixture's driver.

    python tests/cluster_child.py autoscale MODEL_DIR|- WORKDIR
    python tests/cluster_child.py node-kill WORKDIR
    python tests/cluster_child.py replica-kill WORKDIR
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _stop(signum, _frame):
    # SystemExit, not the signal's default (which ends the process at once): the scenario's
    # `finally` stops the cluster it started instead of leaking every node's processes.
    raise SystemExit(f"cluster_child: stopped by signal {signum}")


signal.signal(signal.SIGTERM, _stop)  # the parent's timeout (run_stoppable)
signal.signal(signal.SIGALRM, _stop)
signal.alarm(240)  # never outlive a stuck test: before the parent's timeout (280 s), so it stops itself

# cluster.yaml's node types, scaled down: a head that runs no tasks, CPU workers, GPU
# workers from zero (each advertising one GPU and its memory as longvid_vram_gb).
GB = 1024**3
WORKER_TYPES = {
    "cpu_worker": {"resources": {"CPU": 2, "memory": 4 * GB}, "min_workers": 0, "max_workers": 2},
    "gpu_worker": {"resources": {"CPU": 2, "GPU": 1, "longvid_vram_gb": 24, "memory": 12 * GB}, "min_workers": 0, "max_workers": 1},
}

# The GCS declares a silent node dead after 1 s of missed health checks (default: 3 s x 5),
# so the test does not wait half a minute for Ray to retry the killed node's tasks.
FAST_NODE_FAILURE = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                     "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "2"}


def _connect(address: str, setup_hook=None):
    import ray

    runtime_env = {"worker_process_setup_hook": setup_hook} if setup_hook else None
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING", runtime_env=runtime_env)
    return ray


def gpu_nodes() -> dict[str, float]:
    """Alive nodes that advertise a GPU: node id -> when it started (epoch seconds)."""
    import ray

    return {n["NodeID"]: n.get("StartTime", 0) for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}


def register_gpu_preview() -> None:
    """A test provider whose segment tasks ask Ray for a GPU (uses_gpu, made where the task
    runs, as an in-task GPU model would): the preview renderer under another name. Registered
    in the driver and, as Ray's worker setup hook, in every worker process."""
    from dataclasses import replace

    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
    from longvid.providers.registry import register_provider

    capabilities = replace(PREVIEW_CAPABILITIES, name="gpu-preview", uses_gpu=True)

    class GpuPreview(PreviewProvider):
        pass

    GpuPreview.capabilities = capabilities
    register_provider("gpu-preview", capabilities, lambda settings: GpuPreview())


def autoscale(model_dir: str, workdir: str, idle_minutes: float = 0.1) -> dict:
    """A render on a cluster with no GPU node: its GPU request brings one up, the segments are
    made there, and once the driver lets go the node leaves. `model_dir` "-": the gpu-preview
    test provider (each segment task asks for a GPU); else the local provider with that
    model (its resident model worker asks for the GPU; the segment tasks wait on it)."""
    from longvid.testing.ray_cluster import LocalRayCluster

    cluster = LocalRayCluster()
    out: dict = {}
    try:
        started = time.monotonic()
        cluster.start_head(num_cpus=0, autoscaling={"worker_types": WORKER_TYPES, "idle_timeout_minutes": idle_minutes})
        out["head_s"] = round(time.monotonic() - started, 2)
        ray = _connect(cluster.address, setup_hook=register_gpu_preview if model_dir == "-" else None)
        out["gpus_before"] = ray.cluster_resources().get("GPU", 0.0)

        from longvid.providers.local.loader import load_spec
        from longvid.providers.local.pool import worker_name
        from longvid.runtime import LocalRunStore, RaySegmentRunner, RenderPipeline
        from longvid.settings import Settings
        from longvid.spec import RenderSpec

        local = model_dir != "-"
        settings = Settings.from_env({"LONGVID_LOCAL_MODEL_DIR": model_dir, "LONGVID_LOCAL_DEVICE": "cuda",
                                      "LONGVID_LOCAL_STEPS": "2", "LONGVID_LOCAL_HEIGHT": "32",
                                      "LONGVID_LOCAL_PLACEMENT_TIMEOUT_S": "120"} if local else {})
        settings = settings.model_copy(update={"autoscaling": True})  # LONGVID_AUTOSCALING=1, as cluster.yaml sets it
        if not local:
            register_gpu_preview()
        seen_up: list[float] = []

        def watch() -> None:  # when the GPU node joined, as the driver sees it
            while not seen_up and not done.is_set():
                if gpu_nodes():
                    seen_up.append(time.monotonic())
                time.sleep(0.2)

        done = threading.Event()
        watcher = threading.Thread(target=watch, daemon=True)
        render_started = time.monotonic()
        watcher.start()
        spec = RenderSpec(prompt="a red fox explores a snowy forest", duration_s=5, fps=12, resolution="360p",
                          provider="local" if local else "gpu-preview", continuity="anchor", judge="off", narration="off")
        result = RenderPipeline(LocalRunStore(Path(workdir) / "runs"), RaySegmentRunner(), settings=settings).render(spec, run_id="scale-up")
        done.set()
        out["render_s"] = round(time.monotonic() - render_started, 2)
        out["scale_up_s"] = round(seen_up[0] - render_started, 2) if seen_up else None
        out["segments"] = result.segments
        nodes = gpu_nodes()
        out["gpu_nodes"] = list(nodes)
        if local:
            worker = ray.get_actor(worker_name(load_spec(settings.local), settings.local, 0))
            out["worker"] = ray.get(worker.stats.remote())
        manifest = json.loads((Path(workdir) / "runs" / "scale-up" / "manifest.json").read_text())
        out["segment_resources"] = [s["resources"] for s in manifest["segments"]]
        ray.shutdown()  # the driver ends, as a batch job does: its model worker (and GPU claim) goes with it

        from ray._raylet import GcsClient

        client, left_at = GcsClient(address=cluster.address), time.monotonic()
        while True:
            alive = {info.node_id.hex() for info in client.get_all_node_info(timeout=5).values() if info.state == 0}
            if not alive & set(nodes):
                out["scale_down_s"] = round(time.monotonic() - left_at, 2)
                break
            if time.monotonic() - left_at > 120:
                out["scale_down_s"] = None
                break
            time.sleep(0.5)
        out["total_s"] = round(time.monotonic() - started, 2)
    finally:
        cluster.stop()
    return out


def node_kill(workdir: str) -> dict:
    """A Runway render on a head (no tasks) and one worker node; once the worker's segment
    tasks are waiting on Runway, a second worker joins and the first is killed outright.
    The tasks are retried on the new node, which polls the tasks the driver created."""
    from longvid.runtime import LocalRunStore, RaySegmentRunner, RenderPipeline
    from longvid.settings import Settings
    from longvid.spec import RenderSpec
    from longvid.testing.fake_runway import DEFAULT_KEY, start_fake_runway
    from longvid.testing.ray_cluster import LocalRayCluster

    # Tasks run until the node is killed (then they finish in a few polls): the kill always
    # lands while segments are in flight, however slow the machine.
    server, runway = start_fake_runway(pending_polls=2, running_polls=1_000_000, scale=0.05)
    cluster = LocalRayCluster()
    out: dict = {}
    try:
        cluster.start_head(num_cpus=0, env=FAST_NODE_FAILURE)
        doomed = cluster.add_worker(num_cpus=2)
        _connect(cluster.address)
        settings = Settings.from_env({"RUNWAYML_BASE_URL": server.url, "RUNWAYML_API_SECRET": DEFAULT_KEY,
                                      "LONGVID_POLL_INTERVAL_S": "0.1", "LONGVID_TASK_TIMEOUT_S": "240"})
        spec = RenderSpec(prompt="a lighthouse at night", duration_s=5, resolution="360p", provider="runway",
                          continuity="anchor", judge="off", narration="off", budget_usd=20)

        def kill_when_busy() -> None:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                if len(runway.tasks) >= 2 and runway.counts["poll"] >= 4:
                    try:
                        cluster.add_worker(num_cpus=2)
                        cluster.kill_worker(doomed)
                        out["killed_at_tasks"] = len(runway.tasks)
                    except Exception as exc:  # reported; the render still ends (below)
                        out["kill_error"] = repr(exc)
                    runway.running_polls = 3  # the rest of the render goes quickly
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        started = time.monotonic()
        result = RenderPipeline(LocalRunStore(Path(workdir) / "runs"), RaySegmentRunner(), settings=settings).render(spec, run_id="node-kill")
        killer.join(timeout=5)
        out["render_s"] = round(time.monotonic() - started, 2)
        out["segments"] = result.segments
        out["creates"] = runway.counts["create"]
        out["tasks"] = len(runway.tasks)
        out["cost_usd"] = result.cost_usd
        manifest = json.loads((Path(workdir) / "runs" / "node-kill" / "manifest.json").read_text())
        out["status"] = manifest["status"]
        out["task_ids"] = [s["task_id"] for s in manifest["segments"]]
        out["output"] = str(Path(workdir) / "runs" / "node-kill" / "final.mp4")
    finally:
        import ray

        ray.shutdown()
        cluster.stop()
        server.stop()
    return out


def _holder_pid(run_dir: Path) -> int | None:
    """The pid of the process holding the run's lease (lock.json), if any."""
    try:
        return int(json.loads((run_dir / "lock.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _renderer_pids(cluster) -> dict[int, str]:
    """Pids of this cluster's live Serve Renderer replicas -> their process titles (Ray names
    an actor's worker process after it: ray::ServeReplica:longvid:Renderer)."""
    from longvid.testing.ray_cluster import session_processes

    found = {}
    for pid in session_processes(cluster.head.process.pid):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        if title.startswith("ray::ServeReplica:longvid:Renderer"):
            found[pid] = title
    return found


def _follow_events(client, url: str, headers: dict, seen: list, done: threading.Event) -> None:
    """Reads the render's event stream as a client would: reconnecting when it ends without
    `end` or breaks; `seen` gets ("connect",) and (event, status, monotonic time) entries."""
    while not done.is_set():
        seen.append(("connect", None, time.monotonic()))
        try:
            with client.stream("GET", url, headers=headers, timeout=60) as response:
                event = None
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event:
                        seen.append((event, json.loads(line[5:]).get("status"), time.monotonic()))
                        if event == "end":
                            return
        except Exception as exc:  # a broken stream: reconnect, as EventSource does
            seen.append(("error", repr(exc), time.monotonic()))
        time.sleep(0.5)


def replica_kill(workdir: str, adopt_after_s: str = "6", wait_s: str = "120") -> dict:
    """The Serve app with two Renderer replicas; a Runway render submitted over HTTP; once its
    segments wait on Runway, the replica holding the run's lease is killed (SIGKILL). A live
    Renderer replica takes the run over (serve/adoption.py) and finishes it, polling the tasks
    the dead one created; the event stream keeps going. `adopt_after_s` (LONGVID_ADOPT_AFTER_S):
    a value past stale_after_s (120) turns adoption off, as before serve/adoption.py existed;
    `wait_s`: how long after the kill to wait for the render to end."""
    import httpx

    from longvid.testing.fake_runway import DEFAULT_KEY, start_fake_runway
    from longvid.testing.ray_cluster import LocalRayCluster, free_port

    server, runway = start_fake_runway(pending_polls=2, running_polls=1_000_000, scale=0.05)
    cluster = LocalRayCluster()
    out: dict = {}
    token = "replica-kill-test-token-5d1e7c2b9a4f"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        started = time.monotonic()
        cluster.start_head(num_cpus=4)
        ray = _connect(cluster.address)
        from ray import serve

        from serve.app import build_app

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 120})
        env = {"LONGVID_API_TOKENS": token, "LONGVID_PLANNER": "offline", "RUNWAYML_BASE_URL": server.url,
               "RUNWAYML_API_SECRET": DEFAULT_KEY, "LONGVID_POLL_INTERVAL_S": "0.1", "LONGVID_TASK_TIMEOUT_S": "240",
               "LONGVID_ADOPT_AFTER_S": adopt_after_s}
        serve.run(build_app({"store": str(Path(workdir) / "runs")}, runtime_env={"env_vars": env}, num_cpus=0,
                            renderer_replicas=2), name="longvid", route_prefix="/")
        out["serve_up_s"] = round(time.monotonic() - started, 2)
        replicas_before = _renderer_pids(cluster)
        out["renderer_replicas"] = len(replicas_before)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        body = {"prompt": "a lighthouse at night", "duration_s": 5, "resolution": "360p", "provider": "runway",
                "continuity": "anchor", "judge": "off", "narration": "off", "budget_usd": 20}
        submitted = client.post("/v1/renders", json=body, headers=headers)
        assert submitted.status_code == 202, submitted.text
        run_id = submitted.json()["id"]
        run_dir = Path(workdir) / "runs" / run_id
        seen: list = []
        done = threading.Event()
        follower = threading.Thread(target=_follow_events, args=(client, f"/v1/renders/{run_id}/events", headers, seen, done),
                                    daemon=True)
        follower.start()

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both tasks created and recorded, and polled a while
            manifest = json.loads((run_dir / "manifest.json").read_text())
            if all(s.get("task_id") for s in manifest["segments"]) and runway.counts["poll"] >= 4 and _holder_pid(run_dir):
                break
            time.sleep(0.1)
        victim = _holder_pid(run_dir)
        out["victim_was_replica"] = victim in replicas_before
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        out["killed_at_tasks"] = len(runway.tasks)
        runway.running_polls = 3  # the rest of the render goes quickly

        holders = set()
        while time.monotonic() < killed_at + float(wait_s):
            pid = _holder_pid(run_dir)
            if pid and pid != victim:
                holders.add(pid)
            status = client.get(f"/v1/renders/{run_id}", headers=headers).json()["status"]
            if status in ("done", "failed", "cancelled"):
                break
            time.sleep(0.2)
        out["status"], out["recovered_s"] = status, round(time.monotonic() - killed_at, 2)
        replicas_after = _renderer_pids(cluster)
        out["new_holder_is_replica"] = bool(holders) and all(pid in replicas_after for pid in holders)
        out["new_holder_survivor"] = bool(holders & set(replicas_before))
        out["renderer_replicas_after"] = len(replicas_after)
        follower.join(timeout=30 if status == "done" else 0)
        done.set()
        out["events"] = [[e, s, round(t - killed_at, 2)] for e, s, t in seen]
        video = client.get(f"/v1/renders/{run_id}/video", headers=headers)
        out["video_status"] = video.status_code
        (Path(workdir) / "final.mp4").write_bytes(video.content)
        out["output"] = str(Path(workdir) / "final.mp4")
        out["creates"], out["tasks"] = runway.counts["create"], len(runway.tasks)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        out["segments"] = len(manifest["segments"])
        out["task_ids"] = [s["task_id"] for s in manifest["segments"]]
        out["total_s"] = round(time.monotonic() - started, 2)
        client.close()
        serve.shutdown()
    finally:
        import ray

        ray.shutdown()
        cluster.stop()
        server.stop()
    return out


if __name__ == "__main__":
    scenario, *args = sys.argv[1:]
    runs = {"autoscale": autoscale, "node-kill": node_kill, "replica-kill": replica_kill}
    try:
        print(json.dumps(runs[scenario](*args)), flush=True)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # at once: Ray's clients of the stopped cluster would wait a minute for it
    os._exit(0)
