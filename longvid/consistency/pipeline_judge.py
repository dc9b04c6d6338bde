"""An adapter from ConsistencyJudge to the render pipeline's SegmentJudge protocol.

The render's acceptance step (longvid/runtime/acceptance.py) calls `judge(job, segment_path, previous)`
and reads `max_attempts`; it returns a verdict with `passed`, `scores` (a dict stored in
the manifest), `reason` and `quality` (which attempt to keep when none passes). This
adapter supplies what the pipeline does not pass:

- anchors: the reference images (loaded once, centre-cropped to the frame's aspect by the
  judge) plus the first frame of the first passing segment of the job's scene. A scene's
  first segment is therefore checked against the references only (scenes are meant to
  differ); with no references and no CLIP, its anchor score is None. After a resume, call
  `remember_accepted(job, path)` for segments accepted earlier; failing that, the previous
  segment of the scene stands in as the anchor.
- seam: only when the segment continues the previous one (job.conditioned_on is it).
- prompt: job.prompt (CLIP only).
- characters (CLIP only): each character's appearances in passing segments; whole-frame
  structural embeddings of another scene would only repeat the anchor check, worse.

It judges in-process, or through a JudgeActor handle (`actor=`), sending the MP4 bytes and
anchor embeddings, so the actor may run on another node.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import SegmentJob
from .config import JudgeConfig, Thresholds
from .judge import ConsistencyJudge, SegmentScores
from .keyframes import decode_frames, keyframe_indices, tail_frames
from .longrange import LongRangeMemory
from .memory import CharacterMemory
from .vision_check import VisionCheck, combine

LONG_RANGE_FILE = "longrange.npz"  # in the run folder, beside characters.npz and context.npz


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class ConsistencySegmentJudge:
    def __init__(
        self,
        config: JudgeConfig | None = None,
        reference_images: Sequence[str | os.PathLike[str] | np.ndarray] = (),
        actor: Any = None,
        judge: ConsistencyJudge | None = None,
        context: Any = None,
        vision: VisionCheck | None = None,
    ) -> None:
        self.config = config or JudgeConfig()
        self.max_attempts = self.config.max_attempts
        self.actor = actor
        self._judge = None if actor is not None else (judge or ConsistencyJudge(self.config))
        if self.actor is not None:
            import ray

            self._info = ray.get(actor.info.remote())
        else:
            self._info = self._judge.info()
        self.backend: str = self._info["backend"]
        self.notes: str = self._info["notes"]
        self.references = [img if isinstance(img, np.ndarray) else load_image(img) for img in reference_images]
        self._scene_anchor: dict[int, np.ndarray] = {}  # scene index -> embedding (1, D)
        self._vision_seen: dict[tuple, tuple] = {}  # (segment, seed, sha256) -> Gemini's answer to score_only
        self.memory = CharacterMemory(backend=self.backend)
        self.long_range = LongRangeMemory(self.config.drift_lookback, cross_scene_characters=self.backend == "clip")
        self.history: list[SegmentScores] = []
        # FramePack context of the accepted video so far (a compressor actor on Ray, or an
        # in-process FramePackCompressor): bounded however long the video gets.
        self.context = context
        # Gemini's vision check (--judge gemini, --second-opinion); None: local scorers only.
        self.vision = vision

    # -- helpers ------------------------------------------------------------------------------
    def _embed(self, frames: list[np.ndarray]) -> np.ndarray:
        if self.actor is not None:
            import ray

            return ray.get(self.actor.embed.remote(frames))
        return self._judge.embed_frames(frames)

    def _score(self, segment: Path, job: SegmentJob, anchors, tail, prompt, refs, long_range=None) -> SegmentScores:
        if self.actor is not None:
            import ray

            return ray.get(self.actor.score_segment.remote(Path(segment).read_bytes(), job, anchors, tail, prompt, refs, long_range))
        return self._judge.score_segment(segment, job, anchors, tail, prompt, refs, long_range)

    def bind_ledger(self, ledger, persist=None) -> None:
        """The render's cost ledger: Gemini's calls are reserved and charged there; `persist()`
        writes it to the run's manifest, called after each reservation, before the call."""
        if self.vision is not None:
            self.vision.ledger = ledger
            self.vision.persist = persist

    def remember_accepted(self, job: SegmentJob, segment: str | os.PathLike[str]) -> None:
        """Record an accepted segment: its first frame anchors its scene (if none yet), and
        with CLIP its keyframes become its characters' appearances."""
        indices = keyframe_indices(0, job.frames - 1, job.keyframe_density, job.fps)
        frames = decode_frames(segment, indices)
        first = self._embed([frames[0]]) if 0 in frames else None
        if job.scene_index not in self._scene_anchor and first is not None:
            self._scene_anchor[job.scene_index] = first
        if first is not None and self.vision is not None:
            self.vision.remember(job, frames[0])
        if first is not None:
            new = [c.name for c in job.scene.characters if c.name.strip().casefold() not in self.long_range.characters]
            seen = self._embed([frames[i] for i in sorted(frames)]) if new else None
            self.long_range.remember(job.scene_index, job.index, first, {name: seen for name in new})
        if self.backend == "clip" and job.scene.characters and frames:
            emb = self._embed([frames[i] for i in sorted(frames)])
            for character in job.scene.characters:
                self.memory.add_appearance(character.name, emb, backend=self.backend)
        if self.context is not None and frames:
            last = frames[max(frames)]
            push = getattr(self.context, "push")
            result = push.remote(last) if hasattr(push, "remote") else push(last)
            if hasattr(push, "remote"):
                import ray

                ray.get(result)

    def packed_context(self) -> list[np.ndarray]:
        if self.context is None:
            return []
        packed = self.context.packed
        if hasattr(packed, "remote"):
            import ray

            return ray.get(packed.remote())
        return packed()

    def load_state(self, run) -> None:
        """On resume: the long-range memory saved by the earlier invocation (longrange.npz), so
        the slow side holds what it held then, whichever accepted clips are replayed after."""
        if run.exists(LONG_RANGE_FILE):
            self.long_range.load_bytes(run.read_bytes(LONG_RANGE_FILE))

    def save_state(self, run) -> None:
        """Character memory and the packed context into the run folder (characters.npz,
        context.npz), written whole, so a later render or a report can read them."""
        import io
        import tempfile

        from ..runtime.layout import CHARACTERS, CONTEXT  # here: importing the runtime package is heavy

        with tempfile.TemporaryDirectory() as folder:
            path = self.memory.save(Path(folder) / CHARACTERS)
            run.write_bytes(CHARACTERS, path.read_bytes())
        if len(self.long_range):
            run.write_bytes(LONG_RANGE_FILE, self.long_range.to_bytes())
        levels = self.packed_context()
        if levels:
            buffer = io.BytesIO()
            np.savez(buffer, **{f"level_{i}": level for i, level in enumerate(levels)})
            run.write_bytes(CONTEXT, buffer.getvalue())

    def close(self) -> None:
        """Kill this render's judge and context actors: a long-lived process (a Serve replica,
        a batch job) must not accumulate them."""
        import ray

        for actor in (self.actor, self.context):
            if isinstance(actor, ray.actor.ActorHandle):
                try:
                    ray.kill(actor)
                except Exception:  # already gone
                    pass

    @property
    def compares_openers(self) -> bool:
        """Whether candidates of a scene opener can score differently: an opener has no scene
        anchor, seam or long-range anchor, so only CLIP's prompt score, reference images or
        Gemini as the primary judge give it something to be compared with."""
        return self.backend == "clip" or bool(self.references) or (self.vision is not None and self.vision.mode == "primary")

    # -- the SegmentJudge protocol ---------------------------------------------------------------
    def judge(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None):
        return self._verdict(job, segment, previous, remember=True)

    def score_only(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None):
        """The verdict `judge` would give, remembering nothing (best-of-N candidates: only the
        one kept becomes context)."""
        return self._verdict(job, segment, previous, remember=False)

    def _verdict(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None, remember: bool):
        from ..runtime.protocols import JudgeVerdict

        anchors: list[np.ndarray] = list(self.references)
        scene_anchor = self._scene_anchor.get(job.scene_index)
        if scene_anchor is None and previous is not None and previous[0].scene_index == job.scene_index:
            scene_anchor = self._embed([decode_frames(previous[1], [0])[0]])  # resumed mid-scene
        if scene_anchor is not None:
            anchors.append(scene_anchor)
        tail = None
        if previous is not None and job.conditioned_on == previous[0].index:
            tail = tail_frames(previous[1], previous[0].frames, self.config.seam_frames)
        refs = self.memory.as_refs() if self.backend == "clip" and len(self.memory) else None
        # The scene anchor is the anchor check's: judged again here, on the mean with the drift
        # threshold, it would fail segments the anchor check passes on the same frame.
        long_range = self.long_range.anchors_for(job.scene_index, job.index, [c.name for c in job.scene.characters],
                                                 without_scene_anchor=scene_anchor is not None)
        scores = self._score(segment, job, anchors, tail, job.prompt, refs, long_range or None)
        if remember:
            self.history.append(scores)
        vision, unavailable = None, None
        if self.vision is not None and self.vision.wanted(scores, Thresholds(**self._info["thresholds"])):
            # Best-of-N scores each candidate (remember=False), then judges the kept one again
            # for the record: Gemini's answer on the same bytes is reused, not paid for twice.
            digest = (job.index, job.seed, hashlib.sha256(Path(segment).read_bytes()).hexdigest())
            seen = self._vision_seen.get(digest)
            vision, unavailable = seen if seen is not None else self.vision.review(job, segment, previous, self.references)
            if not remember:
                self._vision_seen[digest] = (vision, unavailable)
        if remember:
            self._vision_seen.clear()  # the candidates of this segment are decided
        verdict = combine(scores, verdict_quality(scores), vision, unavailable)
        if verdict.passed and remember:
            self.remember_accepted(job, segment)
        data = scores.model_dump(exclude={"passed"})
        data["notes"] = "; ".join(n for n in (self.notes, verdict.notes) if n)
        if verdict.vision is not None:
            data["vision"] = verdict.vision
        return JudgeVerdict(passed=verdict.passed, scores=data, reason=verdict.reason, quality=verdict.quality,
                            adjustments=verdict.adjustments, warnings=verdict.warnings)


TEMPORAL_CHECKS = ("flicker", "smoothness", "jump")
WEIGHTED_CHECKS = ("subject", "background", "aesthetic")


def verdict_quality(scores: SegmentScores) -> float:
    """Which attempt to keep when none passes: the lowest consistency score (anchor, seam,
    prompt, character, drift; 1.0 when none was measured), less 1 for each failed temporal or
    weighted check (their scales differ, so they rank rather than mix: a flickering or cut
    attempt comes after every one without)."""
    measured = [v for v in (scores.anchor, scores.seam, scores.prompt, scores.character, scores.drift) if v is not None]
    temporal_failures = sum(1 for f in scores.failures if f.split(" ", 1)[0] in TEMPORAL_CHECKS + WEIGHTED_CHECKS)
    return (min(measured) if measured else 1.0) - temporal_failures


def _one_line(error: Exception) -> Exception:
    """The same error with its lines joined (WeightsUnavailable says how to fix it on a second
    line; the CLI prints one)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    try:
        return type(error)(text)
    except TypeError:  # an error class that wants other arguments: as it is
        return error


def create_pipeline_judge(config: JudgeConfig, reference_images: Sequence[str | os.PathLike[str]] = (),
                          vision: VisionCheck | None = None) -> ConsistencySegmentJudge:
    """The judge and the FramePack compressor as Ray actors on the connected cluster (a
    fraction of a GPU each where there is one). A judge that cannot start (say `clip` with
    no weights) is reported with its own message, not as a Ray error."""
    import ray

    from .framepack import create_compressor_actor
    from .judge import create_judge_actor

    resources = ray.cluster_resources()
    actor = create_judge_actor(config, resources)
    try:
        ray.get(actor.info.remote())
    except ray.exceptions.RayError as exc:
        ray.kill(actor)
        cause = getattr(exc, "cause", None) or getattr(exc, "base_exception", None)
        from ..errors import LongvidError

        if isinstance(cause, LongvidError):  # JudgeActor.info raises what its __init__ could not do
            raise _one_line(cause) from None
        text = str(exc)
        marker = "WeightsUnavailable: "
        if marker in text:
            from .clip_model import WeightsUnavailable

            lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
            raise WeightsUnavailable(" ".join(lines)) from None
        raise
    context = None
    try:
        context = create_compressor_actor(device=config.device if config.device != "auto" else "auto", cluster_resources=resources)
        return ConsistencySegmentJudge(config, reference_images, actor=actor, context=context, vision=vision)
    except BaseException:  # no judge to close later: kill what was started here
        for started in (actor, context):
            if started is not None:
                ray.kill(started)
        raise
