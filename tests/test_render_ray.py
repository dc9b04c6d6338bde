"""End to end on Ray: the CLI renders real video, decoded and checked frame by frame."""

import json
from pathlib import Path

import pytest

from conftest import decode_rgb
from longvid.cli import main
from longvid.manifest import RunManifest
from longvid.media import probe
from longvid.runtime.resources import MB

pytestmark = pytest.mark.ray


def _render(argv, capsys):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_render_30s_through_the_cli(ray_session, tmp_path, capsys):
    out = tmp_path / "fox.mp4"
    result = _render(
        ["render", "a red fox explores a snowy forest at dawn", "-d", "30", "--resolution", "360p",
         "-o", str(out), "--runs-dir", str(tmp_path / "runs")],
        capsys,
    )
    info = probe(out)
    assert (info.frames, info.fps, info.width, info.height, info.codec, info.pix_fmt) == (720, 24.0, 640, 360, "h264", "yuv420p")
    assert result["frames"] == 720 and result["segments"] == 4 and result["cost_usd"] == 0

    run = Path(result["run_dir"])
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    assert manifest.status == "done" and manifest.output == str(out)
    assert [s.state.value for s in manifest.segments] == ["accepted"] * 4
    assert (run / "plan.json").is_file() and (run / "final.mp4").is_file()
    assert len(list((run / "segments").glob("*.mp4"))) == 4
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.partial*"))
    for record in manifest.segments:  # each task ran with the estimator's request
        expected_mb = 512 + 100 * (record.clip.frames / 24)
        assert record.resources["CPU"] == 1.0
        assert abs(record.resources["memory"] - expected_mb * MB) < 2 * MB


def test_render_60s_anchor_mode(ray_session, tmp_path, capsys):
    out = tmp_path / "long.mp4"
    result = _render(
        ["render", "a lighthouse on a cliff. waves at night. a ship arrives at dawn.", "-d", "60",
         "--resolution", "360p", "--continuity", "anchor", "-o", str(out), "--runs-dir", str(tmp_path / "runs")],
        capsys,
    )
    info = probe(out)
    assert (info.frames, info.width, info.height) == (1440, 640, 360)
    assert result["segments"] == 7
    assert result["merge"]["copied_frames"] > 1200  # seams only were re-encoded


def test_chain_mode_starts_each_segment_from_the_previous_seam(ray_session, tmp_path, capsys):
    out = tmp_path / "chain.mp4"
    result = _render(
        ["render", "a paper boat drifts down a river", "-d", "8", "--resolution", "360p", "--continuity", "chain",
         "--aspect", "1:1", "-o", str(out), "--runs-dir", str(tmp_path / "runs")],
        capsys,
    )
    frames = decode_rgb(out)
    assert len(frames) == 8 * 24 and frames[0].shape == (360, 360, 3)
    assert result["segments"] == 4
    # Each segment opens on the frame where the previous one hands over (its seam frame),
    # even across a scene change, where an unconditioned render would start elsewhere.
    plan = json.loads((Path(result["run_dir"]) / "plan.json").read_text())["segments"]
    assert any(a["scene_index"] != b["scene_index"] for a, b in zip(plan, plan[1:]))
    segments = sorted((Path(result["run_dir"]) / "segments").glob("seg_????.mp4"))
    for job, previous, following in zip(plan, segments, segments[1:]):
        seam = decode_rgb(previous)[job["frames"]].astype(float)
        start = decode_rgb(following)[0].astype(float)
        assert abs(seam - start).mean() < 6.0  # both sides went through H.264 once more
    manifest = json.loads((Path(result["run_dir"]) / "manifest.json").read_text())
    assert all(s["state"] == "accepted" for s in manifest["segments"])
