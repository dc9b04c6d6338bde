"""Labelled clips with known drifts, made with the preview renderer and numpy: the judge's
tests and bench/bench_drift.py score them against clean controls.

Each maker takes the segment job that was asked for and returns the RGB frames it
contributes (job.frames of them), drifted one known way:

clean         what the preview renderer makes for the job
flicker       every other frame 20% darker (an exposure pump)
shake         every other frame displaced by 8% of the height (a shaking camera)
cut           the second half is another scene (a hard cut inside the segment)
palette       rendered with another colour palette
lighting      rendered at night
subject_swap  the subject replaced by another shape painted in its own colours, on the
              same background (what a scorer of colours and layout cannot see)
cut_to_black, cut_to_white, low_contrast_cut
              (`HARD_CUTS`, with `cut`) the second half black, white, or another scene at a
              tenth of its contrast: cuts that a one-way tone check took for a change of light
gradual       `gradual_drift(jobs)`: six segments of one scene whose palette moves a sixth
              of the way to another palette per segment

Clean controls beyond the preview renderer's own clips (they must pass):
textured_pan  a steady 3 px/frame pan over fine (2 px) random texture: what aliasing
              thumbnails mistake for flicker
lights_on     the clean clip whose second half is 40% brighter (lights switching on): a
              change of brightness, not a cut
flash         three frames in the middle 60% brighter (a lightning flash or a photographer's
              flash): two changes of brightness, no cut

Frames are tiny on purpose (tests use 128x72): the metrics work on thumbnails anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..media.encoding import encode_mp4
from ..providers.preview import render_frames
from ..spec import Lighting, SegmentJob

DRIFT_PALETTE = ["#e63946", "#f4a261", "#2a9d8f", "#264653"]


def frames_of(job: SegmentJob, conditioning_png: bytes | None = None) -> list[np.ndarray]:
    return list(render_frames(job, conditioning_png, frame_count=job.frames))


def with_scene(job: SegmentJob, **changes) -> SegmentJob:
    return job.model_copy(update={"scene": job.scene.model_copy(update=changes)})


def clean(job: SegmentJob) -> list[np.ndarray]:
    return frames_of(job)


def flicker(job: SegmentJob) -> list[np.ndarray]:
    return [(f * 0.8).astype(np.uint8) if i % 2 else f for i, f in enumerate(frames_of(job))]


def shake(job: SegmentJob) -> list[np.ndarray]:
    step = max(1, round(0.08 * job.height))
    return [np.roll(f, step, axis=0) if i % 2 else f for i, f in enumerate(frames_of(job))]


def cut(job: SegmentJob, other: SegmentJob | None = None) -> list[np.ndarray]:
    """The first half of `job`, then `other` (default: the same job in another world)."""
    if other is None:
        other = with_scene(job, color_palette=DRIFT_PALETTE, lighting=Lighting.NIGHT, camera_movement="tilt_up")
    frames, later = frames_of(job), frames_of(other.model_copy(update={"frames": job.frames}))
    half = len(frames) // 2
    return frames[:half] + later[half : len(frames)]


def _second_half(job: SegmentJob, later: list[np.ndarray]) -> list[np.ndarray]:
    frames = frames_of(job)
    half = len(frames) // 2
    return frames[:half] + later[half : len(frames)]


def cut_to_black(job: SegmentJob) -> list[np.ndarray]:
    return _second_half(job, [np.zeros((job.height, job.width, 3), np.uint8)] * job.frames)


def cut_to_white(job: SegmentJob) -> list[np.ndarray]:
    return _second_half(job, [np.full((job.height, job.width, 3), 255, np.uint8)] * job.frames)


def low_contrast_cut(job: SegmentJob, contrast: float = 0.1) -> list[np.ndarray]:
    """A cut to another scene at `contrast` of its contrast around mid-grey (fog, a dim or
    washed-out shot)."""
    other = cut(job)
    return _second_half(job, [np.clip(118.0 + (f.astype(np.float32) - f.mean()) * contrast, 0, 255).astype(np.uint8)
                              for f in other])


def palette(job: SegmentJob) -> list[np.ndarray]:
    return frames_of(with_scene(job, color_palette=DRIFT_PALETTE))


def lighting(job: SegmentJob) -> list[np.ndarray]:
    lit = Lighting.DAY if job.scene.lighting is Lighting.NIGHT else Lighting.NIGHT
    return frames_of(with_scene(job, lighting=lit))


def subject_swap(job: SegmentJob) -> list[np.ndarray]:
    """The scene without its subject, with an upright block where the subject was, painted
    in the subject's mean colour: another subject, the same colours, the same layout."""
    if not job.scene.characters:
        raise ValueError("subject_swap needs a job whose scene has a character")
    background = frames_of(with_scene(job, characters=[]))
    out = []
    for shot, empty in zip(frames_of(job), background):
        mask = np.abs(shot.astype(np.int16) - empty.astype(np.int16)).max(axis=2) > 24
        frame = empty.copy()
        if mask.any():
            ys, xs = np.nonzero(mask)
            colour = shot[mask].mean(axis=0)
            cy, cx = int(ys.mean()), int(xs.mean())
            half_w, half_h = max(1, (ys.max() - ys.min()) // 3), max(2, (xs.max() - xs.min()) // 2)
            frame[max(0, cy - 2 * half_h) : cy + half_h // 2, max(0, cx - half_w) : cx + half_w] = colour.astype(np.uint8)
        out.append(frame)
    return out


def textured_pan(job: SegmentJob, px_per_frame: int = 3, seed: int = 0) -> list[np.ndarray]:
    """A smooth horizontal pan over 2 px random texture (under a left-to-right shading), the
    job's size: real footage's fine detail, which sampled thumbnails alias."""
    width, height, frames = job.width, job.height, job.frames
    span = width + px_per_frame * frames + 2
    texels = np.random.default_rng(seed).integers(0, 256, (height // 2 + 1, span // 2 + 1, 3)).astype(np.float32)
    texture = np.repeat(np.repeat(texels, 2, axis=0), 2, axis=1)[:height, :span]
    texture = (texture * np.linspace(0.6, 1.0, span)[None, :, None]).astype(np.uint8)
    return [np.ascontiguousarray(texture[:, k * px_per_frame : k * px_per_frame + width]) for k in range(frames)]


def lights_on(job: SegmentJob, gain: float = 1.4) -> list[np.ndarray]:
    frames = frames_of(job)
    half = len(frames) // 2
    return frames[:half] + [np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8) for f in frames[half:]]


def flash(job: SegmentJob, gain: float = 1.6, length: int = 3) -> list[np.ndarray]:
    frames = frames_of(job)
    start = len(frames) // 2
    return [np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8) if start <= i < start + length else f
            for i, f in enumerate(frames)]


CLEAN_CONTROLS: dict[str, Callable[[SegmentJob], list[np.ndarray]]] = {
    "textured_pan": textured_pan,
    "lights_on": lights_on,
    "flash": flash,
}


DRIFTS: dict[str, Callable[[SegmentJob], list[np.ndarray]]] = {
    "flicker": flicker,
    "shake": shake,
    "cut": cut,
    "palette": palette,
    "lighting": lighting,
    "subject_swap": subject_swap,
}


# Hard cuts inside a segment, for the jump detector (bench_drift's jump-only rows; the drift
# table keeps `cut` alone).
HARD_CUTS: dict[str, Callable[[SegmentJob], list[np.ndarray]]] = {
    "cut": cut,
    "cut_to_black": cut_to_black,
    "cut_to_white": cut_to_white,
    "low_contrast_cut": low_contrast_cut,
}


def blend_palette(start: list[str], end: list[str], weight: float) -> list[str]:
    """Hex colours `weight` of the way from `start` to `end`."""
    out = []
    for a, b in zip(start, end):
        ca = np.array([int(a[i : i + 2], 16) for i in (1, 3, 5)], np.float32)
        cb = np.array([int(b[i : i + 2], 16) for i in (1, 3, 5)], np.float32)
        c = np.clip(np.round(ca + (cb - ca) * weight), 0, 255).astype(int)
        out.append("#" + "".join(f"{v:02x}" for v in c))
    return out


def gradual_drift(jobs: list[SegmentJob], end_palette: list[str] = DRIFT_PALETTE) -> list[list[np.ndarray]]:
    """The frames of each job, job k's palette k/(len-1) of the way to `end_palette`: every
    step small, the whole walk large."""
    steps = max(1, len(jobs) - 1)
    return [frames_of(with_scene(job, color_palette=blend_palette(job.scene.color_palette, end_palette, k / steps)))
            for k, job in enumerate(jobs)]


def mp4(job: SegmentJob, frames: list[np.ndarray]) -> bytes:
    """The frames as the segment's MP4 (what a provider would return)."""
    return encode_mp4(frames, job.fps, frames[0].shape[1], frames[0].shape[0])


def tiny_jobs(prompt: str = "a red fox explores a snowy forest at dawn", duration_s: float = 12, segments_per_scene: int | None = None,
              width: int = 128, height: int = 72, fps: int = 12, scenes: int = 2) -> list[SegmentJob]:
    """Planned segment jobs shrunk to `width` x `height` at `fps` (cheap to render and judge)."""
    from ..planning import OfflinePlanner, segment_storyboard
    from ..providers.preview import PREVIEW_CAPABILITIES
    from ..spec import RenderSpec

    spec = RenderSpec(prompt=prompt, duration_s=duration_s, resolution="360p", fps=fps)
    jobs = segment_storyboard(OfflinePlanner().plan(spec, scenes), spec, PREVIEW_CAPABILITIES.durations)
    return [j.model_copy(update={"width": width, "height": height}) for j in jobs]
