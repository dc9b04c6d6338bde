"""Weighted metrics of one segment, in the VBench family, where their weights are present:

subject     DINOv2 CLS features of the segment's frames: each frame's cosine to the first frame
            and to the previous one (each clipped at 0), averaged, then averaged over the frames
            (VBench's "subject consistency"). A subject that changes, even in the same colours,
            changes DINOv2's features.
background  the same formula on the judge's CLIP image features (VBench's "background
            consistency").
aesthetic   LAION's aesthetic predictor on the CLIP features, mean over the frames / 10 (VBench's
            "aesthetic quality").

The judge (judge.py) hands over the frames it already decoded (evenly spaced, its keyframes
among them) and their CLIP embeddings when it runs CLIP; DINOv2 is loaded once, in the judge's
constructor, on the judge actor's device. A metric without its weights is None, and `notes`
says why: absent weights never fail a render. Loading rules: weighted_models.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .clip_model import WeightsUnavailable
from .config import JudgeConfig


@dataclass(frozen=True)
class WeightedScores:
    subject: float | None = None
    background: float | None = None
    aesthetic: float | None = None


def vbench_consistency(features: np.ndarray) -> float | None:
    """Mean over frames 1..N-1 of (cos(f_i, f_0)+ + cos(f_i, f_i-1)+) / 2 for unit rows; None
    with fewer than two frames."""
    f = np.asarray(features, np.float32)
    if f.ndim != 2 or len(f) < 2:
        return None
    to_first = np.clip(f[1:] @ f[0], 0.0, None)
    to_previous = np.clip(np.einsum("ij,ij->i", f[1:], f[:-1]), 0.0, None)
    return round(float(np.clip(((to_first + to_previous) / 2).mean(), 0.0, 1.0)), 4)


def evenly_spaced(last: int, count: int) -> list[int]:
    """`count` frame indices from 0 to `last`, both ends included (fewer if the segment is short)."""
    if last <= 0:
        return [0]
    return sorted({int(round(x)) for x in np.linspace(0, last, min(count, last + 1))})


class WeightedMetrics:
    """The weighted models of one judge: DINOv2 (or None) and the aesthetic head (or None).

    `clip_dim` is the judge's CLIP embedding size, None when it runs the structural scorer (then
    background and aesthetic are skipped). A path the config names and that is missing is the
    user's error (WeightsUnavailable); DINOv2 absent from the cache is a note."""

    def __init__(self, config: JudgeConfig, clip_dim: int | None) -> None:
        self.config = config
        self.dinov2 = None
        self.aesthetic = None
        self.clip = clip_dim is not None
        notes: list[str] = []
        if not config.weighted:
            self.notes = "weighted metrics off"
            return
        try:
            from .weighted_models import load_dinov2

            self.dinov2 = load_dinov2(config)
            notes.append(f"subject consistency on DINOv2 from {self.dinov2.source}")
        except WeightsUnavailable as exc:
            if config.dinov2_path is not None:
                raise
            notes.append(f"subject consistency skipped: {str(exc).splitlines()[0]}")
        if clip_dim is None:
            notes.append("background consistency and aesthetic score skipped: they need CLIP (the judge runs the structural scorer)")
        else:
            notes.append("background consistency on the judge's CLIP")
            if config.aesthetic_head is None:
                notes.append("aesthetic score skipped: no aesthetic head given (--aesthetic-head FILE)")
            else:
                from ..errors import InputError
                from .aesthetic_check import check_aesthetic_head, head_mismatch

                # The edge ran the same check (before Ray); here it meets the CLIP actually loaded.
                self.aesthetic = check_aesthetic_head(config)
                if (problem := head_mismatch(config.model_name, config.pretrained, self.aesthetic.dim, clip_dim)) is not None:
                    raise InputError(f"aesthetic head {self.aesthetic.source}: {problem}")
                notes.append(f"aesthetic score from {self.aesthetic.source}")
        self.notes = "; ".join(notes)

    @property
    def active(self) -> bool:
        """Whether any weighted metric will be computed (the judge then decodes its frames)."""
        return self.config.weighted and (self.dinov2 is not None or self.clip)

    def score(self, frames: Sequence[np.ndarray], clip_embeddings: np.ndarray | None) -> WeightedScores:
        """The metrics of a segment's frames (in time order) and their CLIP embeddings (or None)."""
        if not self.active or len(frames) < 2:
            return WeightedScores()
        subject = None
        if self.dinov2 is not None:
            from .weighted_models import dinov2_features

            subject = vbench_consistency(dinov2_features(self.dinov2, list(frames), self.config.batch_size))
        background = aesthetic = None
        if clip_embeddings is not None and len(clip_embeddings):
            background = vbench_consistency(clip_embeddings)
            if self.aesthetic is not None:
                aesthetic = round(float(np.clip(self.aesthetic.rate(clip_embeddings).mean() / 10.0, 0.0, 1.0)), 4)
        return WeightedScores(subject, background, aesthetic)
