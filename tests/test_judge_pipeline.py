"""The consistency judge inside the render pipeline: drift is caught and regenerated,
clean renders are left alone, and on Ray the judge and compressor run as actors."""

import json
from pathlib import Path

import pytest
from provider_doubles import drifting_provider

from longvid.cli import main
from longvid.consistency import FramePackCompressor, JudgeConfig
from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
from longvid.manifest import RunStatus, load_manifest
from longvid.providers import register_provider
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.spec import RenderSpec

SPEC = dict(prompt="a red fox explores a snowy forest at dawn", duration_s=20, fps=12, resolution="360p", continuity="auto")


DriftingProvider = drifting_provider("drifting")


def _render(tmp_path, drift=None):
    register_provider("drifting", DriftingProvider.capabilities, lambda settings: DriftingProvider())
    spec = RenderSpec(**{**SPEC, "provider": "drifting"})
    jobs = RenderPipeline().plan(spec).jobs
    DriftingProvider.drift_at = {}
    if drift is not None:
        target = next(j for j in jobs if j.segment_in_scene == 1)  # inside a scene: anchored and seamed
        DriftingProvider.drift_at = {target.index: target.seed}
    judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
    result = RenderPipeline(LocalRunStore(tmp_path / "store"), InlineSegmentRunner(), judge=judge).render(spec)
    return result, load_manifest((Path(result.run_dir) / "manifest.json").read_text()), DriftingProvider.drift_at


def test_clean_render_has_no_false_alarms(tmp_path):
    result, manifest, _ = _render(tmp_path)
    assert all(r.regenerations == 0 and len(r.scores) == 1 and r.scores[0].passed for r in manifest.segments)
    assert result.generated_segments == result.segments and not result.warnings
    assert (Path(result.run_dir) / "characters.npz").is_file()
    import numpy as np

    with np.load(Path(result.run_dir) / "context.npz") as context:  # bounded: <= 2x one frame
        pixels = sum(context[k].shape[0] * context[k].shape[1] for k in context.files)
    assert 0 < pixels <= 2 * 640 * 360


def test_drifting_segment_is_flagged_and_regenerated(tmp_path):
    result, manifest, drift_at = _render(tmp_path, drift=True)
    (index, bad_seed), = drift_at.items()
    record = manifest.segments[index]
    assert record.regenerations == 1 and record.attempts == 2
    first, second = record.scores
    assert first.seed == bad_seed and not first.passed and first.anchor < 0.75
    assert second.passed and second.seed != bad_seed and record.seed == second.seed
    assert any("judge:" in line for line in record.history)
    others = [r for r in manifest.segments if r.index != index]
    assert all(r.regenerations == 0 and r.scores[0].passed for r in others)
    assert not result.warnings
    report = json.loads((Path(result.run_dir) / "report.json").read_text())
    assert report["judge"]["backend"] == "structural"
    assert [len(s["scores"]) for s in report["segments"]][index] == 2


@pytest.mark.ray
def test_tiny_clip_judge_runs_as_a_ray_actor(ray_session, tmp_path, capsys):
    from longvid.consistency import TINY_CLIP_NAME, write_tiny_clip_checkpoint

    from longvid.testing.tiny_judge_models import build_tiny_dinov2, write_tiny_aesthetic_head

    checkpoint = write_tiny_clip_checkpoint(tmp_path / "tiny.pt")
    dinov2, head = build_tiny_dinov2(tmp_path / "dinov2"), write_tiny_aesthetic_head(tmp_path / "head.safetensors", dim=32)
    assert main(["render", "a kite over a beach", "-d", "5", "--resolution", "360p", "--store", str(tmp_path / "store"),
                 "--judge", "clip", "--clip-model", TINY_CLIP_NAME, "--clip-checkpoint", str(checkpoint), "--json",
                 "--dinov2", str(dinov2), "--aesthetic-head", str(head), "--clip-pretrained", "openai"]) == 0
    result = json.loads(capsys.readouterr().out)
    manifest = load_manifest((Path(result["run_dir"]) / "manifest.json").read_text())
    scores = [entry for record in manifest.segments for entry in record.scores]
    assert scores and all(entry.backend == "clip" and entry.prompt is not None for entry in scores)
    # The weighted metrics ran on the judge actor, from the CLI's --dinov2 / --aesthetic-head.
    assert all(None not in (entry.subject, entry.background, entry.aesthetic) for entry in scores)
    report = json.loads((Path(result["run_dir"]) / "report.json").read_text())
    assert "subject" in json.dumps(report["segments"][0]["scores"])
    assert result["frames"] == 120


@pytest.mark.ray
def test_clip_judge_without_weights_is_a_clear_error(ray_session, tmp_path, capsys):
    code = main(["render", "a kite", "-d", "5", "--resolution", "360p", "--store", str(tmp_path / "store"),
                 "--judge", "clip", "--clip-checkpoint", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("longvid: error:") and "missing.pt" in err[0]


@pytest.mark.ray
def test_a_judge_actor_that_cannot_start_says_why_in_one_line(ray_session, tmp_path):
    """A LongvidError in the actor's __init__ (here a head for another CLIP size, past the edge's
    check) reaches the driver as itself, one line, not as an ActorDiedError with a traceback."""
    from longvid.consistency import TINY_CLIP_NAME, write_tiny_clip_checkpoint
    from longvid.consistency.pipeline_judge import create_pipeline_judge
    from longvid.errors import InputError
    from longvid.testing.tiny_judge_models import write_tiny_aesthetic_head

    head = write_tiny_aesthetic_head(tmp_path / "h.safetensors", dim=48)
    config = JudgeConfig(backend="clip", model_name=TINY_CLIP_NAME, checkpoint_path=write_tiny_clip_checkpoint(tmp_path / "tiny.pt"),
                         pretrained="openai", device="cpu", aesthetic_head=head)
    with pytest.raises(InputError, match="takes 48-d CLIP embeddings") as caught:
        create_pipeline_judge(config)
    assert len(str(caught.value).splitlines()) == 1 and "Traceback" not in str(caught.value)


def test_resume_judges_what_a_crash_left_unjudged_and_regenerates_what_it_rejected(tmp_path):
    """A crash between writing a segment and judging it, or between the judge's rejection and
    the reset that follows, must not let that segment through unjudged on resume."""
    from longvid.manifest import reset, transition
    from longvid.runtime.store import MANIFEST, write_model
    from longvid.spec import SegmentState

    result, manifest, drift_at = _render(tmp_path, drift=True)
    (drifted, bad_seed), = drift_at.items()
    store = LocalRunStore(tmp_path / "store")
    run = store.open(result.run_id)
    clean = next(r.index for r in manifest.segments if r.index != drifted)
    # Segment `clean`: back to GENERATED, its score forgotten (crashed before the judge ran).
    record = manifest.segments[clean]
    manifest = reset(manifest, clean, "test")
    manifest = transition(manifest, clean, SegmentState.GENERATED, clip=record.clip, seed=record.seed,
                          cache_key=record.cache_key, scores=[])
    # Segment `drifted`: its first, rejected attempt is back in place as JUDGED (crashed before the reset).
    first = manifest.segments[drifted].scores[0]
    run.write_bytes(manifest.segments[drifted].clip.path, run.read_bytes(first.file))
    bad_clip = manifest.segments[drifted].clip.model_copy(update={"sha256": first.sha256})
    manifest = reset(manifest, drifted, "test")
    manifest = manifest.model_copy(update={"segments": [
        r.model_copy(update={"regenerations": 0, "scores": [first], "seed": bad_seed}) if r.index == drifted else r
        for r in manifest.segments]})
    manifest = transition(manifest, drifted, SegmentState.GENERATED, clip=bad_clip, seed=bad_seed)
    manifest = transition(manifest, drifted, SegmentState.JUDGED)
    write_model(run, MANIFEST, manifest.model_copy(update={"status": RunStatus.FAILED}))

    DriftingProvider.drift_at = {}
    judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
    resumed = RenderPipeline(store, InlineSegmentRunner(), judge=judge).resume(result.run_id)
    after = load_manifest((Path(resumed.run_dir) / "manifest.json").read_text())
    assert after.segments[clean].state is SegmentState.ACCEPTED and len(after.segments[clean].scores) == 1
    assert after.segments[clean].scores[0].passed  # judged on resume, not waved through
    regenerated = after.segments[drifted]
    assert regenerated.regenerations == 1 and regenerated.seed != bad_seed and regenerated.scores[-1].passed


def test_resume_keeps_the_best_attempt_of_one_rejected_on_its_last_try(tmp_path):
    from longvid.manifest import reset, transition
    from longvid.runtime.store import MANIFEST, write_model
    from longvid.spec import SegmentState

    result, manifest, drift_at = _render(tmp_path, drift=True)
    (drifted, bad_seed), = drift_at.items()
    store = LocalRunStore(tmp_path / "store")
    run = store.open(result.run_id)
    good, first = manifest.segments[drifted].scores[1], manifest.segments[drifted].scores[0]
    # The last allowed attempt (the drifting one here) was just rejected when the render stopped;
    # the good attempt is an earlier one, kept in its attempt file.
    segment = manifest.segments[drifted].clip.path
    good_file, bad_file = f"segments/seg_{drifted:04d}.attempt1.mp4", first.file
    run.write_bytes(good_file, run.read_bytes(segment))
    run.write_bytes(segment, run.read_bytes(bad_file))
    bad_clip = manifest.segments[drifted].clip.model_copy(update={"sha256": first.sha256})
    manifest = reset(manifest, drifted, "test")
    scores = [good.model_copy(update={"file": good_file}), first]
    manifest = manifest.model_copy(update={"segments": [
        r.model_copy(update={"regenerations": 2, "scores": scores}) if r.index == drifted else r for r in manifest.segments]})
    manifest = transition(manifest, drifted, SegmentState.GENERATED, clip=bad_clip, seed=bad_seed)
    manifest = transition(manifest, drifted, SegmentState.JUDGED)
    write_model(run, MANIFEST, manifest.model_copy(update={"status": RunStatus.FAILED}))

    judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
    resumed = RenderPipeline(store, InlineSegmentRunner(), judge=judge).resume(result.run_id)
    after = load_manifest((Path(resumed.run_dir) / "manifest.json").read_text())
    record = after.segments[drifted]
    assert record.state is SegmentState.ACCEPTED and record.regenerations == 2  # not regenerated a fourth time
    assert any(f"segment {drifted}: below the consistency thresholds" in w for w in after.warnings)
    assert record.seed == good.seed and record.clip.sha256 == good.sha256  # the better attempt is the one kept
    assert run.read_bytes(segment) == run.read_bytes(good_file)
