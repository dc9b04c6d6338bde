"""Weight-free temporal metrics of one segment, in the VBench family: cheap numpy on small
luma thumbnails of the frames a segment contributes, taken in the same decode pass as the
judge's keyframes (so they cost a strided read of each frame's luma plane, not a second
decode).

flicker     1 - mean absolute difference of consecutive thumbnails / 255 (VBench's
            "temporal flicker" score). A flickering light or exposure pumps every pixel;
            a camera move changes only edges, which a 64x36 thumbnail mostly blurs away.
smoothness  1 - mean absolute frame-interpolation error / 255: each frame against the mean
            of its two neighbours (a weight-free stand-in for VBench's interpolation-model
            "motion smoothness"). Steady motion is well predicted by its neighbours;
            stutter, dropped or duplicated frames and strobing are not.
jump        the lowest ratio of a change between consecutive thumbnails to the larger of the
            changes just before and after it: a hard cut is one change many times its
            neighbours, while motion, a morph or steady flicker changes neighbouring frames
            alike (~1). A step that a global, monotone change of brightness explains both ways
            (lights switching on, a flash, an exposure jump: `tone_matched_change` is small
            from each frame to the other) is not a cut; a cut to black, to white or to a flat,
            low-contrast shot is explained one way only (any picture maps onto a flat one).
            `jump_at` is the frame after that change. Absolute thresholds would not do here: a
            procedural preview moves a few hundredths of a grey level per frame, real footage
            tens.

Scores are higher-is-better in [0, 1]; the thresholds live in config.TemporalThresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media.frames import Source, open_video

DEFAULT_THUMB_SIZE = (64, 36)
# Mean absolute difference (0..255) below which consecutive thumbnails count as still: an
# H.264 encode of a still shot wobbles by ~0.01-0.1.
JUMP_DIFF_FLOOR = 0.05
# A change smaller than this (mean absolute grey levels on the thumbnail) is never a cut,
# however still its neighbours: a dark preview scene moves ~0.03 a frame and steps by ~0.1
# now and then (a ratio that read as a cut), while a cut to another shot changes tens.
JUMP_MIN_CHANGE = 2.0
# A cut must survive the best global tone mapping (tone_matched_change): lights switching on, a
# flash or an exposure jump remap every pixel's brightness monotonically and leave ~0.6-2.5 grey
# levels on a 64x36 preview thumbnail (1.2-1.5x the neighbouring frames' change), while a cut
# to another shot leaves 5.7-16 (4.3-7.9x). A step is a cut only if what is left is at least
# TONE_MIN_CHANGE and TONE_RATIO times the change around it (drift_clips' flash and lights_on
# clips against its cuts, 128x72 and 256x144; bench/bench_drift.py).
TONE_MIN_CHANGE = 3.0
TONE_RATIO = 3.0
# The same check the other way (the later frame remapped onto the earlier one's histogram): a
# monotone map of any picture onto a flat one fits, so a cut to black, to white or to a flat,
# low-contrast shot leaves ~0 one way; the other way it leaves 74-80 grey levels (black or
# white) and 11-22 (a shot at a tenth of the contrast), a cut to another shot 11-18, while
# lights switching on and a flash leave 0.8-2.9 (the brightened frame's clipped highlights tie
# and are not restored exactly). drift_clips' HARD_CUTS and changes of light, 128x72 and 256x144.
TONE_REVERSE_MIN_CHANGE = 4.0
# Steps whose plain ratio is under this are checked for a tone change (a cut scores ~0.01-0.07).
TONE_CHECK_BELOW = 0.5


@dataclass(frozen=True)
class TemporalMetrics:
    flicker: float | None
    smoothness: float | None
    jump: float | None
    jump_at: int | None = None  # the first frame after the least-correlated pair


def luma_thumbnail(frame, thumb_size: tuple[int, int]) -> np.ndarray:
    """A small float32 luma picture of a decoded PyAV frame, about `thumb_size` (w, h).

    For YUV frames it is read straight from the luma plane: the mean of each k x k block
    (k = width // thumb width), ~0.3 ms a 720p frame, where swscale's area filter costs ~2 ms
    and doubled the judge's time. A true block mean, not a sample: sampling a few pixels of
    each block aliases fine texture, and a smooth 3 px/frame pan over it then reads as
    flicker (0.87 sampled vs 0.995 averaged on a 720p libx264 pan)."""
    name = frame.format.name
    if name.startswith(("yuv", "yuvj", "nv", "gray")) and not name.startswith(("yuva", "gray16")) and "p10" not in name:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        return block_mean(luma, max(1, min(plane.width // thumb_size[0], plane.height // thumb_size[1])))
    small = frame.reformat(width=thumb_size[0], height=thumb_size[1], format="gray", interpolation="AREA")
    return small.to_ndarray()[:, : thumb_size[0]].astype(np.float32)  # rows may carry padding


def block_mean(luma: np.ndarray, k: int) -> np.ndarray:
    """The mean of each k x k block of a uint8 picture (the edge rows and columns that do
    not fill a block are left out), as float32. Rows are summed first in uint16 (exact up to
    k = 257), which is ~5x faster than a float mean over both block axes."""
    if k == 1:
        return luma.astype(np.float32)
    th, tw = luma.shape[0] // k, luma.shape[1] // k
    rows = luma[: th * k, : tw * k].reshape(th, k, tw * k).sum(axis=1, dtype=np.uint16 if k <= 257 else np.uint32)
    return rows.reshape(th, tw, k).sum(axis=2, dtype=np.uint32).astype(np.float32) * np.float32(1.0 / (k * k))


def decode_for_judging(
    source: Source, indices: set[int] | list[int], last: int, thumb_size: tuple[int, int] | None = DEFAULT_THUMB_SIZE,
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """({index: RGB frame} for `indices}, (N, h, w) float32 grayscale thumbnails of frames
    0..last) in one decode pass. With thumb_size None no thumbnails are made."""
    wanted = {int(i) for i in indices if int(i) >= 0}
    stop = max([*wanted, last if thumb_size else -1])
    found: dict[int, np.ndarray] = {}
    thumbs: list[np.ndarray] = []
    if stop < 0:
        return found, np.zeros((0, 0, 0), np.float32)
    with open_video(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            if thumb_size and index <= last:
                thumbs.append(luma_thumbnail(frame, thumb_size))
            if index >= stop:
                break
    stacked = np.stack(thumbs) if thumbs else np.zeros((0, 0, 0), np.float32)
    return found, stacked


def tone_matched_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference between `b` and `a` remapped by the monotone brightness map
    that gives `a` the histogram of `b` (histogram matching: each pixel of `a` takes the value of
    the same rank in `b`). What a global change of light cannot explain: ~0 for lights switching
    on, a flash or an exposure jump (clipping included), large where the structure changed."""
    fa, fb = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    matched = np.empty_like(fa)
    matched[np.argsort(fa, kind="stable")] = np.sort(fb)
    return float(np.abs(fb - matched).mean())


def is_change_of_light(before: np.ndarray, after: np.ndarray, around: float = 0.0) -> bool:
    """Whether a global monotone tone map explains the step from `before` to `after` both ways
    (what is left under TONE_MIN_CHANGE / TONE_REVERSE_MIN_CHANGE grey levels, or TONE_RATIO
    times `around`, the neighbouring frames' change). One way is not enough: every picture maps
    onto a black, white or flat frame, so a cut to one would pass as a change of light."""
    forward = tone_matched_change(before, after) < max(TONE_MIN_CHANGE, TONE_RATIO * around)
    return forward and tone_matched_change(after, before) < max(TONE_REVERSE_MIN_CHANGE, TONE_RATIO * around)


def temporal_metrics(thumbs: np.ndarray) -> TemporalMetrics:
    """Flicker, smoothness and jump of consecutive grayscale frames (N, h, w), 0..255."""
    thumbs = np.asarray(thumbs, np.float32)
    if thumbs.ndim != 3 or len(thumbs) < 2:
        return TemporalMetrics(None, None, None)
    diffs = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))
    flicker = 1.0 - float(diffs.mean()) / 255.0
    smoothness = None
    if len(thumbs) >= 3:
        predicted = (thumbs[:-2] + thumbs[2:]) * 0.5
        smoothness = 1.0 - float(np.abs(thumbs[1:-1] - predicted).mean()) / 255.0
    # A cut is one change far larger than the changes on either side of it (a morph or a
    # fast move changes many frames in a row alike); the neighbours have a floor so a nearly
    # still shot's tiny wobble does not turn noise into a "cut".
    padded = np.concatenate([[0.0], diffs, [0.0]])
    around = np.maximum(np.maximum(padded[:-2], padded[2:]), JUMP_DIFF_FLOOR)
    ratios = np.where(diffs >= JUMP_MIN_CHANGE, around / np.maximum(diffs, 1e-9), 1.0)
    # A change of light is one big change too: a step that a global tone map explains, from
    # each frame to the other, is no cut (scored 1, like a step under JUMP_MIN_CHANGE; flicker
    # and smoothness still see it).
    for k in np.flatnonzero(ratios < TONE_CHECK_BELOW):
        if is_change_of_light(thumbs[k], thumbs[k + 1], float(around[k])):
            ratios[k] = 1.0
    worst = int(np.argmin(ratios))
    jump = float(ratios[worst])
    return TemporalMetrics(
        flicker=round(flicker, 4),
        smoothness=None if smoothness is None else round(smoothness, 4),
        jump=round(float(np.clip(jump, 0.0, 1.0)), 4),
        jump_at=worst + 1,
    )
