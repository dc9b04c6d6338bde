"""Timing by construction (longvid/sound/timing.py) and the segmenter cutting inside the
scene lengths it gives: pure, milliseconds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.planning.segmentation import DurationRule, segment_storyboard
from longvid.sound.phrases import language_of, split_phrases, spoken_units
from longvid.sound.timing import (PHRASE_GAP_S, SCENE_LEAD_S, SCENE_TAIL_S, narration_need_s, scene_seconds,
                                  time_narration)
from longvid.spec import RenderSpec, Scene, Storyboard


def _board(n: int) -> Storyboard:
    return Storyboard(title="t", prompt="p", scenes=[Scene(description=f"scene {i}") for i in range(n)])


def test_phrases_split_at_sentence_ends_in_latin_and_cjk_text():
    assert split_phrases("A fox runs. It stops! Why? ") == ["A fox runs.", "It stops!", "Why?"]
    assert split_phrases("一只狐狸在雪中。它停下来了！") == ["一只狐狸在雪中。", "它停下来了！"]
    assert split_phrases("  ") == [] and split_phrases("...") == []
    assert (language_of("一只红色的狐狸"), language_of("a fox"), language_of("きつね")) == ("zh", "en", "ja")
    assert spoken_units("A red fox, 一只狐狸") == 7


def test_short_narration_keeps_the_requested_duration_and_pads():
    timing = time_narration([1, 1, 2], [[("a", 1.0)], [], [("b", 2.0), ("c", 1.5)]], requested_s=20, fps=24)
    assert timing.total_frames == 480 and not timing.stretched and timing.warnings == []
    assert timing.scene_frames[2] > timing.scene_frames[0]  # weights still share the time
    assert timing.phrases[0].start_s == pytest.approx(SCENE_LEAD_S)
    third = timing.scene_start_s(2)
    assert timing.phrases[1].start_s == pytest.approx(third + SCENE_LEAD_S, abs=1e-3)
    assert timing.phrases[2].start_s == pytest.approx(timing.phrases[1].end_s + PHRASE_GAP_S, abs=1e-3)


def test_a_scene_with_more_words_takes_time_from_the_others():
    need = narration_need_s([6.0])
    seconds = scene_seconds([1, 1, 1], [need, 0, 0], 12)
    assert seconds[0] == pytest.approx(need) and sum(seconds) == pytest.approx(12)
    assert seconds[1] == pytest.approx(seconds[2])


def test_narration_longer_than_the_video_stretches_it_and_says_so():
    timing = time_narration([1, 1], [[("long", 8.0)], [("longer", 9.0)]], requested_s=10, fps=24)
    assert timing.stretched and timing.total_s >= 8 + 9 + 2 * (SCENE_LEAD_S + SCENE_TAIL_S) - 1e-9
    assert "stretched" in timing.warnings[0] and "--duration 19" in timing.warnings[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0.2, 6.0), max_size=4), min_size=1, max_size=8),
       st.floats(5, 120), st.sampled_from([12, 24, 30]))
def test_no_phrase_is_cut_by_a_scene_boundary_and_cues_stay_in_their_scene(durations, requested, fps):
    phrases = [[(f"s{i}p{j}", d) for j, d in enumerate(scene)] for i, scene in enumerate(durations)]
    timing = time_narration([1.0] * len(phrases), phrases, requested, fps)
    assert timing.total_frames >= round(requested * fps)
    for phrase in timing.phrases:
        assert timing.scene_start_s(phrase.scene) <= phrase.start_s
        assert phrase.end_s + SCENE_TAIL_S <= timing.scene_end_s(phrase.scene) + 1e-6
    cues = timing.cues()
    assert len(cues) == len(timing.phrases)
    for cue, phrase, nxt in zip(cues, timing.phrases, [*cues[1:], None]):
        assert cue.start_s == pytest.approx(phrase.start_s, abs=1e-3)
        assert cue.end_s <= timing.scene_end_s(phrase.scene) + 1e-3
        assert nxt is None or cue.end_s <= nxt.start_s + 1e-3


@pytest.mark.parametrize("rule", [DurationRule(), DurationRule(allowed=(4.0, 6.0, 8.0)), DurationRule(allowed=(5.0, 10.0))])
def test_the_segmenter_cuts_segments_inside_exact_scene_lengths(rule):
    spec = RenderSpec(prompt="p", duration_s=40, resolution="360p")
    scene_frames = [100, 301, 250, 309]
    jobs = segment_storyboard(_board(4), spec, rule, scene_frames=scene_frames)
    for scene, frames in enumerate(scene_frames):
        mine = [j for j in jobs if j.scene_index == scene]
        assert sum(j.frames for j in mine) == frames  # exact, not snapped to whole segments
        assert mine[0].start_frame == sum(scene_frames[:scene])
    assert sum(j.frames for j in jobs) == sum(scene_frames)
    assert all(j.generate_duration_s * spec.fps >= j.frames + j.tail_frames - 1e-6 for j in jobs)
    assert all(rule.allowed is None or j.generate_duration_s in rule.allowed for j in jobs)


def test_scene_lengths_must_match_the_scenes():
    with pytest.raises(ValueError, match="3 scenes"):
        segment_storyboard(_board(3), RenderSpec(prompt="p", duration_s=10), scene_frames=[120, 120])
