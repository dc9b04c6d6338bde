"""ConsistencyJudge on small synthetic clips: checks, thresholds, anchors."""

import numpy as np
import pytest

from longvid.consistency import ConsistencyJudge, JudgeConfig, SegmentScores, StructuralScorer, Thresholds
from longvid.consistency.judge import fit_aspect
from longvid.spec import Scene, SegmentJob
from media_helpers import write_clip


def scene_frames(count, colour, width=96, height=54, shift=0):
    frames = []
    for k in range(count):
        f = np.zeros((height, width, 3), np.uint8)
        f[:] = colour
        f[height // 2 :, :] = np.array(colour) // 2  # a horizon
        x = 10 + k + shift
        f[20:34, x : x + 12] = (240, 240, 240)  # a moving subject
        frames.append(f)
    return frames


def make_job(frames=48, index=1, width=96, height=54):
    return SegmentJob(
        index=index, scene_index=0, segment_in_scene=index, prompt="a fox", scene=Scene(description="a fox"),
        start_frame=0, frames=frames, generate_duration_s=frames / 24, fps=24, width=width, height=height, seed=1,
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    good = write_clip(folder / "good.mp4", scene_frames(48, (40, 90, 160)))
    bad = write_clip(folder / "bad.mp4", scene_frames(48, (200, 60, 20)))
    return good, bad


@pytest.fixture(scope="module")
def judge():
    return ConsistencyJudge(JudgeConfig(backend="structural"))


def test_scores_and_verdicts(judge, clips):
    good, bad = clips
    anchors = scene_frames(1, (40, 90, 160))
    tail = scene_frames(3, (40, 90, 160), shift=-3)
    ok = judge.score_segment(good, make_job(), anchors, tail, "a fox")
    assert isinstance(ok, SegmentScores) and ok.passed and ok.failures == []
    assert ok.prompt is None and ok.character is None and ok.backend == "structural"
    assert ok.keyframes == [0, 47]  # 2 s at 0.5/s: both ends
    drifted = judge.score_segment(bad, make_job(), anchors, tail)
    assert not drifted.passed and [f.split()[0] for f in drifted.failures] == ["anchor", "seam"]


def test_checks_without_inputs_are_skipped(judge, clips):
    s = judge.score_segment(clips[1], make_job(), [], None, None, None)
    assert s.passed and (s.anchor, s.seam, s.prompt, s.character) == (None, None, None, None)


def test_anchor_embeddings_work_like_frames(judge, clips):
    anchors = scene_frames(2, (40, 90, 160))
    by_frames = judge.score_segment(clips[0], make_job(), anchors).anchor
    by_embeddings = judge.score_segment(clips[0], make_job(), list(judge.embed_frames(anchors))).anchor
    assert by_frames == pytest.approx(by_embeddings, abs=1e-6)


def test_thresholds_come_from_the_config_per_backend(clips):
    strict = Thresholds(anchor=0.9999, seam=0.9999, character=0.9999)
    judge = ConsistencyJudge(JudgeConfig(backend="structural", structural_thresholds=strict), scorer=StructuralScorer())
    s = judge.score_segment(clips[0], make_job(), scene_frames(1, (40, 90, 160), shift=30))
    assert not s.passed and s.failures[0].startswith("anchor")
    assert JudgeConfig().thresholds_for("clip").prompt is not None
    assert JudgeConfig().thresholds_for("structural").prompt is None


def test_character_refs_from_memory(judge, clips):
    from longvid.consistency import CharacterMemory
    from longvid.spec import Character

    memory = CharacterMemory()
    memory.add_reference("Fox", judge.embed_frames(scene_frames(2, (40, 90, 160))))
    job = make_job().model_copy(update={"scene": Scene(description="a fox", characters=[Character(name="fox")])})
    good = judge.score_segment(clips[0], job, character_refs=memory)
    bad = judge.score_segment(clips[1], job, character_refs=memory)
    assert good.passed and good.character > judge.thresholds.character
    assert not bad.passed and bad.failures[0].startswith("character") and bad.character < good.character


def test_references_of_another_shape_are_cropped_to_the_frame():
    square = np.zeros((100, 100, 3), np.uint8)
    assert fit_aspect(square, 160, 90).shape == (56, 100, 3)
    assert fit_aspect(square, 90, 160).shape == (100, 56, 3)
    assert fit_aspect(np.zeros((90, 160, 3), np.uint8), 1280, 720).shape == (90, 160, 3)
