"""An adapter from ConsistencyJudge to the render pipeline's SegmentJudge protocol.

RenderPipeline (longvid/runtime/pipeline.py) calls `judge(job, segment_path, previous)`
and reads `max_attempts`; it returns a verdict with `passed`, `scores` (a dict stored in
the manifest) and `reason`. This adapter supplies what the pipeline does not pass:

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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import SegmentJob
from .config import JudgeConfig
from .judge import ConsistencyJudge, SegmentScores
from .keyframes import decode_frames, keyframe_indices, tail_frames
from .memory import CharacterMemory


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
        self.memory = CharacterMemory(backend=self.backend)
        self.history: list[SegmentScores] = []

    # -- helpers ------------------------------------------------------------------------------
    def _embed(self, frames: list[np.ndarray]) -> np.ndarray:
        if self.actor is not None:
            import ray

            return ray.get(self.actor.embed.remote(frames))
        return self._judge.embed_frames(frames)

    def _score(self, segment: Path, job: SegmentJob, anchors, tail, prompt, refs) -> SegmentScores:
        if self.actor is not None:
            import ray

            return ray.get(self.actor.score_segment.remote(Path(segment).read_bytes(), job, anchors, tail, prompt, refs))
        return self._judge.score_segment(segment, job, anchors, tail, prompt, refs)

    def remember_accepted(self, job: SegmentJob, segment: str | os.PathLike[str]) -> None:
        """Record an accepted segment: its first frame anchors its scene (if none yet), and
        with CLIP its keyframes become its characters' appearances."""
        indices = keyframe_indices(0, job.frames - 1, job.keyframe_density, job.fps)
        frames = decode_frames(segment, indices)
        if job.scene_index not in self._scene_anchor and 0 in frames:
            self._scene_anchor[job.scene_index] = self._embed([frames[0]])
        if self.backend == "clip" and job.scene.characters and frames:
            emb = self._embed([frames[i] for i in sorted(frames)])
            for character in job.scene.characters:
                self.memory.add_appearance(character.name, emb, backend=self.backend)

    # -- the SegmentJudge protocol ---------------------------------------------------------------
    def judge(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None):
        from ..runtime.pipeline import JudgeVerdict

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
        scores = self._score(segment, job, anchors, tail, job.prompt, refs)
        self.history.append(scores)
        if scores.passed:
            self.remember_accepted(job, segment)
        data = scores.model_dump(exclude={"passed"})
        data["notes"] = self.notes
        return JudgeVerdict(passed=scores.passed, scores=data, reason="; ".join(scores.failures))
