"""Keyframe sampling and seam frames, decoded with PyAV from real H.264 clips."""

import numpy as np
import pytest

from longvid.consistency import count_frames, decode_frames, head_frames, keyframe_indices, sample_keyframes, tail_frames
from media_helpers import write_clip


def numbered_frames(count, width=64, height=48):
    # Frame k is a flat grey of value 4k + 20: decodable back to k despite compression.
    return [np.full((height, width, 3), 20 + 4 * k, np.uint8) for k in range(count)]


def frame_number(frame):
    return int(round((float(frame.mean()) - 20) / 4))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("kf") / "numbered.mp4", numbered_frames(48), fps=24)


def test_indices_cover_both_ends_at_the_density():
    assert keyframe_indices(0, 119, 0.5, 24) == [0, 40, 79, 119]  # 5 s at 0.5/s: 3.5 gaps -> 4 frames
    assert keyframe_indices(0, 239, 0.5, 24)[0] == 0 and keyframe_indices(0, 239, 0.5, 24)[-1] == 239
    assert len(keyframe_indices(0, 239, 0.5, 24)) == 6  # 10 s: every 2 s
    assert keyframe_indices(0, 10, 0.5, 24) == [0, 10]  # short: at least first and last
    assert keyframe_indices(0, 2, 100.0, 24) == [0, 1, 2]  # never more than the frames there are
    assert keyframe_indices(5, 5) == [5]
    with pytest.raises(ValueError):
        keyframe_indices(10, 5)


def test_sample_keyframes_decodes_the_right_frames(clip):
    picked = sample_keyframes(clip, density_per_s=1.0, fps=24, first=0, last=39)
    assert [i for i, _ in picked] == keyframe_indices(0, 39, 1.0, 24)
    assert all(frame_number(f) == i for i, f in picked)
    assert picked[0][1].shape == (48, 64, 3) and picked[0][1].dtype == np.uint8


def test_sample_keyframes_defaults_to_the_whole_video_and_reads_bytes(clip):
    assert count_frames(clip) == 48
    picked = sample_keyframes(clip.read_bytes())
    assert picked[0][0] == 0 and picked[-1][0] == 47


def test_head_and_tail_frames(clip):
    assert [frame_number(f) for f in head_frames(clip, 3)] == [0, 1, 2]
    assert [frame_number(f) for f in tail_frames(clip, end_index=40, count=3)] == [37, 38, 39]
    assert [frame_number(f) for f in tail_frames(clip, end_index=2, count=3)] == [0, 1]


def test_indices_past_the_end_are_absent(clip):
    got = decode_frames(clip, [46, 47, 48, 100])
    assert sorted(got) == [46, 47]
