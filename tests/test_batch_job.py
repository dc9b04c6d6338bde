"""jobs/batch_render.py run in-process on the session's Ray cluster."""

import json

import pytest

from jobs.batch_render import main
from longvid.media import probe

pytestmark = pytest.mark.ray


def test_batch_renders_each_line_and_reports_failures(ray_session, tmp_path, capsys):
    specs = tmp_path / "specs.jsonl"
    specs.write_text(
        json.dumps({"prompt": "a kite over a beach", "duration_s": 5, "resolution": "360p"}) + "\n"
        + json.dumps({"prompt": "", "duration_s": 5}) + "\n"
    )
    assert main([str(specs), "--out-dir", str(tmp_path / "renders")]) == 1
    summary = json.loads((tmp_path / "renders" / "summary.json").read_text())
    assert [row["status"] for row in summary] == ["done", "failed"]
    assert "prompt is empty" in summary[1]["error"]
    assert probe(tmp_path / "renders" / "0001.mp4").frames == 120
