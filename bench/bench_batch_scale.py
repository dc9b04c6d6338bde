"""Batch throughput on a multi-node local Ray cluster: `jobs/batch_render.py` renders N specs
against the fake Runway (a fixed task latency), for each provider concurrency limit and node
count asked for. Prints renders per minute, the most Runway tasks in flight (the limit must
hold across the cluster), the job driver's peak memory and its memory early and late in the
batch (flat, not growing per render), and then stops one batch midway (SIGTERM, what `ray job
stop` sends) and runs it again: it must resume with no segment holding two live (uncancelled)
Runway tasks. Tasks in flight at the stop are cancelled and re-created on resume: whether
Runway bills a cancelled task was not verified.

    python bench/bench_batch_scale.py                       # 50 renders, limits 2,8, nodes 1,2
    python bench/bench_batch_scale.py --renders 20 --limits 4 --nodes 2 --latency 2

The cluster: a head that runs no tasks (as cluster.yaml's) and N worker nodes of 2 CPUs,
each its own raylet (longvid.testing.ray_cluster). The job driver is `python
jobs/batch_render.py` with RAY_ADDRESS set, as `ray job submit` starts it on the head.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from longvid.testing.fake_runway import DEFAULT_KEY, start_fake_runway  # noqa: E402
from longvid.testing.ray_cluster import LocalRayCluster  # noqa: E402


def specs_file(folder: Path, renders: int) -> Path:
    path = folder / "specs.jsonl"
    lines = [{"prompt": f"a lighthouse on a cliff at night, shot {i}", "duration_s": 5, "resolution": "360p", "seed": i,
              "provider": "runway", "judge": "off", "narration": "off", "continuity": "anchor"} for i in range(renders)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


class RssWatch:
    """The driver process's resident memory, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.samples.append((time.monotonic(), int(line.split()[1]) / 1024))
            except OSError:
                return
            time.sleep(0.2)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=2)
        mbs = [mb for _, mb in self.samples]
        if not mbs:
            return {}
        third = max(1, len(mbs) // 3)
        return {"peak_mb": round(max(mbs)), "first_third_peak_mb": round(max(mbs[:third])),
                "last_third_peak_mb": round(max(mbs[-third:]))}


def run_batch(cluster: LocalRayCluster, url: str, limit: int, specs: Path, work: Path, parallel: int,
              stop_when=None) -> dict:
    """One run of the job driver; `stop_when()` true: SIGTERM it (what `ray job stop` sends
    first, then SIGKILL after 3 s)."""
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "RUNWAYML_BASE_URL": url, "RUNWAYML_API_SECRET": DEFAULT_KEY,
           "LONGVID_MAX_CONCURRENT_RUNWAY": str(limit), "LONGVID_POLL_INTERVAL_S": "0.25", "LONGVID_TASK_TIMEOUT_S": "600"}
    command = [sys.executable, str(REPO / "jobs" / "batch_render.py"), str(specs), "--store", str(work / "runs"),
               "--out-dir", str(work / "out"), "--no-copy", "--parallel", str(parallel), "--planner", "offline", "--job-name", "bench"]
    started = time.monotonic()
    log = open(work / "driver.log", "a")
    driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    watch = RssWatch(driver.pid)
    if stop_when is not None:
        while driver.poll() is None and not stop_when():
            time.sleep(0.1)
        if driver.poll() is None:
            driver.send_signal(signal.SIGTERM)
            try:
                driver.wait(timeout=3)
            except subprocess.TimeoutExpired:
                driver.kill()
    code = driver.wait()
    log.close()
    wall = time.monotonic() - started
    summary = json.loads((work / "out" / "summary.json").read_text()) if (work / "out" / "summary.json").exists() else {}
    return {"exit": code, "wall_s": round(wall, 1), "counts": summary.get("counts", {}), **watch.stop(),
            "actions": dict(Counter(r.get("action") for r in summary.get("renders", [])))}


def paid_twice(fake) -> int:
    """Segments for which Runway made more than one task that was not cancelled."""
    made = Counter((t.prompt, t.seed, t.ratio, t.duration) for t in fake.tasks.values() if not t.cancelled)
    return sum(1 for n in made.values() if n > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--limits", default="2,8", help="provider concurrency limits (LONGVID_MAX_CONCURRENT_RUNWAY)")
    parser.add_argument("--nodes", default="1,2", help="worker node counts")
    parser.add_argument("--latency", type=float, default=3.0, help="seconds each fake Runway task takes")
    parser.add_argument("--parallel", type=int, default=8, help="renders the job has in flight (--parallel)")
    parser.add_argument("--no-resume-check", action="store_true")
    args = parser.parse_args()
    server, fake = start_fake_runway(scale=0.05, task_latency_s=args.latency)
    rows = []
    try:
        for nodes in [int(n) for n in args.nodes.split(",")]:
            for limit in [int(n) for n in args.limits.split(",")]:
                fake.reset()
                with LocalRayCluster() as cluster, tempfile.TemporaryDirectory(prefix="lv-batch-") as folder:
                    cluster.start_head(num_cpus=0)
                    for _ in range(nodes):
                        cluster.add_worker(num_cpus=2)
                    work = Path(folder)
                    result = run_batch(cluster, server.url, limit, specs_file(work, args.renders), work, args.parallel)
                done = result["counts"].get("done", 0)
                row = {"nodes": nodes, "limit": limit, **result, "renders_per_min": round(done / result["wall_s"] * 60, 1),
                       "runway_tasks": len(fake.tasks), "most_in_flight": fake.most_in_flight(), "paid_twice": paid_twice(fake)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                assert row["most_in_flight"] <= limit, f"the limit {limit} did not hold: {row['most_in_flight']} in flight"
        if not args.no_resume_check:
            fake.reset()
            nodes, limit = max(int(n) for n in args.nodes.split(",")), max(int(n) for n in args.limits.split(","))
            with LocalRayCluster() as cluster, tempfile.TemporaryDirectory(prefix="lv-batch-") as folder:
                cluster.start_head(num_cpus=0)
                for _ in range(nodes):
                    cluster.add_worker(num_cpus=2)
                work = Path(folder)
                specs = specs_file(work, args.renders)
                # Stopped once a third of the batch's segments were created (some done, some in flight).
                first = run_batch(cluster, server.url, limit, specs, work, args.parallel,
                                  stop_when=lambda: len(fake.tasks) >= max(limit, args.renders * 2 // 3))
                tasks_at_stop = len(fake.tasks)
                second = run_batch(cluster, server.url, limit, specs, work, args.parallel)
            check = {"resume": True, "stopped": first, "resumed": second, "tasks_at_stop": tasks_at_stop,
                     "runway_tasks": len(fake.tasks), "cancelled": sum(t.cancelled for t in fake.tasks.values()),
                     "paid_twice": paid_twice(fake)}
            print(json.dumps(check), flush=True)
            assert second["counts"].get("done") == args.renders and check["paid_twice"] == 0
    finally:
        server.stop()
    print("\nnodes limit renders/min wall_s most_in_flight driver_peak_MB (first/last third)")
    for r in rows:
        print(f"{r['nodes']:>5} {r['limit']:>5} {r['renders_per_min']:>11} {r['wall_s']:>6} {r['most_in_flight']:>14} "
              f"{r.get('peak_mb', '?'):>14} ({r.get('first_third_peak_mb', '?')}/{r.get('last_third_peak_mb', '?')})")


if __name__ == "__main__":
    main()
