"""Narrated scene lengths planned around the segmenter: the words never cost extra paid
segments when the design's count can hold them."""

from longvid.planning.segmentation import DurationRule, segment_fit
from longvid.sound.timing import fitted_scene_seconds, time_narration

RUNWAY = DurationRule(min_s=5, max_s=10, allowed=(5.0, 10.0))


def test_a_45_s_runway_video_keeps_the_designs_six_segments():
    fit = segment_fit(RUNWAY, 24, 45)
    seconds = fitted_scene_seconds([1, 1, 1, 1], [8.0, 6.5, 7.2, 7.9], 45, fit)
    assert abs(sum(seconds) - 45) < 1e-6
    assert all(s >= need for s, need in zip(seconds, [8.0, 6.5, 7.2, 7.9]))
    segments = sum(-(-s // fit.capacity_s) for s in seconds)  # what the segmenter's ceil gives
    assert segments == 6


def test_scenes_stay_even_when_the_segments_allow_it():
    fit = segment_fit(DurationRule(min_s=1, max_s=20), 24, 45)
    assert [round(s, 6) for s in fitted_scene_seconds([1, 1, 1, 1], [8.0, 6.5, 7.2, 7.9], 45, fit)] == [11.25] * 4


def test_timing_with_a_fit_places_every_phrase_inside_its_scene():
    phrases = [[("a", 3.0), ("b", 4.0)], [("c", 2.0)], [("d", 5.5)], [("e", 6.0)]]
    timing = time_narration([1, 1, 1, 1], phrases, 45, 24, segment_fit(RUNWAY, 24, 45))
    assert timing.total_frames == 45 * 24 and not timing.warnings
    for p in timing.phrases:
        assert timing.scene_start_s(p.scene) <= p.start_s and p.end_s <= timing.scene_end_s(p.scene)
    assert sum(-(-f // 228) for f in timing.scene_frames) == 6  # 228 frames: one Runway segment less its seam
