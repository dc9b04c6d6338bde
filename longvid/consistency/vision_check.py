"""Where the Gemini vision judge meets the local scorers: when to ask it, what to show it,
and how its verdict and the local one make the segment's verdict.

mode "primary" (`--judge gemini`): every segment is shown to Gemini; its verdict decides.
mode "second_opinion" (`--second-opinion`): only a segment whose consistency scores are
    borderline (within `JudgeConfig.second_opinion_band` of a threshold, either side) is
    shown; Gemini's verdict then decides that segment. Clear passes and clear failures cost
    nothing.

The references it is shown: the user's reference images, the scene's first accepted frame,
the previous segment's last frame (a continued seam) and the first accepted appearance of
each of the segment's characters; kept as small thumbnails, so memory stays bounded.

When Gemini cannot answer (429, 5xx, timeout, garbage, budget) the local verdict stands and
the attempt's notes and the run's warnings say so: the judge never fails a render.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import SegmentJob
from .config import Thresholds
from .gemini_judge import VisionResult, VisionUnavailable, vision_summary
from .judge import SegmentScores
from .keyframes import decode_frames, keyframe_indices

MAX_KEYFRAMES = 4  # frames of the segment shown (each one image tile of tokens)
CONSISTENCY_CHECKS = ("anchor", "seam", "prompt", "character", "drift")
# Failures that stand whatever Gemini says: measured on the frames, not judged by eye. The
# weighted ones fail only where a threshold is set (JudgeConfig.weighted_thresholds).
MEASURED_CHECKS = ("flicker", "smoothness", "jump", "subject", "background", "aesthetic")


def _small(frame: np.ndarray, side: int = 384) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, np.uint8))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def borderline(scores: SegmentScores, thresholds: Thresholds, band: float) -> list[str]:
    """The consistency checks whose score lies within `band` of its threshold."""
    out = []
    for name in CONSISTENCY_CHECKS:
        value, threshold = getattr(scores, name), getattr(thresholds, name)
        if value is not None and threshold is not None and abs(value - threshold) <= band:
            out.append(name)
    return out


@dataclass(frozen=True)
class Combined:
    passed: bool
    reason: str
    quality: float
    notes: str = ""
    warnings: tuple[str, ...] = ()
    adjustments: tuple[str, ...] = ()
    vision: dict[str, Any] | None = None


def combine(local: SegmentScores, local_quality: float, vision: VisionResult | None, unavailable: str | None) -> Combined:
    """The segment's verdict from the local scores and Gemini's (pure). Temporal failures
    (flicker, shake, a cut) and weighted ones (subject, background, aesthetic, where they have
    thresholds) stand whatever Gemini says: they are measured, not judged."""
    temporal = [f for f in local.failures if f.split(" ", 1)[0] in MEASURED_CHECKS]
    if vision is None:
        local_reason = "; ".join(local.failures)
        if unavailable is None:
            return Combined(local.passed, local_reason, local_quality)
        note = f"Gemini judge unavailable ({unavailable}); judged by the local scorers"
        return Combined(local.passed, local_reason, local_quality, notes=note, warnings=(note,))
    answer = vision.answer
    reasons = [f"gemini: {r}" for r in answer.reasons] or ([] if vision.passed else ["gemini: failed the check"])
    passed = vision.passed and not temporal
    reason = "; ".join([*temporal, *([] if vision.passed else reasons)])
    quality = min(answer.lowest, local_quality) if temporal else answer.lowest
    note = f"Gemini {vision.model}: {'pass' if vision.passed else 'fail'}" + (f" ({vision.notes})" if vision.notes else "")
    return Combined(passed, reason, quality, notes=note, adjustments=() if passed else tuple(answer.adjustments),
                    vision=vision_summary(vision))


@dataclass
class VisionCheck:
    """The vision judge inside one render's ConsistencySegmentJudge."""

    judge: Any  # GeminiVisionJudge, or anything with its `judge(...)`
    mode: str = "second_opinion"  # or "primary"
    band: float = 0.05
    ledger: Any = None  # the render's CostLedger (GenerateLoop binds it); else one of its own
    persist: Any = None  # writes the ledger to the run's manifest (GenerateLoop binds it): called once a call is reserved
    anchors: dict[int, np.ndarray] = field(default_factory=dict)  # scene -> first accepted frame
    first_seen: dict[str, np.ndarray] = field(default_factory=dict)  # character -> first accepted frame

    def __post_init__(self) -> None:
        if self.mode not in ("primary", "second_opinion"):
            raise ValueError(f"vision mode must be 'primary' or 'second_opinion', not {self.mode!r}")
        if self.ledger is None:
            from ..providers.ledger import CostLedger

            self.ledger = CostLedger()

    def wanted(self, scores: SegmentScores, thresholds: Thresholds) -> bool:
        return self.mode == "primary" or bool(borderline(scores, thresholds, self.band))

    def remember(self, job: SegmentJob, first_frame: np.ndarray) -> None:
        self.anchors.setdefault(job.scene_index, _small(first_frame))
        for character in job.scene.characters:
            self.first_seen.setdefault(character.name.strip().casefold(), _small(first_frame))

    def review(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None,
               user_references: Sequence[np.ndarray]) -> tuple[VisionResult | None, str | None]:
        """(Gemini's verdict, None) or (None, why there is none)."""
        indices = keyframe_indices(0, job.frames - 1, job.keyframe_density, job.fps)
        if len(indices) > MAX_KEYFRAMES:
            indices = [indices[round(k * (len(indices) - 1) / (MAX_KEYFRAMES - 1))] for k in range(MAX_KEYFRAMES)]
        frames = decode_frames(segment, indices)
        keyframes = [_small(frames[i]) for i in sorted(frames)]
        references: list[tuple[str, np.ndarray]] = [(f"the user's reference image {k + 1}", _small(img))
                                                    for k, img in enumerate(user_references)]
        if job.scene_index in self.anchors:
            references.append(("the first accepted frame of this scene", self.anchors[job.scene_index]))
        if previous is not None and job.conditioned_on == previous[0].index:
            tail = decode_frames(previous[1], [previous[0].frames - 1])
            references += [("the last frame of the previous segment, which this one continues", _small(f)) for f in tail.values()]
        for character in job.scene.characters:
            if (seen := self.first_seen.get(character.name.strip().casefold())) is not None:
                references.append((f"the first appearance of {character.name}", seen))
        key = f"seg{job.index}/judge{sum(1 for e in self.ledger.entries if e.segment == job.index) + 1}"
        try:
            return self.judge.judge(keyframes, references, job.prompt, self.ledger, key, job.index, on_reserved=self.persist), None
        except VisionUnavailable as exc:
            return None, str(exc)
