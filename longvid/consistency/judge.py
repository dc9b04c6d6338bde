"""The consistency judge: scores a generated segment and says whether to keep it.

Checks (each skipped when its input is missing, so its score is None):

anchor     each keyframe of the segment (sampled at the job's keyframe density over the
           frames it contributes, both ends included) is matched to its closest anchor;
           the score is the LOWEST keyframe's match, so drift late in a segment counts.
           Anchors are what the segment must look like. Pass the first accepted frame of
           the segment's own scene plus the reference images (and, if you like, the
           video's first frame: each keyframe takes its best anchor). Scenes are meant to
           differ, so the video's first frame alone is the wrong anchor for later scenes
           (preview renders: a clean second scene scores ~0.70-0.95 against the first
           scene's frame, ~0.85-1.0 against its own).
seam       the previous segment's last `seam_frames` contributed frames against this
           segment's first ones (mean best match). Pass previous_tail only where this
           segment continues the previous one (same scene, conditioned on its seam
           frame); anchor-mode segments start afresh and crossfade.
prompt     CLIP only: mean text-image cosine of the keyframes to the prompt.
character  for each character of the job's scene present in character_refs: the mean
           best match of the keyframes to that character's remembered embeddings; the
           score is the lowest over characters. The embeddings are whole frames (no
           detector), so this is a look-of-the-shot check per character, not identity.

drift      long-range: for each of `long_range` (the scene's accepted segments several back,
           the first appearance of its characters; longrange.py), the keyframes' mean best
           match; the score is the lowest over them, so a slow walk away is caught.
subject, background, aesthetic
           weighted VBench metrics of the segment's frames (weighted.py), each only where its
           weights are present (DINOv2; the judge's CLIP; CLIP + the LAION aesthetic head);
           thresholds in JudgeConfig.weighted_thresholds (None by default: recorded, not
           gated, until calibrated on real weights).
flicker, smoothness, jump
           weight-free temporal metrics of the frames the segment contributes (temporal.py),
           whatever the backend; thresholds in JudgeConfig.temporal_thresholds.

`passed` is every present score >= its threshold (JudgeConfig.thresholds_for(backend)).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..spec import SegmentJob
from .config import JudgeConfig, Thresholds
from .keyframes import Source, keyframe_indices
from .scorers import best_match, make_scorer
from .temporal import TemporalMetrics, decode_for_judging, temporal_metrics
from .weighted import WeightedMetrics, WeightedScores, evenly_spaced


class SegmentScores(BaseModel):
    """What the judge found; stored in the manifest next to the segment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    anchor: float | None = None
    seam: float | None = None
    prompt: float | None = None
    character: float | None = None
    passed: bool
    failures: list[str] = []
    backend: str
    keyframes: list[int] = []  # frame indices that were judged
    seconds: float = 0.0  # decode + embed + score time
    flicker: float | None = None
    smoothness: float | None = None
    jump: float | None = None
    drift: float | None = None
    subject: float | None = None  # weighted VBench metrics (weighted.py); None without their weights
    background: float | None = None
    aesthetic: float | None = None


def fit_aspect(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop `frame` to the width:height aspect (no resize), like ImageOps.fit does
    before it scales, so references of another shape compare with the segment's frames."""
    h, w = frame.shape[:2]
    target = width / height
    if abs(w / h - target) < 0.01:
        return frame
    if w / h > target:
        new_w = max(1, round(h * target))
        left = (w - new_w) // 2
        return frame[:, left : left + new_w]
    new_h = max(1, round(w / target))
    top = (h - new_h) // 2
    return frame[top : top + new_h]


def _is_embedding(item: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(item).dtype, np.floating) and np.asarray(item).ndim in (1, 2)


class ConsistencyJudge:
    """Scores segments with one scorer (CLIP or structural), chosen by `make_scorer`."""

    def __init__(self, config: JudgeConfig | None = None, scorer: Any = None) -> None:
        self.config = config or JudgeConfig()
        self.scorer = scorer if scorer is not None else make_scorer(self.config)
        # DINOv2 and the aesthetic head, loaded once here (in the judge actor, on its device).
        clip_dim = getattr(self.scorer, "dim", None) if self.scorer.backend == "clip" else None
        self.weighted = WeightedMetrics(self.config, clip_dim)
        self._anchor_cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def backend(self) -> str:
        return self.scorer.backend

    @property
    def notes(self) -> str:
        return "; ".join(n for n in (getattr(self.scorer, "notes", ""), self.weighted.notes) if n)

    @property
    def thresholds(self) -> Thresholds:
        return self.config.thresholds_for(self.backend)

    def info(self) -> dict[str, Any]:
        loaded = getattr(self.scorer, "loaded", None)
        return {
            "backend": self.backend,
            "notes": self.notes,
            "device": getattr(loaded, "device", "cpu"),
            "thresholds": self.thresholds.model_dump(),
        }

    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return self.scorer.embed(list(frames))

    def embed_images(self, items: Sequence[np.ndarray], width: int | None = None, height: int | None = None) -> np.ndarray:
        """Embeddings of frames/images (cached by content; anchors recur for every segment).
        Float arrays are taken as embeddings already. With width/height, images are centre-
        cropped to that aspect first."""
        rows: list[np.ndarray | None] = []
        todo: list[tuple[int, str, np.ndarray]] = []
        for item in items:
            item = np.asarray(item)
            if _is_embedding(item):
                rows.append(np.atleast_2d(item.astype(np.float32)))
                continue
            if width and height:
                item = fit_aspect(item, width, height)
            key = hashlib.blake2b(item.tobytes(), digest_size=16, key=str(item.shape).encode()).hexdigest()
            if key in self._anchor_cache:
                self._anchor_cache.move_to_end(key)
                rows.append(self._anchor_cache[key])
            else:
                rows.append(None)
                todo.append((len(rows) - 1, key, item))
        if todo:
            embedded = self.scorer.embed([item for _, _, item in todo])
            for (slot, key, _), row in zip(todo, embedded):
                rows[slot] = row[None, :]
                self._anchor_cache[key] = row[None, :]
                while len(self._anchor_cache) > 64:
                    self._anchor_cache.popitem(last=False)
        if not rows:
            return np.zeros((0, getattr(self.scorer, "dim", 0)), np.float32)
        return np.concatenate(rows)

    def score_segment(
        self,
        segment_path: Source,
        job: SegmentJob,
        anchors: Sequence[np.ndarray] = (),
        previous_tail: Sequence[np.ndarray] | None = None,
        prompt: str | None = None,
        character_refs: Mapping[str, np.ndarray] | Any | None = None,
        long_range: Sequence[np.ndarray] | None = None,
    ) -> SegmentScores:
        """Score one generated segment (a path or the MP4 bytes) against its context.

        anchors: RGB frames/images (or embeddings from this judge) the segment must match.
        previous_tail: the previous segment's last frames (tail_frames(prev, prev_job.frames)),
            only for a seam inside a scene.
        prompt: text for the CLIP prompt check (ignored by the structural backend).
        character_refs: {name: (K, D) embeddings from this judge} or a CharacterMemory."""
        started = time.perf_counter()
        last = job.frames - 1
        indices = keyframe_indices(0, last, job.keyframe_density, job.fps)
        has_tail = previous_tail is not None and len(previous_tail) > 0
        head_count = self.config.seam_frames if has_tail else 0
        thumb_size = self.config.temporal_thumb_size if self.config.temporal else None
        spread = sorted(set(indices) | set(evenly_spaced(last, self.config.weighted_frames))) if self.weighted.active else []
        decoded, thumbs = decode_for_judging(segment_path, set(indices) | set(spread) | set(range(head_count)), last, thumb_size)
        temporal = temporal_metrics(thumbs) if thumb_size else TemporalMetrics(None, None, None)
        indices = [i for i in indices if i in decoded]
        if not indices:
            raise ValueError(f"segment {job.index}: the video has none of frames 0..{last}")
        spread = [i for i in spread if i in decoded]
        # One embedding pass over the keyframes and the weighted metrics' frames (a superset).
        embedded = spread or indices
        all_emb = self.scorer.embed([decoded[i] for i in embedded])
        kf_emb = all_emb[[embedded.index(i) for i in indices]]
        weighted = (self.weighted.score([decoded[i] for i in spread], all_emb if self.weighted.clip else None)
                    if spread else WeightedScores())
        th = self.thresholds

        anchor = None
        if len(anchors):
            anchor_emb = self.embed_images(list(anchors), job.width, job.height)
            anchor = float(best_match(kf_emb, anchor_emb).min())

        seam = None
        if has_tail:
            head = [decoded[i] for i in range(head_count) if i in decoded]
            if head:
                tail_emb = self.scorer.embed(list(previous_tail)[-self.config.seam_frames :])
                seam = float(best_match(self.scorer.embed(head), tail_emb).mean())

        prompt_score = self.scorer.text_similarity(kf_emb, prompt) if prompt else None

        character = None
        refs = character_refs.as_refs() if hasattr(character_refs, "as_refs") else character_refs
        if refs:
            by_name = {name.casefold(): emb for name, emb in refs.items()}
            wanted = [c.name.casefold() for c in job.scene.characters] or list(by_name)
            scores = [float(best_match(kf_emb, np.atleast_2d(by_name[n])).mean()) for n in wanted if n in by_name and len(by_name[n])]
            character = min(scores) if scores else None

        drift = None
        if long_range:
            drift = min(float(best_match(kf_emb, self.embed_images([a], job.width, job.height)).mean()) for a in long_range)

        failures = []
        checks = (
            ("anchor", anchor, th.anchor, "keyframes drifted from the anchors (look, palette, lighting)"),
            ("seam", seam, th.seam, "the segment does not continue the previous one"),
            ("prompt", prompt_score, th.prompt, "keyframes do not match the prompt"),
            ("character", character, th.character, "a character looks different from its references"),
            ("drift", drift, th.drift, "the look drifted from earlier segments of the scene or a character's first appearance"),
        )
        tt = self.config.temporal_thresholds
        checks += (
            ("flicker", temporal.flicker, tt.flicker, "the brightness flickers from frame to frame"),
            ("smoothness", temporal.smoothness, tt.smoothness, "the motion stutters or shakes"),
            ("jump", temporal.jump, tt.jump, f"a hard cut inside the segment (at frame {temporal.jump_at})"),
        )
        wt = self.config.weighted_thresholds
        checks += (
            ("subject", weighted.subject, wt.subject, "the subject changes within the segment (DINOv2 features)"),
            ("background", weighted.background, wt.background, "the background changes within the segment (CLIP features)"),
            ("aesthetic", weighted.aesthetic, wt.aesthetic, "the picture rates poorly (LAION aesthetic predictor)"),
        )
        for name, value, threshold, why in checks:
            if value is not None and threshold is not None and value < threshold:
                failures.append(f"{name} {value:.3f} < {threshold:.3f}: {why}")
        return SegmentScores(
            anchor=anchor,
            seam=seam,
            prompt=prompt_score,
            character=character,
            passed=not failures,
            failures=failures,
            backend=self.backend,
            keyframes=indices,
            seconds=round(time.perf_counter() - started, 4),
            flicker=temporal.flicker,
            smoothness=temporal.smoothness,
            jump=temporal.jump,
            drift=drift,
            subject=weighted.subject,
            background=weighted.background,
            aesthetic=weighted.aesthetic,
        )


class JudgeActor:
    """The judge as a Ray actor: the model is loaded once, in __init__, on the actor's
    device (Ray's num_gpus decides whether CUDA is visible). Plain class; wrap it with
    create_judge_actor (or ray.remote(JudgeActor) yourself)."""

    def __init__(self, config: JudgeConfig | None = None) -> None:
        from ..errors import LongvidError

        # A judge that cannot start (no CLIP weights, a head that does not fit its CLIP) is the
        # user's to fix: kept and raised from info(), so the driver gets the LongvidError itself,
        # not an ActorDiedError whose text is the actor's traceback.
        self.judge: ConsistencyJudge | None = None
        self.failed: LongvidError | None = None
        try:
            self.judge = ConsistencyJudge(config)
        except LongvidError as exc:
            self.failed = exc

    def info(self) -> dict[str, Any]:
        if self.failed is not None:
            raise self.failed
        return self.judge.info()

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return self.judge.embed_frames(frames)

    def score_segment(self, segment: Source, job: SegmentJob, anchors=(), previous_tail=None, prompt=None, character_refs=None,
                      long_range=None) -> SegmentScores:
        # Over Ray, pass the MP4 bytes unless the actor shares the run folder's disk.
        return self.judge.score_segment(segment, job, anchors, previous_tail, prompt, character_refs, long_range)


def _runs_dinov2(config: JudgeConfig) -> bool:
    from .weighted_models import dinov2_expected

    return dinov2_expected(config)


DEFAULT_JUDGE_GPU_FRACTION = 0.25  # four judges share a GPU; ViT-B-32 in fp16 needs < 1 GB


def judge_actor_options(
    cluster_resources: Mapping[str, float],
    config: JudgeConfig | None = None,
    gpu_fraction: float = DEFAULT_JUDGE_GPU_FRACTION,
) -> dict[str, float]:
    """Ray options for one judge actor: a reserved core only on a cluster large enough to
    spare one (helper_actor_cpus), and a fraction of a GPU when the cluster has GPUs and the
    judge can use one (CLIP, or DINOv2 configured or cached; never with device 'cpu')."""
    config = config or JudgeConfig()
    gpus = float(cluster_resources.get("GPU", 0.0) or 0.0)
    wants_gpu = config.device != "cpu" and (config.backend != "structural" or _runs_dinov2(config))
    if config.device == "cuda" and gpus <= 0:
        raise ValueError("judge device 'cuda' was asked for but the Ray cluster has no GPU; use device 'auto' or 'cpu'")
    num_gpus = min(gpu_fraction, gpus) if wants_gpu and gpus > 0 else 0
    from ..runtime.resources import helper_actor_cpus

    return {"num_cpus": helper_actor_cpus(cluster_resources), "num_gpus": num_gpus}


def create_judge_actor(config: JudgeConfig | None = None, cluster_resources: Mapping[str, float] | None = None, **options: Any):
    """Start a JudgeActor on the connected Ray cluster; `options` override the computed ones."""
    import ray

    config = config or JudgeConfig()
    resources = cluster_resources if cluster_resources is not None else ray.cluster_resources()
    merged = {**judge_actor_options(resources, config), **options}
    return ray.remote(JudgeActor).options(**merged).remote(config)
