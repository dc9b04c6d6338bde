"""Editing a finished render end to end, Ray-free (the inline runner counts provider tasks):
only the edited span is made again, every version stays, locks hold against the judge, and
an interrupted edit finishes under the same version number without paying twice."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import decode_rgb
from longvid.editing import parse_edit_request
from longvid.errors import InputError
from longvid.manifest import RunPlan
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.edit_run import _write_prepared, apply_prepared, prepare_edit, run_edit, set_locks
from longvid.runtime.protocols import JudgeVerdict
from longvid.runtime.versions import read_history
from longvid.spec import RenderSpec

STORYBOARD = """\
- description: a lighthouse on a cliff at night
  lighting: night
- description: a ship arrives at dawn
  lighting: dawn
- description: gulls over the harbour
- description: the ship leaves at dusk
  lighting: dusk
"""


class RejectEverything:
    """A judge that fails every attempt it sees (twice, then the best is kept)."""

    max_attempts, backend, notes = 2, "reject-all", ""

    def __init__(self):
        self.judged = []

    def judge(self, job, segment, previous):
        self.judged.append(job.index)
        return JudgeVerdict(passed=False, scores={}, reason="rejected by the test judge", quality=0.0)

    def remember_accepted(self, job, segment):
        pass

    def save_state(self, run):
        pass

    def close(self):
        pass


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One 4-scene chained preview render (one segment per scene), copied for each test."""
    root = tmp_path_factory.mktemp("edit")
    (root / "board.yaml").write_text(STORYBOARD)
    spec = RenderSpec(prompt="a harbour", duration_s=5, fps=12, resolution="360p", narration="off", continuity="chain",
                      storyboard_file=root / "board.yaml")
    result = RenderPipeline(LocalRunStore(root / "store"), InlineSegmentRunner()).render(spec, run_id="harbour")
    return root / "store", result.run_id


@pytest.fixture
def store(rendered, tmp_path):
    source, _ = rendered
    shutil.copytree(source, tmp_path / "store")
    return LocalRunStore(tmp_path / "store")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(store, edits, judge=None):
    runner = InlineSegmentRunner()
    pipeline = RenderPipeline(store, runner, judge=judge)
    prepared = prepare_edit(pipeline, "harbour", parse_edit_request(edits))
    return prepared, runner, pipeline


def test_editing_scene_2_regenerates_only_its_chain_and_keeps_every_version(store):
    run = store.root / "harbour"
    v1_final = _sha(run / "final.mp4")
    v1_frames = decode_rgb(run / "final.mp4")
    lock, _, pipeline = _edit(store, [{"kind": "lock", "segments": [3]}])
    set_locks(pipeline, lock)
    assert read_history(store.open("harbour")).locked == [3] and len(read_history(store.open("harbour")).versions) == 1

    judge = RejectEverything()
    prepared, runner, pipeline = _edit(store, [{"kind": "scene", "scene": 2, "text": "a red ship arrives at dawn"}], judge)
    assert prepared.summary()["regenerate"] == [1, 2] and prepared.summary()["keep"] == [0, 3]
    result = run_edit(pipeline, prepared)

    # Provider tasks only for the edited scene and its chain dependent, two attempts each
    # (the judge rejects both); the locked segment is never generated nor judged.
    assert sorted(i for i, _ in runner.submitted) == [1, 1, 2, 2]
    assert sorted(set(judge.judged)) == [1, 2]
    assert result.generated_segments == 4
    plan = RunPlan.model_validate_json((run / "plan.json").read_text())
    assert plan.storyboard.scenes[1].description == "a red ship arrives at dawn"

    # Outside the regenerated span the frames are the old version's (the crossfade into the
    # locked segment excepted); inside it they changed.
    jobs = plan.segments
    v2_frames = decode_rgb(run / "final.mp4")
    assert len(v2_frames) == len(v1_frames) == 60
    span = range(jobs[1].start_frame, jobs[3].start_frame + jobs[3].head_frames)
    diff = [float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(v1_frames, v2_frames)]
    assert max(d for i, d in enumerate(diff) if i not in span) < 1.0
    assert max(diff[i] for i in span) > 5.0

    # Every version is kept: v1's video byte for byte (and it decodes), v2's beside it.
    assert _sha(run / "versions/v1/final.mp4") == v1_final
    assert len(decode_rgb(run / "versions/v1/final.mp4")) == 60
    assert _sha(run / "versions/v2/final.mp4") == _sha(run / "final.mp4")
    # v1's manifest names files that still hold v1's clips (the regenerated ones' copies).
    v1_manifest = json.loads((run / "versions/v1/manifest.json").read_text())
    for segment in v1_manifest["segments"]:
        assert _sha(run / segment["clip"]["path"]) == segment["clip"]["sha256"], segment["index"]
    assert [s["clip"]["path"] for s in v1_manifest["segments"]][1:3] == [f"versions/v1/segments/seg_000{i}.mp4" for i in (1, 2)]
    for name in ("report.html", "contact_sheet.png"):
        assert (run / "versions/v1" / name).is_file() and (run / "versions/v2" / name).is_file(), name
    history = read_history(store.open("harbour"))
    assert [v.version for v in history.versions] == [1, 2]
    v2 = history.versions[1]
    assert (v2.regenerated, v2.reused, v2.locked) == ([1, 2], [0, 3], [3])
    assert v2.edits[0]["text"] == "a red ship arrives at dawn"


def test_an_interrupted_edit_resumes_as_the_same_version_and_pays_once(store):
    prepared, runner, pipeline = _edit(store, [{"kind": "regenerate", "segment": 3, "seed": 41}])
    run = store.open("harbour")
    from longvid.runtime.versions import ensure_first_version
    from longvid.runtime.store import read_manifest

    ensure_first_version(run, read_manifest(run))
    _write_prepared(run, prepared)  # the process died here: nothing applied yet
    with pytest.raises(InputError, match="unfinished edit"):
        _edit(store, [{"kind": "regenerate", "segment": 2}])
    pipeline.resume("harbour")
    assert [i for i, _ in runner.submitted] == [3]
    assert [v.version for v in read_history(run).versions] == [1, 2]
    assert RunPlan.model_validate_json(run.read_bytes("plan.json")).segments[3].seed == 41

    # The next edit dies after its plan and manifest were applied: resume renders v3 once.
    prepared, runner, pipeline = _edit(store, [{"kind": "regenerate", "segment": 3, "seed": 42}])
    apply_prepared(run, _write_prepared(run, prepared))
    pipeline.resume("harbour")
    pipeline.resume("harbour")  # a finished edit resumed again: nothing new to pay, no v4
    assert [i for i, _ in runner.submitted] == [3]
    assert [v.version for v in read_history(run).versions] == [1, 2, 3]
    assert _sha(Path(run.location("versions/v2/final.mp4"))) != _sha(Path(run.location("versions/v3/final.mp4")))


class DiesAtSegment(InlineSegmentRunner):
    """The driver is interrupted (Ctrl-C) when segment `index` is collected."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def collect(self, provider, task_id, job, *args):
        if job.index == self.index:
            raise KeyboardInterrupt
        return super().collect(provider, task_id, job, *args)


def test_an_edit_interrupted_mid_generation_keeps_what_it_made(store):
    dying = DiesAtSegment(2)
    prepared = prepare_edit(RenderPipeline(store), "harbour", parse_edit_request([{"kind": "regenerate", "segment": 1, "seed": 8}]))
    with pytest.raises(KeyboardInterrupt):
        run_edit(RenderPipeline(store, dying), prepared)
    assert [i for i, _ in dying.submitted] == [1]
    runner = InlineSegmentRunner()
    RenderPipeline(store, runner).resume("harbour")
    # Segment 1 was accepted before the interrupt: not made again. Segment 3 comes from the
    # cache: the preview's segment 2 came out as before, so 3's first frame did too.
    assert [i for i, _ in runner.submitted] == [2]
    manifest = json.loads(store.open("harbour").read_bytes("manifest.json"))
    assert [s["state"] for s in manifest["segments"]] == ["accepted"] * 4 and manifest["segments"][3]["cached"]
    history = read_history(store.open("harbour"))
    assert [v.version for v in history.versions] == [1, 2] and history.versions[1].regenerated == [1, 2, 3]


def test_a_replaced_segment_is_the_users_clip_and_a_bad_clip_is_refused(store, tmp_path):
    run = store.root / "harbour"
    clip = tmp_path / "mine.mp4"
    shutil.copy(run / "segments/seg_0000.mp4", clip)
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(InputError, match="not a video"):
        _edit(store, [{"kind": "replace", "segment": 3, "clip": str(tmp_path / "notes.mp4")}])
    prepared, runner, pipeline = _edit(store, [{"kind": "replace", "segment": 3, "clip": str(clip)}])
    run_edit(pipeline, prepared)
    assert runner.submitted == []
    frames, first = decode_rgb(run / "final.mp4"), decode_rgb(clip)
    start = prepared.regeneration.jobs[3].start_frame + prepared.regeneration.jobs[3].head_frames
    assert float(np.abs(frames[start + 4].astype(int) - first[4 + prepared.regeneration.jobs[3].head_frames].astype(int)).mean()) < 3.0
    assert read_history(store.open("harbour")).versions[1].replaced == [3]


@pytest.mark.parametrize("args, message", [
    (["--scene", "9", "--text", "x"], "scene 9 does not exist"),
    (["--text", "x"], "--text needs --scene N"),
    (["--regenerate", "1", "--regenerate", "2", "--seed", "4"], "--seed goes with exactly one --regenerate"),
    (["--replace", "1", "/no/such.mp4"], "does not exist"),
    ([], "say what to edit"),
    (["--regenerate", "7"], r"segment\(s\) \[7\] do not exist"),
    (["--scene", "2", "--text", "x", "--budget", "-1"], "budget_usd"),
])
def test_the_edit_command_refuses_bad_input_with_exit_2(store, capsys, args, message):
    from longvid.cli import main

    assert main(["edit", "harbour", "--store", str(store.root), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("longvid: error:") and "\n" not in err
    assert pytest.importorskip("re").search(message, err)


def test_the_edit_estimate_and_history_commands(store, capsys):
    from longvid.cli import main

    assert main(["edit", "harbour", "--store", str(store.root), "--scene", "3", "--lighting", "night", "--estimate", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == 2 and summary["regenerate"] == [2, 3] and summary["keep"] == [0, 1]
    assert not (store.root / "harbour/history.json").exists()  # an estimate writes nothing
    assert main(["edit", "harbour", "--store", str(store.root), "--lock", "1", "2"]) == 0
    assert main(["history", str(store.root / "harbour"), "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert history["locked"] == [1, 2] and [v["version"] for v in history["versions"]] == [1] and history["pending"] is None


def test_two_lock_requests_prepared_together_both_count(store):
    """Each lock request is applied to the history read under the run's lease, not to the
    locks read when it was prepared: two quick clicks lock both segments."""
    from longvid.runtime.edit_run import set_locks

    first, _, pipeline = _edit(store, [{"kind": "lock", "segments": [1]}])
    second, _, _ = _edit(store, [{"kind": "lock", "segments": [2]}])
    set_locks(pipeline, first)
    assert set_locks(pipeline, second).locked == [1, 2]
    unlock, _, _ = _edit(store, [{"kind": "unlock", "segments": [1]}])
    assert read_history(store.open("harbour")).locked == [1, 2]
    assert set_locks(pipeline, unlock).locked == [2]


def test_versions_live_on_s3_through_the_store_interface(s3_server, tmp_path):
    """The same edit over an s3:// store (moto's S3 on 127.0.0.1): snapshots, history and
    the new version are objects, read back by a fresh store object."""
    from longvid.runtime import open_store

    store = open_store("s3://renders/edit-test")
    spec = RenderSpec(prompt="a harbour", duration_s=5, fps=12, resolution="360p", narration="off", continuity="anchor")
    RenderPipeline(store, InlineSegmentRunner()).render(spec, run_id="harbour-s3")
    runner = InlineSegmentRunner()
    pipeline = RenderPipeline(store, runner)
    run_edit(pipeline, prepare_edit(pipeline, "harbour-s3", parse_edit_request([{"kind": "regenerate", "segment": 0, "seed": 3}])))
    assert [i for i, _ in runner.submitted] == [0]
    again = open_store("s3://renders/edit-test").open("harbour-s3")
    assert [v.version for v in read_history(again).versions] == [1, 2]
    for name in ("versions/v1/final.mp4", "versions/v2/final.mp4", "versions/v1/segments/seg_0000.mp4", "versions/v2/manifest.json"):
        assert again.exists(name), name
    assert again.read_bytes("versions/v2/final.mp4") == again.read_bytes("final.mp4") != again.read_bytes("versions/v1/final.mp4")


def test_an_edit_prepared_before_another_finished_is_refused_and_never_overwrites_it(store):
    """Two edits prepared against v1: the first one made v2; the second one must not write
    over v2's folder (it was prepared as v2 too) but be refused, to be prepared again."""
    from longvid.runtime.edit_run import EditConflict, begin_edit
    from longvid.runtime.runlock import RunLock

    run = store.open("harbour")
    first, _, pipeline = _edit(store, [{"kind": "regenerate", "segment": 3, "seed": 5}])
    second, _, _ = _edit(store, [{"kind": "scene", "scene": 4, "text": "a storm"}])
    assert first.version == second.version == 2
    with RunLock(run, 60):
        begin_edit(run, first)
        with pytest.raises(EditConflict, match="unfinished edit"):
            begin_edit(run, second)
    pipeline.resume("harbour")
    v2 = {name: _sha(Path(run.location(f"versions/v2/{name}"))) for name in ("final.mp4", "next_plan.json", "edit.json")}
    with pytest.raises(EditConflict, match="is at v2 now, not v1"):
        run_edit(RenderPipeline(store, InlineSegmentRunner()), second)
    assert v2 == {name: _sha(Path(run.location(f"versions/v2/{name}"))) for name in v2}
    assert [v.version for v in read_history(run).versions] == [1, 2]
    # edit.json of a version is never written twice, whatever the caller checked.
    with pytest.raises(EditConflict, match="already has an edit making v2"):
        _write_prepared(run, second)


def test_an_edits_budget_stays_out_of_the_runs_request_and_kept_segments_cost_it_nothing(store, tmp_path):
    """The edit's cap lives in edit.json (the generate loop reads it from there), so the run's
    manifest still holds the user's request (a resubmitted render line matches it); segments
    kept from v1 were paid by v1, so a free edit costs nothing."""
    from longvid.runtime.edit_run import begin_edit
    from longvid.runtime.runlock import RunLock
    from longvid.runtime.store import read_manifest
    from longvid.runtime.versions import edit_spec

    run = store.open("harbour")
    manifest = json.loads(run.read_bytes("manifest.json"))
    for segment in manifest["segments"]:
        segment["cost_usd"] = 0.25  # as a paid provider would have charged v1
    run.write_bytes("manifest.json", json.dumps(manifest).encode())
    original = read_manifest(run).spec
    clip = tmp_path / "mine.mp4"
    shutil.copy(store.root / "harbour/segments/seg_0000.mp4", clip)
    prepared, _, pipeline = _edit(store, {"edits": [{"kind": "replace", "segment": 2, "clip": str(clip)}], "budget_usd": 0.5})
    with RunLock(run, 60):
        _, applied, _ = begin_edit(run, prepared)
    assert applied.spec == read_manifest(run).spec == original and original.budget_usd is None
    assert edit_spec(run, applied).budget_usd == 0.5
    assert [s.cost_usd for s in applied.segments] == [0.0] * 4 and applied.cost_usd == 0.0
    pipeline.resume("harbour")
    assert read_manifest(run).spec == original and edit_spec(run, read_manifest(run)) is None
    assert read_history(run).versions[1].cost_usd == 0.0 and read_manifest(run).cost_usd == 0.0


def test_a_moved_kept_segment_is_copied_before_a_replaced_clip_is_written_over_its_old_place(store, tmp_path):
    from longvid.runtime.store import read_manifest
    from longvid.runtime.versions import PendingEdit, ensure_first_version

    run = store.open("harbour")
    root = store.root / "harbour"
    ensure_first_version(run, read_manifest(run))
    run.write_bytes("versions/v2/next_plan.json", run.read_bytes("plan.json"))
    clip = tmp_path / "mine.mp4"
    shutil.copy(root / "segments/seg_0003.mp4", clip)
    run.publish("versions/v2/uploads/seg_0000.mp4", clip)
    old_first = _sha(root / "segments/seg_0000.mp4")
    # Segment 0 is replaced; the new segment 1 keeps the old segment 0 (it moved one place on).
    pending = PendingEdit(version=2, request=parse_edit_request([{"kind": "replace", "segment": 0, "clip": str(clip)}]),
                          decisions={0: ("replace", "user"), 1: ("keep", "moved"), 2: ("keep", ""), 3: ("keep", "")},
                          sources={1: 0, 2: 2, 3: 3}, uploads={0: "versions/v2/uploads/seg_0000.mp4"})
    manifest, _ = apply_prepared(run, pending)
    assert manifest.segments[1].clip.path == "versions/v2/kept/seg_0001.mp4"
    assert _sha(root / "versions/v2/kept/seg_0001.mp4") == old_first != _sha(root / "segments/seg_0000.mp4")


def test_an_edit_estimate_counts_best_of_n_for_regenerated_segments_only(store):
    """With --candidates the edit's estimate adds the regenerated segments' extra candidates
    (at the run's price, N lowered by the budget as the render lowers it), never kept ones'."""
    from dataclasses import replace

    from longvid.providers import registry
    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider

    run = store.open("harbour")
    manifest = json.loads(run.read_bytes("manifest.json"))

    def estimate(candidates):
        manifest["spec"].update(provider="paid-preview", candidates=candidates, candidates_for="all", budget_usd=100.0)
        run.write_bytes("manifest.json", json.dumps(manifest).encode())
        prepared, _, _ = _edit(store, [{"kind": "regenerate", "segment": 3, "seed": 7}])
        assert prepared.regeneration.regenerated == [3]
        return prepared.estimate.low_usd

    saved = dict(registry._FACTORIES)
    paid = replace(PREVIEW_CAPABILITIES, name="paid-preview", price_per_second_usd=0.1)
    registry.register_provider("paid-preview", paid, lambda settings: PreviewProvider())
    try:
        single, triple = estimate(1), estimate(3)
    finally:
        registry._FACTORIES.clear()
        registry._FACTORIES.update(saved)
    assert single > 0 and triple == pytest.approx(3 * single)
