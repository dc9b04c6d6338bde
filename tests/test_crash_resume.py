"""Kill the render process tree with SIGKILL mid-generation and mid-merge, resume, and
compare with an uninterrupted render: the same frames, and nothing accepted redone."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import decode_rgb
from longvid.manifest import load_manifest
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.spec import RenderSpec, SegmentState

pytestmark = pytest.mark.slow

PROMPT = "a paper boat drifts down a rainy street"


def _cli(*args, cwd):
    env = dict(os.environ, RAY_ADDRESS="", RAY_AUTH_MODE="disabled")
    command = [str(Path(sys.executable).parent / "longvid"), *args]
    # Its own session, so the kill takes the whole tree (driver, raylet, workers) down at once.
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_when(proc, manifest_path: Path, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"render ended before the kill point: {proc.stderr.read()[-1500:]}")
        try:
            manifest = load_manifest(manifest_path.read_text())
        except Exception:  # not written yet
            manifest = None
        if manifest is not None and condition(manifest):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return manifest
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("kill point never reached")


@pytest.mark.parametrize(
    "point, duration, resolution, extra",
    [
        ("generation", 8, "360p", []),
        ("merge", 8, "720p", ["--no-stream-copy"]),  # a full re-encode keeps merging long enough to hit
    ],
)
def test_sigkill_then_resume_gives_the_same_video(tmp_path, point, duration, resolution, extra):
    spec = RenderSpec(prompt=PROMPT, duration_s=duration, resolution=resolution)
    RenderPipeline(LocalRunStore(tmp_path / "reference"), InlineSegmentRunner(), stream_copy=not extra).render(spec, output=tmp_path / "reference.mp4")

    store = tmp_path / "store"
    proc = _cli("render", PROMPT, "-d", str(duration), "--resolution", resolution, "--store", str(store),
                "--run-id", "victim", "--num-cpus", "2", "-o", str(tmp_path / "out.mp4"), *extra, cwd=tmp_path)
    if point == "generation":
        def condition(m):
            accepted = sum(1 for r in m.segments if r.state is SegmentState.ACCEPTED)
            return 1 <= accepted < len(m.segments)
    else:
        def condition(m):
            return m.status == "merging"
    killed = _kill_when(proc, store / "victim" / "manifest.json", condition)
    accepted_at_kill = {r.index for r in killed.segments if r.state is SegmentState.ACCEPTED}
    assert not (tmp_path / "out.mp4").exists()  # nothing half-written where the video goes
    assert not list((store / "victim").glob("final.mp4"))

    resume = _cli("resume", "victim", "--store", str(store), "--num-cpus", "2", "--json", *extra, cwd=tmp_path)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["output"] == str(tmp_path / "out.mp4")
    assert summary["generated_segments"] <= summary["segments"] - len(accepted_at_kill)
    assert summary["reused_segments"] >= len(accepted_at_kill)
    manifest = load_manifest((store / "victim" / "manifest.json").read_text())
    for index in accepted_at_kill:
        assert manifest.segments[index].attempts == 1  # accepted work was never redone

    reference, resumed = decode_rgb(tmp_path / "reference.mp4"), decode_rgb(tmp_path / "out.mp4")
    assert len(resumed) == len(reference) == duration * 24
    assert all(np.array_equal(a, b) for a, b in zip(reference, resumed))


def test_sigterm_stops_gracefully_and_resumes(tmp_path):
    store = tmp_path / "store"
    proc = _cli("render", PROMPT, "-d", "8", "--resolution", "360p", "--store", str(store), "--run-id", "stopped",
                "--num-cpus", "2", "-o", str(tmp_path / "out.mp4"), cwd=tmp_path)
    manifest_path = store / "stopped" / "manifest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            manifest = load_manifest(manifest_path.read_text())
            if any(r.state is SegmentState.ACCEPTED for r in manifest.segments):
                break
        except Exception:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # the driver only, as a scheduler or `kill` would
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-1500:]
    assert "longvid resume stopped" in err
    manifest = load_manifest(manifest_path.read_text())
    if manifest.status != "done":  # it may have finished the last segment already
        assert manifest.status == "cancelled"
    status = subprocess.run([str(Path(sys.executable).parent / "longvid"), "status", "stopped", "--store", str(store), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0
    rows = json.loads(status.stdout)["segments"]
    assert {row["resume"] for row in rows} <= {"keep", "generate", "accept"}
    resume = _cli("resume", "stopped", "--store", str(store), "--num-cpus", "2", "--json", cwd=tmp_path)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err[-1500:]
    assert len(decode_rgb(tmp_path / "out.mp4")) == 8 * 24


def test_sigkill_mid_upload_to_s3_then_resume(tmp_path, s3_server, monkeypatch):
    from longvid.runtime.store import S3RunStore

    monkeypatch.setenv("LONGVID_S3_PART_MB", "1")  # the final video goes up as a multipart upload
    url = "s3://renders/crash-upload"
    store = S3RunStore(url)
    spec = RenderSpec(prompt=PROMPT, duration_s=16, resolution="720p")
    RenderPipeline(LocalRunStore(tmp_path / "reference"), InlineSegmentRunner(), stream_copy=False).render(spec, output=tmp_path / "reference.mp4")

    merged = store.scratch_root / "up" / "final.mp4"  # appears (renamed whole) when the merge is done
    shutil.rmtree(merged.parent, ignore_errors=True)  # from an earlier session's run
    proc = _cli("render", PROMPT, "-d", "16", "--resolution", "720p", "--store", url, "--run-id", "up",
                "--num-cpus", "2", "--no-stream-copy", cwd=tmp_path)
    deadline = time.monotonic() + 180
    while not merged.exists():
        assert proc.poll() is None, proc.stderr.read()[-1500:]
        assert time.monotonic() < deadline, "merge never finished"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = load_manifest(store.open("up").read_bytes("manifest.json").decode())
    assert manifest.status == "merging"  # died before the upload completed and was recorded
    if store.open("up").exists("final.mp4"):  # the upload may just have completed: then it is whole
        assert store.open("up").read_bytes("final.mp4") == merged.read_bytes()

    resume = _cli("resume", "up", "--store", url, "--num-cpus", "2", "--no-stream-copy", "-o", str(tmp_path / "out.mp4"), "--json", cwd=tmp_path)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err[-2000:]
    assert json.loads(out)["generated_segments"] == 0
    reference, resumed = decode_rgb(tmp_path / "reference.mp4"), decode_rgb(tmp_path / "out.mp4")
    assert len(resumed) == len(reference) == 16 * 24
    assert all(np.array_equal(a, b) for a, b in zip(reference, resumed))
    assert store.open("up").read_bytes("final.mp4") == (tmp_path / "out.mp4").read_bytes()
