"""Weight-free temporal metrics (flicker, smoothness, jump) on labelled clips: each metric
separates its drift from clean controls, and the judge folds them into its verdict."""

import numpy as np
import pytest

from longvid.consistency import ConsistencyJudge, JudgeConfig
from longvid.consistency.pipeline_judge import verdict_quality
from longvid.consistency.temporal import decode_for_judging, temporal_metrics
from longvid.testing import drift_clips as dc

TH = JudgeConfig().temporal_thresholds


@pytest.fixture(scope="module")
def jobs():
    jobs = dc.tiny_jobs(duration_s=12)
    return [jobs[0], jobs[2]]  # a dolly shot and a still one, in two scenes


def metrics(job, frames):
    _, thumbs = decode_for_judging(dc.mp4(job, frames), {0}, job.frames - 1)
    assert len(thumbs) == job.frames
    return temporal_metrics(thumbs)


@pytest.mark.parametrize("drift, metric", [("flicker", "flicker"), ("shake", "smoothness"), ("cut", "jump")])
def test_each_metric_separates_its_drift_from_clean_controls(jobs, drift, metric):
    for job in jobs:
        clean = getattr(metrics(job, dc.clean(job)), metric)
        drifted = getattr(metrics(job, dc.DRIFTS[drift](job)), metric)
        threshold = getattr(TH, metric)
        assert clean >= threshold and drifted < threshold, (job.index, clean, drifted)


@pytest.mark.parametrize("drift", ["palette", "lighting", "subject_swap"])
def test_drifts_that_hold_within_the_segment_are_not_temporal_failures(jobs, drift):
    """A whole segment in the wrong palette is steady in time: the anchor check's business."""
    m = metrics(jobs[0], dc.DRIFTS[drift](jobs[0]))
    assert m.flicker >= TH.flicker and m.smoothness >= TH.smoothness and m.jump >= TH.jump, m


def test_jump_points_at_the_cut_and_ignores_still_and_flat_frames():
    moving = np.stack([np.full((36, 64), 100.0) + np.arange(64)[None, :] * 0.5 + k * 0.3 for k in range(20)])
    assert temporal_metrics(moving).jump > TH.jump
    cut = moving.copy()
    cut[12:] = np.roll(cut[12:], 20, axis=2) + 40
    found = temporal_metrics(cut)
    assert found.jump < TH.jump and found.jump_at == 12
    still = np.full((10, 36, 64), 80.0)
    assert temporal_metrics(still).jump == 1.0 and temporal_metrics(still).flicker == 1.0
    assert temporal_metrics(still[:1]).flicker is None  # one frame: nothing to compare


def test_the_judge_fails_a_cut_and_ranks_it_below_a_clean_attempt(jobs):
    judge = ConsistencyJudge(JudgeConfig(backend="structural"))
    job = jobs[0]
    clean = judge.score_segment(dc.mp4(job, dc.clean(job)), job)
    cut = judge.score_segment(dc.mp4(job, dc.cut(job)), job)
    assert clean.passed and clean.jump >= TH.jump and clean.flicker is not None
    assert not cut.passed and [f.split()[0] for f in cut.failures] == ["jump"]
    assert "hard cut" in cut.failures[0]
    assert verdict_quality(cut) < verdict_quality(clean)
    off = ConsistencyJudge(JudgeConfig(backend="structural", temporal=False)).score_segment(dc.mp4(job, dc.cut(job)), job)
    assert off.passed and off.jump is None


def test_a_smooth_pan_over_fine_texture_is_clean_at_720p_and_360p():
    """Thumbnails are true block means: sampled ones aliased this pan into flicker (0.87)."""
    job = dc.tiny_jobs(duration_s=12)[0]
    for width, height in ((1280, 720), (640, 360)):
        pan = job.model_copy(update={"width": width, "height": height, "frames": 12})
        m = metrics(pan, dc.textured_pan(pan))
        assert m.flicker >= TH.flicker and m.smoothness >= TH.smoothness and m.jump >= TH.jump, (width, m)


def test_block_mean_is_the_mean_of_each_block():
    from longvid.consistency.temporal import block_mean

    luma = np.random.default_rng(1).integers(0, 256, (75, 130), dtype=np.uint8)
    expected = luma[:72, :128].reshape(18, 4, 32, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(block_mean(luma, 4), expected, rtol=1e-6)


def test_a_dark_scenes_small_step_is_not_a_cut():
    # A night preview at 360p: ~0.03 grey levels a frame, one step of about half a grey level
    # (it read as a cut at jump 0.091 and cost a regeneration); a real cut changes tens.
    base = np.full((12, 36, 64), 20.0, np.float32)
    steps = np.full(11, 0.03)
    steps[5] = 0.55
    thumbs = base + np.concatenate([[0.0], np.cumsum(steps)])[:, None, None]
    assert temporal_metrics(thumbs).jump >= TH.jump
    # The same clip with a hard cut at frame 6 (to a picture with structure: a flat frame that
    # only gets brighter is a change of light, which temporal.tone_matched_change tells apart)
    thumbs[6:] += 60.0 * np.linspace(0.0, 2.0, 64, dtype=np.float32)[None, None, :]
    found = temporal_metrics(thumbs)
    assert found.jump < TH.jump and found.jump_at == 6


@pytest.mark.parametrize("control", ["lights_on", "flash"])
def test_a_change_of_light_is_not_a_cut_but_a_cut_still_is(jobs, control):
    """Lights switching on or a flash remap brightness globally (tone_matched_change ~1 grey
    level); a cut changes the picture (~15). Both were read as cuts before."""
    from longvid.consistency.temporal import TONE_MIN_CHANGE, tone_matched_change

    for job in jobs:
        _, thumbs = decode_for_judging(dc.mp4(job, dc.CLEAN_CONTROLS[control](job)), {0}, job.frames - 1)
        diffs = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))
        step = int(np.argmax(diffs))
        assert diffs[step] > 20 * max(diffs[step - 1], diffs[step + 1], 0.05)  # one big step: what read as a cut
        assert tone_matched_change(thumbs[step], thumbs[step + 1]) < TONE_MIN_CHANGE
        assert temporal_metrics(thumbs).jump >= TH.jump, (job.index, control)
        assert metrics(job, dc.cut(job)).jump < TH.jump


@pytest.mark.parametrize("kind", ["cut_to_black", "cut_to_white", "low_contrast_cut"])
def test_a_cut_to_a_flat_or_low_contrast_shot_is_still_a_cut(jobs, kind):
    """Every picture maps monotonically onto a black, white or flat frame (tone_matched_change
    ~0 one way): only the check in both directions tells these cuts from a change of light."""
    for job in jobs:
        found = metrics(job, dc.HARD_CUTS[kind](job))
        assert found.jump < TH.jump and found.jump_at == job.frames // 2, (job.index, kind, found)


def test_a_change_of_light_must_be_explained_both_ways():
    from longvid.consistency.temporal import is_change_of_light

    ramp = np.tile(np.linspace(20, 180, 64, dtype=np.float32), (36, 1))
    assert is_change_of_light(ramp, ramp * 1.4) and is_change_of_light(ramp * 1.4, ramp)  # lights on, lights off
    dim_other = 118 + (ramp[:, ::-1] - ramp.mean()) * 0.1  # another picture at a tenth of the contrast
    for flat in (np.zeros_like(ramp), np.full_like(ramp, 255.0), dim_other):
        assert not is_change_of_light(ramp, flat) and not is_change_of_light(flat, ramp)


def test_tone_matched_change_ignores_gain_and_clipping_not_structure():
    from longvid.consistency.temporal import tone_matched_change

    ramp = np.tile(np.linspace(20, 230, 64, dtype=np.float32), (36, 1))
    assert tone_matched_change(ramp, np.clip(ramp * 1.5 + 10, 0, 255)) < 0.5
    assert tone_matched_change(ramp, ramp[:, ::-1]) > 50  # the same values, another picture
