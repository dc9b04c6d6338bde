"""One segment through a loaded pipeline: the call each model family takes, the frames it
returns trimmed and scaled to the segment, encoded in the house format.

A chained segment continues from the previous segment's last frames. LTX-Video takes them
as a video condition at frame 0, so the clip's first frames reproduce them; those leading
frames (all but the seam frame itself) are then dropped, so the segment's frame 0 is the
seam frame, exactly as with a one-image provider. Wan takes one first-frame image.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from ...media.encoding import encode_mp4
from ...spec import SegmentJob
from ..base import conditioning_pngs
from .profiles import ModelProfile


@dataclass(frozen=True)
class GenerationPlan:
    """What to ask the model for, for one segment."""

    width: int
    height: int
    num_frames: int  # what the model makes (its frame rule)
    lead_frames: int  # leading frames that reproduce the conditioning and are dropped
    keep_frames: int  # frames the segment encodes


def plan_generation(job: SegmentJob, profile: ModelProfile, given_frames: int, generate_height: int | None = None) -> GenerationPlan:
    """Pure: sizes and frame counts for `job` when `given_frames` conditioning frames come with it."""
    keep = int(round(job.generate_duration_s * job.fps))
    lead = max(given_frames - 1, 0) if profile.family == "ltx" else 0
    height = min(generate_height or job.height, job.height)
    width = job.width * height / job.height
    width, height = profile.size_for(math.ceil(width), height)
    return GenerationPlan(width=width, height=height, num_frames=profile.frames_for(keep + lead), lead_frames=lead, keep_frames=keep)


def usable_conditioning(frames: tuple[bytes, ...], profile: ModelProfile) -> tuple[bytes, ...]:
    """The newest frames the model conditions on: at most its count, and for LTX a count it
    keeps whole (k * frame_step + 1; the pipeline trims a video condition to that, and the
    leading frames dropped afterwards must match what it kept)."""
    frames = frames[-profile.conditioning_frames:]
    if profile.family == "ltx" and frames:
        frames = frames[-((len(frames) - 1) // profile.frame_step * profile.frame_step + 1):]
    return frames


def png_images(frames: tuple[bytes, ...]):
    from PIL import Image

    return [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]


def pipeline_arguments(job: SegmentJob, profile: ModelProfile, plan: GenerationPlan, images: list, steps: int, generator) -> dict:
    """The keyword arguments of the pipeline call for this model family."""
    images = [image.resize((plan.width, plan.height)) for image in images]
    common = dict(prompt=job.prompt, height=plan.height, width=plan.width, num_frames=plan.num_frames,
                  num_inference_steps=steps, generator=generator, output_type="np")
    if profile.family == "ltx":
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        conditions = [LTXVideoCondition(video=images, frame_index=0)] if len(images) > 1 else (
            [LTXVideoCondition(image=images[0], frame_index=0)] if images else None)
        return {**common, "conditions": conditions, "frame_rate": job.fps}
    if profile.family == "wan":
        if not images:  # image-to-video needs a first frame: a scene opener without one starts from grey
            from PIL import Image

            images = [Image.new("RGB", (plan.width, plan.height), (128, 128, 128))]
        return {**common, "image": images[-1]}
    raise ValueError(f"unknown model family {profile.family!r}")


def run_segment(pipe, job: SegmentJob, profile: ModelProfile, conditioning: bytes | None, steps: int,
                generate_height: int | None, device: str) -> tuple[bytes, list[np.ndarray]]:
    """(the segment's MP4 in the house format, the conditioning frames the pipeline got as RGB arrays)."""
    import torch

    given = usable_conditioning(conditioning_pngs(conditioning), profile)
    plan = plan_generation(job, profile, len(given), generate_height)
    images = png_images(given)
    generator = torch.Generator(device="cpu").manual_seed(job.seed)
    arguments = pipeline_arguments(job, profile, plan, images, steps, generator)
    with torch.inference_mode():
        video = pipe(**arguments).frames[0]  # (frames, height, width, 3), floats in [0, 1]
    frames = video[plan.lead_frames: plan.lead_frames + plan.keep_frames]
    if len(frames) < plan.keep_frames:
        raise RuntimeError(f"{profile.key} made {len(video)} frames, {plan.lead_frames + plan.keep_frames} were needed")
    rgb = (np.clip(np.asarray(frames), 0, 1) * 255 + 0.5).astype(np.uint8)
    # IDR frames where the merge's copy ranges start and end, as the preview renderer does.
    mp4 = encode_mp4(_scaled(rgb, job.width, job.height), job.fps, job.width, job.height,
                     keyframes={job.head_frames, job.frames})
    seen = [np.asarray(image) for image in images]
    return mp4, seen


def _scaled(frames: np.ndarray, width: int, height: int):
    from PIL import Image

    for frame in frames:
        if frame.shape[1] == width and frame.shape[0] == height:
            yield frame
        else:
            yield np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))
