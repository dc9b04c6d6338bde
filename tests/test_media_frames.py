"""media/frames.py: the one place frames are read out of a video, from real H.264 clips."""

import io

import numpy as np
import pytest
from PIL import Image

from longvid.media.frames import count_frames, decode_frames, first_frame_problem, frame_png
from media_helpers import write_clip


def numbered_frames(count, width=64, height=48):
    # Frame k is a flat grey of value 4k + 20: decodable back to k despite compression.
    return [np.full((height, width, 3), 20 + 4 * k, np.uint8) for k in range(count)]


def frame_number(frame):
    return int(round((float(np.asarray(frame).mean()) - 20) / 4))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("frames") / "numbered.mp4", numbered_frames(48), fps=24, keyframes=(24,))


def test_counts_from_the_header_or_by_decoding(clip):
    assert count_frames(clip) == 48
    assert count_frames(clip.read_bytes(), trust_header=False) == 48


def test_decodes_chosen_frames_full_size_or_scaled(clip):
    full = decode_frames(clip, [3, 40, 99])
    assert sorted(full) == [3, 40] and full[3].shape == (48, 64, 3)  # past the end: absent
    assert [frame_number(full[i]) for i in (3, 40)] == [3, 40]
    small = decode_frames(clip.read_bytes(), [10], size=(16, 12))
    assert small[10].shape == (12, 16, 3) and small[10].dtype == np.uint8 and frame_number(small[10]) == 10


def test_frame_png_seeks_to_the_frame_or_gives_the_last(clip):
    data = clip.read_bytes()
    for index in (0, 24, 30):
        with Image.open(io.BytesIO(frame_png(data, index))) as image:
            assert frame_number(image.convert("RGB")) == index
    with Image.open(io.BytesIO(frame_png(data, 500))) as image:
        assert frame_number(image.convert("RGB")) == 47


def test_first_frame_problem_says_why(clip):
    data = clip.read_bytes()
    assert first_frame_problem(data) is None
    assert first_frame_problem(b"<html>503</html>" * 4).startswith("does not decode (")
