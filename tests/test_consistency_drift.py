"""Drift detection with the structural scorer (the default when no CLIP weights are present)
on real preview renders: clean segments pass, segments rendered from a wrong palette,
subject or lighting are flagged. The drifted clip is judged against the job that was asked
for, as the pipeline would."""

import pytest

from longvid.consistency import CharacterMemory, ConsistencyJudge, JudgeConfig, decode_frames, sample_keyframes, tail_frames
from longvid.planning import OfflinePlanner, segment_storyboard
from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
from longvid.spec import Character, Lighting, RenderSpec

MARGIN = 0.1  # clean scores must clear the thresholds by this much


@pytest.fixture(scope="module")
def video():
    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=20, resolution="360p")
    jobs = segment_storyboard(OfflinePlanner().plan(spec, 2), spec, PREVIEW_CAPABILITIES.durations)
    assert [j.scene_index for j in jobs] == [0, 0, 1, 1]
    provider = PreviewProvider()
    clips = [provider.fetch(provider.submit(j)) for j in jobs]
    return jobs, clips


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    # backend "auto" with an empty weights cache: what a fresh install gets.
    judge = ConsistencyJudge(JudgeConfig(cache_dir=tmp_path_factory.mktemp("empty-cache")))
    assert judge.backend == "structural" and "fell back" in judge.notes
    return judge


def render_drifted(job, **scene_update):
    bad = job.model_copy(update={"scene": job.scene.model_copy(update=scene_update)})
    provider = PreviewProvider()
    return provider.fetch(provider.submit(bad))


def score(judge, jobs, clips, index, clip=None, memory=None):
    """Score segment `index` the way the pipeline would: anchors are the first frame of its
    scene and of the video; the seam is checked inside a scene."""
    job = jobs[index]
    scene_start = next(j.index for j in jobs if j.scene_index == job.scene_index)
    anchors = [decode_frames(clips[scene_start], [0])[0], decode_frames(clips[0], [0])[0]]
    previous = jobs[index - 1] if index else None
    tail = tail_frames(clips[index - 1], previous.frames, 3) if previous and previous.scene_index == job.scene_index else None
    return judge.score_segment(clip if clip is not None else clips[index], job, anchors, tail, job.prompt, memory)


def test_clean_render_has_no_false_alarms(judge, video):
    jobs, clips = video
    th = judge.thresholds
    for job in jobs:
        s = score(judge, jobs, clips, job.index)
        assert s.passed and s.failures == [], (job.index, s)
        assert s.backend == "structural" and s.prompt is None  # no text check without CLIP
        assert s.anchor >= th.anchor + MARGIN
        if job.segment_in_scene:
            assert s.seam >= th.seam + MARGIN
        else:
            assert s.seam is None
        assert s.keyframes[0] == 0 and s.keyframes[-1] == job.frames - 1 and len(s.keyframes) >= 2


@pytest.mark.parametrize("index", [1, 3])
def test_wrong_palette_and_subject_are_flagged(judge, video, index):
    jobs, clips = video
    drifted = render_drifted(
        jobs[index],
        color_palette=["#e63946", "#f4a261", "#2a9d8f", "#264653"],
        characters=[Character(name="blue whale")],
    )
    s = score(judge, jobs, clips, index, drifted)
    assert not s.passed
    failed = {f.split()[0] for f in s.failures}
    assert failed == {"anchor", "seam"}, s.failures
    assert s.anchor < judge.thresholds.anchor - MARGIN and s.seam < judge.thresholds.seam - MARGIN


def test_wrong_lighting_is_flagged(judge, video):
    jobs, clips = video
    s = score(judge, jobs, clips, 1, render_drifted(jobs[1], lighting=Lighting.NIGHT))
    assert not s.passed and any(f.startswith("anchor") for f in s.failures)


def test_character_memory_flags_a_changed_look(judge, video):
    jobs, clips = video
    memory = CharacterMemory(backend=judge.backend)
    for index in (0, 2):  # the fox as accepted in each scene
        frames = [f for _, f in sample_keyframes(clips[index], 0.5, 24, 0, jobs[index].frames - 1)]
        memory.add_appearance("red fox", judge.embed_frames(frames), backend=judge.backend)
    clean = score(judge, jobs, clips, 3, memory=memory)
    assert clean.passed and clean.character >= judge.thresholds.character + MARGIN
    drifted = render_drifted(jobs[3], color_palette=["#e9c46a", "#f4a261", "#e76f51", "#264653"])
    bad = score(judge, jobs, clips, 3, drifted, memory=memory)
    assert not bad.passed and "character" in {f.split()[0] for f in bad.failures}


def test_pipeline_adapter_judges_like_the_pipeline_calls_it(tmp_path, video):
    """ConsistencySegmentJudge speaks RenderPipeline's SegmentJudge protocol."""
    from longvid.consistency.pipeline_judge import ConsistencySegmentJudge

    jobs, clips = video
    paths = []
    for job, data in zip(jobs, clips):
        paths.append(tmp_path / f"segment-{job.index}.mp4")
        paths[-1].write_bytes(data)
    adapter = ConsistencySegmentJudge(JudgeConfig(cache_dir=tmp_path / "empty-cache"))
    assert adapter.backend == "structural" and adapter.max_attempts == 3

    def previous_of(job):
        if job.index and jobs[job.index - 1].scene_index == job.scene_index:
            return jobs[job.index - 1], paths[job.index - 1]
        return None

    verdicts = [adapter.judge(job, paths[job.index], previous_of(job)) for job in jobs]
    assert all(v.passed and v.reason == "" for v in verdicts), [v.reason for v in verdicts]
    assert verdicts[1].scores["anchor"] is not None and verdicts[1].scores["seam"] is not None
    assert verdicts[0].scores["anchor"] is None  # a scene's opening segment: no references given
    assert verdicts[1].scores["backend"] == "structural" and "fell back" in verdicts[1].scores["notes"]

    drifted = tmp_path / "drifted.mp4"
    drifted.write_bytes(render_drifted(jobs[3], color_palette=["#e63946", "#f4a261", "#2a9d8f", "#264653"]))
    verdict = adapter.judge(jobs[3], drifted, previous_of(jobs[3]))
    assert not verdict.passed and "anchor" in verdict.reason and "seam" in verdict.reason
