"""What each open-weights video model is, as data: its pipeline, the frame counts and sizes
it makes, its native frame rate, default steps and precision, and what GPU memory it needs.

VRAM figures are the authors' or diffusers' PUBLISHED numbers (marked `published`, with
where they come from), not measured here; `vram_gb` scales the nearest one to a clip's
pixels × frames, an estimate until a GPU run measures it (bench/gpu_check.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...planning.segmentation import DurationRule

PRECISIONS = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class VramFigure:
    width: int
    height: int
    frames: int
    precision: str
    gb: float
    offload: bool  # with CPU offload (parts of the model leave the GPU between uses)
    source: str  # "published: <where>"


@dataclass(frozen=True)
class ModelProfile:
    key: str  # what --local-model / LONGVID_LOCAL_MODEL names
    family: str  # "ltx" or "wan": how the pipeline is called
    repo_id: str  # the Hugging Face repository with diffusers-format weights
    pipeline_class: str  # the diffusers class that loads and runs it
    frame_step: int  # frame counts are k * frame_step + 1
    size_multiple: int  # width and height are multiples of this
    native_fps: int
    max_frames: int  # the longest clip made in one pass
    default_steps: int
    precision: str  # on a GPU; the CPU always runs fp32
    conditioning_frames: int  # how many of the previous segment's last frames it takes (1: a first-frame image)
    vram: tuple[VramFigure, ...]
    # Planning figure for the cost estimate (reserved before a segment runs), not a
    # benchmark: GPU seconds per second of video at 720p on an L4-class GPU.
    gpu_seconds_per_video_second: float
    notes: str = ""
    # Host memory the worker asks Ray for beside the GPU (a planning figure, not measured):
    # the process, CUDA's context and what CPU offload keeps off the GPU between uses.
    host_memory_gb: float = 8.0

    def frames_for(self, needed: int) -> int:
        """The fewest frames the model makes that are at least `needed`."""
        return math.ceil(max(needed - 1, 0) / self.frame_step) * self.frame_step + 1

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The frame size the model generates for a `width`×`height` video: each side rounded
        up to its multiple (the clip is then scaled to the video's size)."""
        m = self.size_multiple
        return math.ceil(width / m) * m, math.ceil(height / m) * m

    def durations(self) -> DurationRule:
        """The lengths it makes, for the segmenter (at its native rate; the segmenter snaps
        frame counts to the frame rule at the video's rate)."""
        return DurationRule(min_s=self.frames_for(self.native_fps) / self.native_fps,
                            max_s=self.max_frames / self.native_fps, frame_step=self.frame_step)

    @property
    def lead_frames(self) -> int:
        """Frames a chained segment makes before its own (LTX regenerates its conditioning frames)."""
        return self.conditioning_frames - 1 if self.family == "ltx" else 0

    def vram_gb(self, width: int, height: int, frames: int, precision: str, offload: bool = True) -> float:
        """Estimated GPU memory for one clip: the nearest published figure scaled by
        pixels × frames (activations grow with them; never below half the figure, which is
        mostly weights) and by bytes per weight. An estimate, not a measurement."""
        figures = [f for f in self.vram if f.offload == offload] or list(self.vram)
        nearest = min(figures, key=lambda f: (abs(f.height - min(width, height)), abs(f.frames - frames)))
        scale = (width * height * frames) / (nearest.width * nearest.height * nearest.frames)
        width_of = {"bf16": 2, "fp16": 2, "fp32": 4}
        return round(max(0.5, scale) * nearest.gb * width_of[precision] / width_of[nearest.precision], 1)


LTX_VIDEO = ModelProfile(
    key="ltx-video",
    family="ltx",
    repo_id="Lightricks/LTX-Video-0.9.5",
    pipeline_class="LTXConditionPipeline",
    frame_step=8,
    size_multiple=32,
    native_fps=24,
    max_frames=161,  # diffusers' default num_frames for this pipeline (~6.7 s at 24 fps)
    default_steps=40,
    precision="bf16",
    conditioning_frames=9,  # a 9-frame video condition: one 8k+1 latent chunk of the previous segment's tail
    vram=(
        VramFigure(768, 512, 161, "bf16", 10.0, True,
                   "published: diffusers' LTX-Video docs, ~10 GB with group offload (at their example's 768x512, 161 frames)"),
    ),
    gpu_seconds_per_video_second=20.0,
    notes="2B parameters; conditions on video frames at any frame index",
)

WAN_TI2V_5B = ModelProfile(
    key="wan2.2-ti2v-5b",
    family="wan",
    repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    pipeline_class="WanImageToVideoPipeline",
    frame_step=4,
    size_multiple=16,  # Wan 2.2's VAE compresses 16x; diffusers' check_inputs wants multiples of 16
    native_fps=24,
    max_frames=121,
    default_steps=50,
    precision="bf16",
    conditioning_frames=1,  # the first frame (and optionally the last)
    vram=(
        VramFigure(1280, 704, 121, "bf16", 24.0, True, "published: Wan 2.2 card, TI2V-5B makes 720p on a 24 GB GPU (RTX 4090) with offload"),
    ),
    gpu_seconds_per_video_second=110.0,  # the card: 5 s of 720p in under 9 minutes on one consumer GPU
    notes="text+image to video at 720p, 24 fps",
    host_memory_gb=12.0,
)

PROFILES: dict[str, ModelProfile] = {p.key: p for p in (LTX_VIDEO, WAN_TI2V_5B)}
DEFAULT_MODEL = LTX_VIDEO.key


def profile_named(key: str) -> ModelProfile:
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown local model {key!r}; choose one of: {', '.join(sorted(PROFILES))}") from None
