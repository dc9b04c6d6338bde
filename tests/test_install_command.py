"""The README's render command, run as a user would: the installed `longvid` script in a
fresh process that starts its own Ray."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

from longvid.media import probe

pytestmark = pytest.mark.slow


def _longvid() -> str:
    beside = Path(sys.executable).parent / "longvid"
    return str(beside) if beside.exists() else shutil.which("longvid")


def test_readme_render_command(tmp_path):
    env = dict(os.environ, RAY_ADDRESS="")  # never join a cluster the tests may have started
    proc = subprocess.run(
        [_longvid(), "render", "a red fox explores a snowy forest at dawn", "-o", "fox.mp4",
         "--duration", "10", "--resolution", "360p", "--num-cpus", "2", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    info = probe(tmp_path / "fox.mp4")
    assert info.frames == 240 and info.fps == 24 and (info.width, info.height) == (640, 360)
    assert summary["output"] == "fox.mp4" and (tmp_path / "runs").is_dir()
    # narrated by default: an AAC voice track, a soft subtitle track, and the subtitles beside it
    with av.open(str(tmp_path / "fox.mp4")) as container:
        assert [s.codec_context.name for s in container.streams.audio] == ["aac"]
        assert [s.codec_context.name for s in container.streams.subtitles] == ["mov_text"]
    assert "-->" in (tmp_path / "fox.srt").read_text() and (tmp_path / "fox.vtt").read_text().startswith("WEBVTT")


def test_failure_exits_nonzero_with_one_line(tmp_path):
    proc = subprocess.run([_longvid(), "render", "   "], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["longvid: error: prompt: the prompt is empty; describe the video you want, e.g. 'a red fox in the snow'"]
