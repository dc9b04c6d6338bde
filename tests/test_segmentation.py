import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.planning import DurationRule, OfflinePlanner, segment_count, segment_storyboard
from longvid.planning.segmentation import allocate, split_evenly
from longvid.providers.preview import PREVIEW_CAPABILITIES
from longvid.spec import ContinuityMode, RenderSpec, Transition

ANY_LENGTH = PREVIEW_CAPABILITIES.durations


@pytest.mark.parametrize(
    "seconds, count",
    [(5, 4), (30, 4), (31, 6), (45, 6), (60, 7), (120, 15), (600, 75)],
)
def test_design_segment_table(seconds, count):
    assert segment_count(seconds, 24, ANY_LENGTH) == count


def test_quantised_provider_raises_the_count_so_segments_fit():
    # 10 s is the longest a 5/10 s provider makes; 8 s segments fit, 60 s / 6 = 10 s + tail would not.
    rule = DurationRule(min_s=5, max_s=10, allowed=(5.0, 10.0))
    assert segment_count(60, 24, rule) >= 7


def test_quantised_provider_lowers_the_count_instead_of_paying_for_padding():
    # A 5 s video on a provider whose shortest clip is 4 s: one segment, not four.
    rule = DurationRule(min_s=4, max_s=8, allowed=(4.0, 6.0, 8.0))
    assert segment_count(5, 24, rule) == 1


def test_fit_picks_the_shortest_allowed_length():
    rule = DurationRule(allowed=(4.0, 6.0, 8.0))
    assert rule.fit(4.0, 24) == 4.0
    assert rule.fit(4.3, 24) == 6.0
    assert rule.fit(7.9, 24) == 8.0
    with pytest.raises(ValueError):
        rule.fit(8.5, 24)


def test_any_length_fit_rounds_up_to_a_whole_frame():
    assert ANY_LENGTH.fit(7.51, 24) == pytest.approx(181 / 24)


def test_allocate_and_split():
    assert allocate([1, 1, 1], 6) == [2, 2, 2]
    assert sum(allocate([3, 1, 1, 2], 11)) == 11
    assert min(allocate([100, 1, 1], 5)) == 1
    assert split_evenly(1080, 7) == [155, 155, 154, 154, 154, 154, 154]


def _jobs(duration, continuity=ContinuityMode.AUTO, durations=ANY_LENGTH, prompt="a red fox explores a snowy forest at dawn"):
    spec = RenderSpec(prompt=prompt, duration_s=duration, continuity=continuity, resolution="360p")
    storyboard = OfflinePlanner().plan(spec, max_scenes=segment_count(duration, 24, durations))
    return spec, storyboard, segment_storyboard(storyboard, spec, durations)


@settings(max_examples=60, deadline=None)
@given(duration=st.floats(min_value=5, max_value=600), seed=st.integers(0, 1000))
def test_segments_tile_the_timeline_exactly(duration, seed):
    spec = RenderSpec(prompt="a fox. a river. a ridge.", duration_s=duration, seed=seed, resolution="360p")
    storyboard = OfflinePlanner().plan(spec, max_scenes=segment_count(duration, 24, ANY_LENGTH))
    jobs = segment_storyboard(storyboard, spec, ANY_LENGTH)
    assert sum(j.frames for j in jobs) == spec.total_frames  # final length exact to the frame
    assert [j.start_frame for j in jobs] == [sum(x.frames for x in jobs[:i]) for i in range(len(jobs))]
    assert jobs[0].head_frames == 0 and jobs[-1].tail_frames == 0
    for prev, job in zip(jobs, jobs[1:]):
        assert prev.tail_frames == job.head_frames  # both sides of a seam agree
        assert job.head_frames < job.frames
        assert job.scene_index >= prev.scene_index
    for job in jobs:
        assert job.generate_duration_s * job.fps >= job.needed_frames - 1e-6
    assert {j.scene_index for j in jobs} == set(range(len(storyboard.scenes)))


def test_seams_follow_scene_transitions():
    spec, storyboard, jobs = _jobs(45)
    for prev, job in zip(jobs, jobs[1:]):
        if prev.scene_index == job.scene_index:
            assert (job.head_transition, job.head_frames) == (Transition.CROSSFADE, 6)
        else:
            wanted = storyboard.scenes[prev.scene_index].transition
            expected = {Transition.CUT: 0, Transition.CROSSFADE: 6, Transition.FADE: 12}[wanted]
            assert job.head_frames == expected


def test_quantised_durations_are_trimmed_at_merge():
    rule = DurationRule(min_s=4, max_s=8, allowed=(4.0, 6.0, 8.0))
    spec, _, jobs = _jobs(45, durations=rule)
    assert sum(j.frames for j in jobs) == spec.total_frames
    assert all(j.generate_duration_s in (4.0, 6.0, 8.0) for j in jobs)
    assert all(j.generate_duration_s * 24 >= j.needed_frames for j in jobs)


def test_continuity_modes_set_dependencies():
    _, _, chain = _jobs(45, ContinuityMode.CHAIN)
    assert [j.conditioned_on for j in chain] == [None] + list(range(len(chain) - 1))
    _, _, anchor = _jobs(45, ContinuityMode.ANCHOR)
    assert all(j.conditioned_on is None for j in anchor)
    _, _, auto = _jobs(45, ContinuityMode.AUTO)
    for prev, job in zip(auto, auto[1:]):
        assert job.conditioned_on == (prev.index if prev.scene_index == job.scene_index else None)


def test_segments_of_a_scene_continue_its_timeline():
    _, _, jobs = _jobs(120)
    for prev, job in zip(jobs, jobs[1:]):
        if prev.scene_index == job.scene_index:
            assert job.scene_offset_s == pytest.approx(prev.scene_offset_s + prev.frames / 24)
            assert job.seed == prev.seed
