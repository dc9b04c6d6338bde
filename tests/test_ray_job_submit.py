"""`ray job submit -- python jobs/batch_render.py …` against a real Ray head started with
`ray start --head` on loopback, as on a cluster (one start for the whole module).

This cluster is separate from the in-process `ray_session` of other tests: its own ports
and its own --temp-dir, started and stopped through its own `ray start --block` process
(never `ray stop`, which would stop every Ray on the machine). Only subprocesses talk to
it, so an in-process Ray in this pytest process does not see it, nor it that one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from longvid.media import probe
from longvid.testing.ray_cluster import session_processes

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SPECS = [
    {"prompt": "a kite over a beach", "duration_s": 5, "resolution": "360p", "judge": "off", "seed": 1, "narration": "off"},
    {"prompt": "a lighthouse at night", "duration_s": 5, "resolution": "360p", "judge": "off", "seed": 2, "narration": "off"},
    {"prompt": "a red fox in the snow", "duration_s": 5, "resolution": "360p", "judge": "structural", "seed": 3, "narration": "off"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # never reach another cluster
    # The job's `python` is found on the raylet's PATH: make it this venv's interpreter.
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # a test cluster has no Serve traffic to drain at SIGTERM
    return env


@pytest.fixture(scope="module")
def loopback_cluster():
    # Short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="lv-ray-", dir="/tmp")
    # Every fixed port chosen here (the defaults, e.g. 52365 for the dashboard agent and
    # 10001 for Ray Client, may be held by another Ray on this machine).
    port, dashboard_port, agent_port, client_port = free_port(), free_port(), free_port(), free_port()
    log = open(Path(temp_dir) / "ray-start.log", "w")
    head = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port), "--include-dashboard=true",
         "--dashboard-agent-listen-port", str(agent_port), "--ray-client-server-port", str(client_port),
         "--num-cpus", "2", "--object-store-memory", str(256 * 1024**2), "--temp-dir", temp_dir, "--disable-usage-stats"],
        env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start exited with {head.returncode}: {(Path(temp_dir) / 'ray-start.log').read_text()[-3000:]}")
            try:  # jobs are accepted once both the dashboard and the node's job agent answer
                httpx.get(f"{address}/api/version", timeout=2).raise_for_status()
                httpx.get(f"http://127.0.0.1:{agent_port}/api/job_agent/jobs/none/logs", timeout=2)
                break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the Ray dashboard did not come up within 90 s")
            time.sleep(0.5)
        yield address
    finally:
        try:
            stop_cluster(head)
        finally:
            log.close()
            for _ in range(3):  # a process that was still dying may have written one more file
                shutil.rmtree(temp_dir, ignore_errors=True)
                if not Path(temp_dir).exists():
                    break
                time.sleep(1)


def stop_cluster(head: subprocess.Popen) -> None:
    head.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes on SIGTERM
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        head.kill()
    for pid in session_processes(head.pid):  # anything of ours that outlived it
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def submit(address: str, working_dir: Path, submission_id: str, *job_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(working_dir),
         "--submission-id", submission_id, "--", "python", "jobs/batch_render.py", *job_args],
        env=cluster_env(), capture_output=True, text=True, timeout=300,
    )


def job_status(address: str, submission_id: str) -> str:
    return httpx.get(f"{address}/api/jobs/{submission_id}", timeout=10).json()["status"]


def working_dir_copy(root: Path) -> Path:
    """What the job needs (the package and the job), as `--working-dir .` from a checkout
    would upload it minus tests, benchmarks and virtual environments."""
    folder = root / "wd"
    for package in ("longvid", "jobs"):
        shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "specs.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SPECS))
    return folder


def test_batch_job_through_ray_job_submit_renders_then_resumes(loopback_cluster, tmp_path):
    working_dir = working_dir_copy(tmp_path)
    store, out = tmp_path / "runs", tmp_path / "renders"
    job_args = ("specs.jsonl", "--store", str(store), "--out-dir", str(out), "--parallel", "3", "--planner", "offline")

    first = submit(loopback_cluster, working_dir, "longvid-batch-1", *job_args)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert job_status(loopback_cluster, "longvid-batch-1") == "SUCCEEDED"
    assert "segment 3: accepted" in first.stdout and "3 done, 0 not done" in first.stdout  # progress lines, then the table

    summary = json.loads((out / "summary.json").read_text())
    rows = summary["renders"]
    assert summary["state"] == "finished" and summary["counts"]["done"] == 3
    assert [(r["line"], r["status"], r["action"]) for r in rows] == [(n, "done", "rendered") for n in (1, 2, 3)]
    for row in rows:
        assert row["generated_segments"] == row["segments"] == 4 and row["video_s"] == 5.0
        info = probe(Path(row["output"]))
        assert (info.frames, info.width, info.height, info.codec) == (120, 640, 360, "h264")
        manifest = json.loads((store / row["run_id"] / "manifest.json").read_text())
        assert manifest["status"] == "done"
        # Every segment ran as a Ray task on the cluster, which recorded what it granted.
        assert all(seg["resources"] and seg["resources"].get("CPU", 0) > 0 for seg in manifest["segments"])

    # Line 3's render is made to look cut off before its merge (the job died); 1 and 2 finished.
    crashed = store / rows[2]["run_id"]
    manifest = json.loads((crashed / "manifest.json").read_text())
    (crashed / "manifest.json").write_text(json.dumps({**manifest, "status": "rendering"}))
    (crashed / "final.mp4").unlink()
    segment_files = {p: p.stat().st_mtime_ns for p in store.glob("*/segments/*.mp4")}
    assert len(segment_files) == 12

    second = submit(loopback_cluster, working_dir, "longvid-batch-2", *job_args)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    again = json.loads((out / "summary.json").read_text())["renders"]
    assert [r["action"] for r in again] == ["already_done", "already_done", "resumed"]
    assert [r["run_id"] for r in again] == [r["run_id"] for r in rows]  # the same runs, found again
    assert all(r["status"] == "done" and r["generated_segments"] == 0 for r in again)
    assert again[2]["reused_segments"] == 4
    assert {p: p.stat().st_mtime_ns for p in store.glob("*/segments/*.mp4")} == segment_files  # nothing regenerated
    assert json.loads((crashed / "manifest.json").read_text())["status"] == "done"
    assert probe(crashed / "final.mp4").frames == 120
