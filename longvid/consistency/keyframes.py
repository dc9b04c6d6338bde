"""Frames for judging, decoded with PyAV in one forward pass.

`sample_keyframes` picks frames at the storyboard's keyframe density (0.5/s by default:
one every two seconds) over a segment's contributed range [first, last], always including
both ends, so even a 1 s segment is judged on two frames. `head_frames` / `tail_frames`
give the frames on either side of a seam. `decode_frames` (media/frames.py) serves them all
from one decode.

A segment renders `frames + tail_frames` frames; the frames it contributes to the timeline
are [0, job.frames), so a seam is judged on tail_frames(prev, end_index=prev_job.frames)
against head_frames(this).
"""

from __future__ import annotations

import math

import numpy as np

# Decoding lives in media/frames; count_frames and decode_frames are part of this package's API.
from ..media.frames import Source, count_frames, decode_frames  # noqa: F401


def keyframe_indices(first: int, last: int, density_per_s: float = 0.5, fps: float = 24) -> list[int]:
    """Evenly spaced indices over [first, last] at `density_per_s`, both ends included."""
    if last < first:
        raise ValueError(f"last frame {last} is before first frame {first}")
    if last == first:
        return [first]
    span_s = (last - first) / fps
    count = max(2, math.ceil(span_s * max(density_per_s, 0.0) - 1e-9) + 1)
    count = min(count, last - first + 1)
    return sorted({int(round(x)) for x in np.linspace(first, last, count)})


def sample_keyframes(
    source: Source,
    density_per_s: float = 0.5,
    fps: float = 24,
    first: int = 0,
    last: int | None = None,
) -> list[tuple[int, np.ndarray]]:
    """[(frame index, RGB frame)] at the keyframe density over [first, last] (last defaults
    to the video's last frame; pass job.frames - 1 to judge only what a segment contributes)."""
    if last is None:
        last = count_frames(source) - 1
        if last < 0:
            return []
    indices = keyframe_indices(first, last, density_per_s, fps)
    frames = decode_frames(source, indices)
    if not frames:
        raise ValueError(f"the video has no frame in [{first}, {last}]")
    return [(i, frames[i]) for i in indices if i in frames]


def head_frames(source: Source, count: int = 3) -> list[np.ndarray]:
    """The first `count` frames."""
    frames = decode_frames(source, range(count))
    return [frames[i] for i in sorted(frames)]


def tail_frames(source: Source, end_index: int, count: int = 3) -> list[np.ndarray]:
    """The `count` frames before `end_index` (exclusive): [end_index - count, end_index)."""
    frames = decode_frames(source, range(max(0, end_index - count), end_index))
    return [frames[i] for i in sorted(frames)]
