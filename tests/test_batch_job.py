"""jobs/batch_render.py: the spec file, stable run ids, the summary, and whole jobs run
in-process on the session's Ray cluster (ray job submit itself: test_ray_job_submit.py)."""

import json
import threading

import pytest

from jobs import batch_render
from jobs.batch_render import main
from jobs.batch_specs import job_slug, parse_spec_lines, stable_run_id
from jobs.batch_summary import RenderRow, exit_code, summary_document
from jobs.locations import read_text
from longvid.errors import InputError
from longvid.media import probe
from longvid.runtime import LocalRunStore
from longvid.spec import RenderSpec

# Silent (narration off): these check the job's bookkeeping on a known four-segment plan; a
# narrated 5 s plan cuts one segment per scene instead.
KITE = {"prompt": "a kite over a beach", "duration_s": 5, "resolution": "360p", "judge": "off", "narration": "off"}
LIGHTHOUSE = {"prompt": "a lighthouse at night", "duration_s": 5, "resolution": "360p", "judge": "structural", "narration": "off"}


def jsonl(*lines) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"


# -- pure: spec lines and run ids ------------------------------------------------------------

def test_run_id_depends_on_job_and_content_not_on_formatting():
    spec = RenderSpec.model_validate(KITE)
    same = RenderSpec.model_validate_json('{ "resolution": "360p", "judge": "off", "duration_s": 5.0, "prompt": "a kite over a beach", "narration": "off" }')
    assert stable_run_id("may", spec) == stable_run_id("may", same)
    assert stable_run_id("may", spec) != stable_run_id("june", spec)
    assert stable_run_id("may", spec) != stable_run_id("may", spec.model_copy(update={"seed": 1}))
    assert stable_run_id("May campaign/v2", spec).startswith("may-campaign-v2-")
    assert job_slug("///") == "batch"


def test_run_id_follows_the_contents_of_named_files(tmp_path):
    board = tmp_path / "board.yaml"
    board.write_text("- description: a lighthouse on a cliff at night\n")
    spec = RenderSpec(prompt="a lighthouse", duration_s=5, storyboard_file=board)
    before = stable_run_id("job", spec)
    board.write_text("- description: a ship arrives at dawn\n")
    assert stable_run_id("job", spec) != before  # an edited storyboard is a new render, not a stale resume


def test_each_bad_line_gets_its_own_error():
    lines = parse_spec_lines(jsonl(KITE, "", {"prompt": "", "duration_s": 5}, {"prompt": "x", "colour": "red"},
                                   "not json", "[1, 2]", {"prompt": "x", "duration_s": 2}), "job")
    assert [item.line for item in lines] == [1, 3, 4, 5, 6, 7]  # blank lines skipped, numbers kept
    assert lines[0].error is None and lines[0].run_id.startswith("job-")
    errors = {item.line: item.error for item in lines[1:]}
    assert "prompt is empty" in errors[3]
    assert "unknown field colour" in errors[4] and "duration_s" in errors[4]
    assert "not valid JSON" in errors[5] and '"prompt"' in errors[5]
    assert "expected a JSON object, got list" in errors[6]
    assert "duration must be between 5 and 600" in errors[7]


def test_unreadable_spec_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_text(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_text(tmp_path / "latin1.jsonl")


def test_exit_code_and_summary_counts():
    done = RenderRow(line=1, status="done", run_id="a", cost_usd=1.5)
    assert exit_code([done], stopped=False) == 0
    assert exit_code([done, RenderRow(line=2, status="invalid", error="x")], stopped=False) == 1
    assert exit_code([done, RenderRow(line=2, status="failed", error="x")], stopped=False) == 1
    assert exit_code([done], stopped=True) == 130
    rows = [done, done.duplicate(3, of=1), RenderRow(line=2, status="failed", error="boom")]
    document = summary_document(job="j", specs="s.jsonl", store="runs", parallel=2, started_at="t", wall_s=1.0, rows=rows, finished=True)
    assert [r["line"] for r in document["renders"]] == [1, 2, 3]
    assert document["counts"] == {"done": 2, "failed": 1, "invalid": 0, "cancelled": 0}
    assert document["cost_usd"] == 1.5  # a duplicate line is not paid twice


def test_relative_paths_are_flagged_only_inside_a_ray_job():
    args = batch_render.build_parser().parse_args(["specs.jsonl", "--store", "runs", "--summary", "s3://b/s.json"])
    assert batch_render.relative_path_warnings(args, in_ray_job=False) == []
    warnings = batch_render.relative_path_warnings(args, in_ray_job=True)
    assert [w.split()[0] for w in warnings] == ["--store", "--out-dir"]  # s3:// is fine


def test_missing_or_empty_spec_file_exits_2_before_ray(tmp_path):
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert main([str(tmp_path / "empty.jsonl")]) == 2


def test_zero_cpus_exits_2_before_ray(tmp_path, capsys):
    (tmp_path / "specs.jsonl").write_text('{"prompt": "a fox"}\n')
    assert main([str(tmp_path / "specs.jsonl"), "--num-cpus", "0"]) == 2
    assert "--num-cpus must be at least 1" in capsys.readouterr().out


# -- whole jobs on Ray ------------------------------------------------------------------------

@pytest.mark.ray
def test_batch_renders_lines_in_parallel_and_resumes(ray_session, tmp_path):
    specs = tmp_path / "specs.jsonl"
    specs.write_text(jsonl(KITE, LIGHTHOUSE, {"prompt": "", "duration_s": 5}, KITE, {**KITE, "provider": "nope"}))
    store, out = tmp_path / "runs", tmp_path / "renders"
    argv = [str(specs), "--store", str(store), "--out-dir", str(out), "--parallel", "2", "--planner", "offline"]

    assert main(argv) == 1  # two lines are bad; the others are still rendered
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["line"]: r for r in summary["renders"]}
    assert summary["state"] == "finished" and summary["counts"] == {"done": 3, "failed": 0, "invalid": 2, "cancelled": 0}
    assert [rows[n]["status"] for n in (1, 2, 3, 4, 5)] == ["done", "done", "invalid", "done", "invalid"]
    assert "prompt is empty" in rows[3]["error"] and "unknown provider 'nope'" in rows[5]["error"]
    assert rows[4]["same_as_line"] == 1 and rows[4]["run_id"] == rows[1]["run_id"]  # rendered once
    for n in (1, 2):
        assert rows[n]["action"] == "rendered" and rows[n]["generated_segments"] == rows[n]["segments"] == 4
        assert rows[n]["video_s"] == 5.0 and rows[n]["cost_usd"] == 0.0 and rows[n]["wall_s"] > 0
        info = probe(out / f"{rows[n]['run_id']}.mp4")
        assert (info.frames, info.width, info.height) == (120, 640, 360)
    assert LocalRunStore(store).list_runs() == sorted({rows[1]["run_id"], rows[2]["run_id"]})
    from ray._private import state  # no judge actor outlives its render

    judges = ("JudgeActor", "FramePackCompressor")
    assert not [a for a in state.actors().values() if a["State"] == "ALIVE" and a["ActorClassName"] in judges]

    # Line 2's render "crashed" before merging: its manifest says rendering and there is no
    # final video. Line 1 finished. The same job again resumes 2 and leaves 1 alone.
    run2 = store / rows[2]["run_id"]
    manifest = json.loads((run2 / "manifest.json").read_text())
    (run2 / "manifest.json").write_text(json.dumps({**manifest, "status": "rendering"}))
    (run2 / "final.mp4").unlink()
    first_video = (store / rows[1]["run_id"] / "final.mp4").stat().st_mtime_ns

    assert main(argv) == 1
    again = {r["line"]: r for r in json.loads((out / "summary.json").read_text())["renders"]}
    assert again[1]["action"] == "already_done" and again[1]["generated_segments"] == 0
    assert (store / rows[1]["run_id"] / "final.mp4").stat().st_mtime_ns == first_video
    assert again[2]["action"] == "resumed" and again[2]["status"] == "done"
    assert again[2]["generated_segments"] == 0 and again[2]["reused_segments"] == 4  # no segment made twice
    assert probe(run2 / "final.mp4").frames == 120


@pytest.mark.ray
def test_stopped_job_starts_nothing_and_exits_130(ray_session, tmp_path):
    specs = tmp_path / "specs.jsonl"
    specs.write_text(jsonl(KITE))
    stop = threading.Event()
    stop.set()
    assert main([str(specs), "--store", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")], stop=stop) == 130
    row = json.loads((tmp_path / "out" / "summary.json").read_text())["renders"][0]
    assert row["status"] == "cancelled" and "submit it again" in row["error"]
    assert LocalRunStore(tmp_path / "runs").list_runs() == []


@pytest.mark.ray
def test_specs_store_and_summary_on_s3(ray_session, s3_server, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.put_object(Bucket="renders", Key="jobs/s3job.jsonl", Body=jsonl({**KITE, "seed": 7}).encode())
    argv = ["s3://renders/jobs/s3job.jsonl", "--store", "s3://renders/runs", "--summary", "s3://renders/jobs/s3job-summary.json",
            "--out-dir", str(tmp_path / "out"), "--planner", "offline"]
    assert main(argv) == 0
    summary = json.loads(s3.get_object(Bucket="renders", Key="jobs/s3job-summary.json")["Body"].read())
    row = summary["renders"][0]
    assert row["status"] == "done" and row["run_id"].startswith("s3job-")
    assert row["final"] == f"s3://renders/runs/{row['run_id']}/final.mp4"
    s3.head_object(Bucket="renders", Key=f"runs/{row['run_id']}/final.mp4")
    assert probe(tmp_path / "out" / f"{row['run_id']}.mp4").frames == 120


def test_out_dir_on_s3_is_refused_before_ray(tmp_path, capsys):
    specs = tmp_path / "specs.jsonl"
    specs.write_text(jsonl(KITE))
    assert main([str(specs), "--out-dir", "s3://bucket/renders"]) == 2
    assert "--no-copy" in capsys.readouterr().out


def test_a_summary_that_cannot_be_written_loses_no_render(ray_session, tmp_path, monkeypatch, capsys):
    """The summary's store fails once mid-job: the job still finishes, warns, and the
    final write carries every row."""
    import jobs.batch_render as batch

    specs = tmp_path / "specs.jsonl"
    specs.write_text(jsonl(KITE))
    calls = []
    real_write = batch.write_text

    def flaky(where, text):
        calls.append(where)
        if len(calls) == 1:
            raise OSError("the store is unreachable")
        real_write(where, text)

    monkeypatch.setattr(batch, "write_text", flaky)
    assert main([str(specs), "--store", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]) == 0
    assert "could not write the summary" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["status"] for r in summary["renders"]] == ["done"]


def test_a_run_folder_left_without_a_manifest_is_started_again(tmp_path):
    """A driver killed between creating the folder and writing the manifest."""
    store = LocalRunStore(tmp_path)
    (tmp_path / "r" / "segments").mkdir(parents=True)
    assert not store.has_run("r")
    assert store.create("r").run_id == "r"


@pytest.mark.slow
def test_sigterm_as_ray_job_stop_sends_it_stops_gracefully(tmp_path):
    """The job as `ray job stop` meets it: a separate process that started Ray itself gets
    SIGTERM mid-render, cancels, writes its summary and exits 130 (Ray's own SIGTERM
    handler, installed by ray.init, must not pre-empt the job's)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    specs = tmp_path / "specs.jsonl"
    specs.write_text(jsonl(*({**KITE, "prompt": f"a kite over a beach {i}", "duration_s": 90} for i in range(2))))
    root = Path(__file__).resolve().parent.parent
    job = subprocess.Popen(
        [sys.executable, "jobs/batch_render.py", str(specs), "--store", str(tmp_path / "runs"), "--out-dir",
         str(tmp_path / "out"), "--num-cpus", "2"],
        cwd=root, env=dict(os.environ, RAY_ADDRESS="", RAY_AUTH_MODE="disabled"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in job.stdout:
            if "accepted" in line:  # mid-render
                break
        job.send_signal(signal.SIGTERM)
        rest, _ = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode == 130, rest[-1500:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["renders"] and all(r["status"] == "cancelled" for r in summary["renders"])
