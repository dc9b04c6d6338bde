"""Batch lines that edit an existing run: parsing (pure), and one job in-process on the
session's Ray cluster that renders a run, edits it, and edits it only once when re-submitted."""

import json

from jobs.batch_render import main
from jobs.batch_specs import parse_spec_lines, stable_run_id
from longvid.runtime.versions import read_history
from longvid.runtime import LocalRunStore
from longvid.spec import RenderSpec

KITE = {"prompt": "a kite over a beach", "duration_s": 5, "resolution": "360p", "judge": "off", "narration": "off"}
EDIT = {"run_id": "kite-1", "edits": [{"kind": "regenerate", "segment": 1, "seed": 9}]}


def test_edit_lines_parse_with_a_stable_key_and_clear_errors(tmp_path):
    lines = parse_spec_lines("\n".join(json.dumps(x) for x in [
        EDIT, {**EDIT, "edits": [{"seed": 9, "segment": 1, "kind": "regenerate"}]}, {**EDIT, "run_id": "kite-2"},
        {**EDIT, "prompt": "x"}, {"run_id": "../up", "edits": EDIT["edits"]}, {"run_id": "kite-1", "edits": []},
        {"run_id": "kite-1", "edits": [{"kind": "replace", "segment": 0, "clip": str(tmp_path / "none.mp4")}]},
    ]), "job")
    assert lines[0].edit is not None and lines[0].run_id == "kite-1" and lines[0].error is None
    assert lines[0].edit_key == lines[1].edit_key != lines[2].edit_key  # the content decides, not its formatting
    assert parse_spec_lines(json.dumps(EDIT), "other-job")[0].edit_key != lines[0].edit_key
    assert lines[0].work_key != "kite-1"  # never merged with a render line of the same run
    assert "unknown field prompt" in lines[3].error
    assert "invalid run id" in lines[4].error
    assert "edits" in lines[5].error and "cannot read a replacement clip" in lines[6].error


def test_a_batch_renders_then_edits_and_a_resubmission_edits_nothing(ray_session, tmp_path):
    run_id = stable_run_id("specs", RenderSpec.model_validate(KITE))
    specs = tmp_path / "specs.jsonl"
    specs.write_text("\n".join(json.dumps(x) for x in [{**EDIT, "run_id": run_id}, KITE]) + "\n")
    store, out = tmp_path / "runs", tmp_path / "renders"
    argv = [str(specs), "--store", str(store), "--out-dir", str(out), "--planner", "offline"]

    assert main(argv) == 0
    rows = {r["line"]: r for r in json.loads((out / "summary.json").read_text())["renders"]}
    assert rows[2]["action"] == "rendered" and rows[1]["action"] == "edited"  # the render first, then its edit
    assert rows[1]["generated_segments"] == 1 and rows[1]["reused_segments"] == 3
    assert rows[1]["final"].endswith("versions/v2/final.mp4")
    history = read_history(LocalRunStore(store).open(run_id))
    assert [v.version for v in history.versions] == [1, 2] and history.versions[1].regenerated == [1]

    assert main(argv) == 0
    again = {r["line"]: r for r in json.loads((out / "summary.json").read_text())["renders"]}
    assert again[1]["action"] == again[2]["action"] == "already_done"
    assert [v.version for v in read_history(LocalRunStore(store).open(run_id)).versions] == [1, 2]
