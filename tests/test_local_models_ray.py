"""The local provider end to end on Ray: `longvid render --provider local --model-dir <tiny>`
makes the requested length and fps, the model is loaded once by its resident worker (not per
segment), and each chained segment's pipeline got the previous segment's frames up to the seam."""

import json

import numpy as np
import ray

from longvid.cli import main
from longvid.media.frames import decode_frames
from longvid.media import probe
from longvid.providers.local.loader import load_spec
from longvid.providers.local.pool import worker_name
from longvid.settings import LocalModelSettings


def test_render_with_the_tiny_model_chains_segments_on_one_resident_worker(ray_session, tiny_ltx_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LONGVID_LOCAL_STEPS", "2")
    monkeypatch.setenv("LONGVID_LOCAL_HEIGHT", "32")  # the model makes 64x32; clips are scaled to 360p
    store = tmp_path / "runs"
    code = main(["render", "a red fox explores a snowy forest", "--provider", "local", "--model-dir", str(tiny_ltx_dir),
                 "-d", "5", "--fps", "12", "--resolution", "360p", "--continuity", "chain", "--judge", "off", "--narration", "off",
                 "--store", str(store), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    info = probe(result["output"])
    assert (info.frames, info.fps, info.width, info.height) == (60, 12, 640, 360)
    assert result["providers_used"] == {"local": result["segments"]} and result["cost_usd"] > 0  # GPU time is booked

    settings = LocalModelSettings(model_dir=tiny_ltx_dir, steps=2, generate_height=32)
    worker = ray.get_actor(worker_name(load_spec(settings), settings, 0))
    stats = ray.get(worker.stats.remote())
    assert stats["loads"] == 1 and stats["segments"] >= result["segments"] >= 4

    run = store / result["run_id"]
    plan = json.loads((run / "plan.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    jobs = {j["index"]: j for j in plan["segments"]}
    for index in range(1, result["segments"]):
        seam = jobs[index - 1]["frames"]
        previous = run / manifest["segments"][index - 1]["clip"]["path"]
        expected = decode_frames(previous, range(seam - 8, seam + 1))
        seen = ray.get(worker.conditioning_seen.remote(index))
        assert len(seen) == 9
        assert all(np.array_equal(s, expected[i]) for s, i in zip(seen, range(seam - 8, seam + 1)))
