"""Settings of the consistency judge.

Similarities are on different scales for the two backends (a CLIP cosine between two
frames of one shot is ~0.9; the structural scorer's mix of thumbnail correlation and
colour-histogram overlap has its own range), so each backend has its own thresholds.
`JudgeConfig.thresholds_for(backend)` picks the ones in force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["auto", "clip", "structural"]
Device = Literal["auto", "cpu", "cuda"]


class Thresholds(BaseModel):
    """Lowest acceptable score for each check; a check whose score is None is skipped.

    anchor: the segment's keyframes against the video's anchors (first accepted frame,
        reference images; each keyframe is matched to its closest anchor).
    seam: the previous segment's last frames against this segment's first frames (only
        for seams inside a scene).
    prompt: CLIP text-image similarity of the keyframes to the segment's prompt (CLIP only).
    character: the keyframes against each character's remembered appearances.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    anchor: float = Field(ge=-1.0, le=1.0)
    seam: float = Field(ge=-1.0, le=1.0)
    prompt: float | None = Field(default=None, ge=-1.0, le=1.0)
    character: float = Field(ge=-1.0, le=1.0)
    drift: float | None = Field(default=None, ge=-1.0, le=1.0)
    """long-range drift (longrange.py): the keyframes' mean similarity to each of the scene's
    anchors `drift_lookback`+ segments back and to the characters' first appearances."""


# CLIP ViT-B-32 (laion2b) image-image cosines: frames of one shot score ~0.85-0.97,
# unrelated scenes ~0.4-0.6; text-image cosines for a matching caption ~0.25-0.35 and
# ~0.10-0.18 for an unrelated one. These are published typical ranges (CLIPScore, VBench
# "background consistency"), NOT measured in this repository (no weights offline): treat
# them as starting points and re-tune on real renders (bench/bench_consistency.py prints
# the distributions when real weights are present).
CLIP_THRESHOLDS = Thresholds(anchor=0.70, seam=0.80, prompt=0.20, character=0.65, drift=0.70)

# Structural scorer, tuned on preview renders (`python bench/bench_consistency.py
# --calibrate`: 4 prompts, 20-60 s; 21 clean segments, 35 rendered with a wrong palette or
# lighting, 13 with only another subject; anchors = the scene's first frame + the video's
# first frame; drifted clips judged against the job that was asked for):
#   clean segments      anchor 0.876..0.998   seam 0.999..1.000   (lowest: a 20 s pan)
#   drifted segments    anchor 0.251..0.692   seam 0.260..0.692   (palette, lighting)
# anchor 0.75 leaves 0.13 below the lowest clean score and 0.06 above the mildest drift
# (a desert palette on a desert scene), erring toward fewer false alarms, which cost a
# paid regeneration; seam 0.85 sits mid-gap (0.15 each side). A drift in a small subject
# alone (another character, same palette) scores like a clean segment (0.87..0.99): the
# structural scorer cannot see it; that takes CLIP. character uses the anchor scale, a
# little lower because appearances come from other scenes and reference photos.
# drift is a mean over keyframes (anchor takes the worst one) against several older anchors:
# clean previews score 0.93-0.99 against anchors 2-5 segments back in one scene; 0.80.
STRUCTURAL_THRESHOLDS = Thresholds(anchor=0.75, seam=0.85, prompt=None, character=0.70, drift=0.80)


class TemporalThresholds(BaseModel):
    """Lowest acceptable weight-free temporal scores of one segment (consistency/temporal.py).

    flicker: 1 - mean absolute frame difference / 255 (VBench). Measured on block-mean
        64x36 thumbnails (bench/bench_drift.py --temporal-calibration prints the table):
        clean previews >= 0.999 at 360p and 720p; a steady pan over fine texture (libx264)
        0.995 at 720p / 0.985 at 360p at 3 px a frame, 0.992 / 0.977 at 6 px a frame; a 20%
        exposure pump 0.88-0.89 on day scenes, 0.971 on night ones. 0.975 catches the night
        pump and passes a pan of 6 px a frame at 360p (12 at 720p); faster pans over fine
        texture are real change and may fail.
    smoothness: 1 - mean frame-interpolation error / 255. Clean previews >= 0.9997, textured
        pans 0.997 / 0.990 (3 px, 720p / 360p) and 0.994 / 0.982 (6 px); a shaking camera
        (every other frame displaced by 8% of the height) 0.92-0.93, 0.973 at night; one cut
        inside a short tiny clip ~0.98, left to `jump`. 0.975, like flicker.
    jump: a change between consecutive frames over the larger of its neighbours, inverted.
        Measured on preview renders at 360p (3 prompts, 12 and 24 fps): clean 0.15-0.82 (the
        lowest where a walking subject turns round in one frame), a cut to another scene of
        the video 0.007-0.068, a 7 s jump inside one scene 0.065-0.15, a conditioning morph
        into a new world 0.25-0.80. 0.10 sits a factor ~1.5 from each side: it flags cuts,
        some jumps inside a scene, not morphs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    flicker: float | None = Field(default=0.975, ge=0.0, le=1.0)
    smoothness: float | None = Field(default=0.975, ge=0.0, le=1.0)
    jump: float | None = Field(default=0.10, ge=0.0, le=1.0)


TEMPORAL_THRESHOLDS = TemporalThresholds()


class WeightedThresholds(BaseModel):
    """Lowest acceptable weighted VBench-family scores of one segment (consistency/weighted.py);
    a metric whose weights are absent is skipped (None), never failed.

    RECORD-ONLY by default (every threshold None): the scores are measured and written to each
    attempt's record, and never fail a segment, because no threshold has been measured on real
    weights yet and a failure costs a paid regeneration. Set one (e.g. the published values
    below, `JudgeConfig(weighted_thresholds=WeightedThresholds(subject=0.80))`) once a
    calibration on real renders backs it.

    subject: DINOv2 CLS features, each frame against the first and the previous frame
        (VBench "subject consistency", cosines clipped at 0, averaged). VBench publishes
        0.88-0.98 for whole videos of current models (DINO ViT-B/16); one 4-8 s segment of one
        shot sits at the top of that range, a subject swapped mid-segment well below it.
    background: the same formula on the judge's CLIP image features (VBench "background
        consistency"; published 0.92-0.98).
    aesthetic: the LAION aesthetic predictor's mean over the frames, divided by 10 (VBench's
        "aesthetic quality" scale: published 0.40-0.65 for current models; 0.30 is an ugly,
        broken picture by LAION's raters).
    Candidates from those published ranges, set low so that only clear failures would cost a
    regeneration: subject 0.80, background 0.85, aesthetic 0.30. NOT measured here (no real
    weights offline), so not in force.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: float | None = Field(default=None, ge=0.0, le=1.0)
    background: float | None = Field(default=None, ge=0.0, le=1.0)
    aesthetic: float | None = Field(default=None, ge=0.0, le=1.0)


WEIGHTED_THRESHOLDS = WeightedThresholds()
DEFAULT_DINOV2_MODEL = "facebook/dinov2-small"  # 22 M parameters: the cheapest DINOv2


class JudgeConfig(BaseModel):
    """How segments are judged. Frozen and picklable, so it travels to Ray actors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "auto"
    """auto: CLIP when its weights can be loaded locally, else the structural scorer (and
    the scorer's `notes` say why); clip: CLIP or a WeightsUnavailable error; structural:
    the weight-free scorer."""
    model_name: str = "ViT-B-32"
    """open_clip architecture. ViT-B-32 is the cheapest standard CLIP (~88 M params,
    ~4.4 GFLOPs per 224px image), fast enough to judge every keyframe on a CPU."""
    pretrained: str = "laion2b_s34b_b79k"
    """open_clip pretrained tag; looked up in the local Hugging Face / open_clip cache."""
    checkpoint_path: Path | None = None
    """A local weights file (.bin/.pt/.pth/.safetensors) for `model_name`; wins over the tag."""
    cache_dir: Path | None = None
    """Where to look for (and, with allow_download, put) tagged weights instead of the
    default caches (Hugging Face hub cache and ~/.cache/clip): e.g. a shared volume."""
    allow_download: bool = False
    """Never fetch weights unless asked: a render must not stall on a 600 MB download."""
    device: Device = "auto"
    """auto: CUDA when torch sees a GPU (half precision), else CPU (fp32)."""
    batch_size: int = Field(default=32, ge=1, le=1024)
    """Frames per forward pass. 32 keeps a ViT-B-32 batch under ~1 GB of activations."""
    clip_thresholds: Thresholds = CLIP_THRESHOLDS
    structural_thresholds: Thresholds = STRUCTURAL_THRESHOLDS
    max_attempts: int = Field(default=3, ge=1, le=20)
    """Generations per segment (first try + regenerations) before the best one is kept."""
    seam_frames: int = Field(default=3, ge=1, le=24)
    """Frames on each side of a seam that are compared."""

    drift_lookback: int = Field(default=2, ge=1, le=64)
    """The long-range check compares a segment with its scene's accepted segments at least
    this many back (the previous one is the seam check's)."""
    second_opinion_band: float = Field(default=0.05, ge=0.0, le=1.0)
    """With the Gemini judge as a second opinion, a segment is shown to it when one of its
    consistency scores lies within this distance of its threshold (either side)."""
    temporal: bool = True
    """Weight-free temporal metrics (flicker, smoothness, jump) on every segment: grayscale
    thumbnails from the judge's own decode pass, a few ms a segment."""
    temporal_thresholds: TemporalThresholds = TEMPORAL_THRESHOLDS
    temporal_thumb_size: tuple[int, int] = (64, 36)
    """(width, height) of the thumbnails the temporal metrics compare."""

    weighted: bool = True
    """Weighted VBench metrics (subject, background, aesthetic) where their weights are present:
    DINOv2 from `dinov2_path` or the Hugging Face cache, CLIP from the judge's own scorer, the
    aesthetic head from `aesthetic_head`. Absent weights skip a metric with a note."""
    dinov2_model: str = DEFAULT_DINOV2_MODEL
    """Hugging Face repo id of the DINOv2 model, looked up in the local cache only (downloaded
    only with allow_download)."""
    dinov2_path: Path | None = None
    """A local folder with the DINOv2 model (save_pretrained layout: config.json, weights,
    preprocessor_config.json); wins over dinov2_model."""
    aesthetic_head: Path | None = None
    """The LAION aesthetic predictor's head (a .safetensors or .pth state dict of linear
    layers on normalised CLIP image embeddings; weighted.py documents the format)."""
    weighted_frames: int = Field(default=8, ge=2, le=64)
    """Frames, evenly spaced over the segment (its keyframes among them), the weighted metrics
    compare; decoded in the judge's one pass."""
    weighted_thresholds: WeightedThresholds = WEIGHTED_THRESHOLDS

    def thresholds_for(self, backend: str) -> Thresholds:
        return self.clip_thresholds if backend == "clip" else self.structural_thresholds
