"""Issue 15, new-user papercuts: a run named by the folder path `longvid render` printed, Ray's
token-authentication notice, and the judge's fallback notice naming where it looked."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from longvid.cli import main
from longvid.consistency import JudgeConfig
from longvid.consistency.scorers import StructuralScorer, make_scorer
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.tasks import RAY_AUTH_LOGGER, is_token_auth_enabled_notice
from longvid.spec import RenderSpec

REPO = Path(__file__).resolve().parents[1]


# -- 10. resume / status / review take the run folder's path ------------------------------------------

@pytest.fixture
def rendered(tmp_path, monkeypatch):
    """A finished preview run under tmp_path/runs; the working directory is tmp_path."""
    monkeypatch.chdir(tmp_path)
    spec = RenderSpec(prompt="a kite over a beach", duration_s=5, resolution="360p", judge="off")
    result = RenderPipeline(LocalRunStore(tmp_path / "runs"), InlineSegmentRunner()).render(spec)
    return result.run_id


def test_status_resume_and_review_accept_the_run_folder_path(rendered, tmp_path, capsys):
    for ref in (f"runs/{rendered}", f"runs/{rendered}/", str(tmp_path / "runs" / rendered), rendered):
        assert main(["status", ref, "--json"]) == 0, ref
        assert json.loads(capsys.readouterr().out)["run_id"] == rendered
    # The path names its store, whatever --store says.
    assert main(["status", f"runs/{rendered}", "--store", str(tmp_path / "elsewhere"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
    assert main(["review", str(tmp_path / "runs" / rendered)]) == 0
    assert str(tmp_path / "runs" / rendered / "report.html") in capsys.readouterr().out
    assert main(["resume", f"./runs/{rendered}", "--json"]) == 0  # finished: nothing to redo, no Ray started
    assert json.loads(capsys.readouterr().out)["run_id"] == rendered


@pytest.mark.parametrize("ref, why", [
    ("runs/", "neither a run id nor a run folder"), ("nowhere/at-all", "neither a run id nor a run folder"),
    ("s3://bucket/runs/x", "neither a run id nor a run folder"), ("a b", "neither a run id nor a run folder"),
    ("runs", "no run 'runs'"),  # a valid id: looked up in the store, as before
])
def test_a_path_that_is_not_a_run_folder_is_one_line_error(rendered, ref, why, capsys):
    assert main(["status", ref]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("longvid: error: ") and why in err[0]


# -- 11. no Ray token-authentication notice; the judge's notice says where it looked -----------------

def test_only_rays_token_auth_enabled_notice_is_recognised():
    def record(name, message):
        return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)

    assert is_token_auth_enabled_notice(record(RAY_AUTH_LOGGER, "Token authentication is enabled for this Ray cluster. Set ..."))
    assert not is_token_auth_enabled_notice(record(RAY_AUTH_LOGGER, "Token authentication is disabled for this Ray cluster. ..."))
    assert not is_token_auth_enabled_notice(record("longvid", "Token authentication is enabled for this Ray cluster."))


@pytest.mark.ray
def test_an_in_process_ray_start_prints_no_token_auth_notice(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    script = "from longvid.runtime import ensure_ray; import ray; ensure_ray(num_cpus=1); ray.shutdown()"
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Token authentication is enabled" not in proc.stderr + proc.stdout


def test_the_judges_fallback_notice_lists_where_it_looked(tmp_path):
    scorer = make_scorer(JudgeConfig(backend="auto", cache_dir=tmp_path))
    assert isinstance(scorer, StructuralScorer)
    assert "fell back" in scorer.notes and "looked in: " in scorer.notes and str(tmp_path) in scorer.notes
    assert not scorer.notes.rstrip().endswith(":")
