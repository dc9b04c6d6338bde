"""What a reviewer wants to know about a run, read once from its manifest and plan.

Pure data: the contact sheet and the HTML report both draw from these summaries, so they
always agree, and the rules (which frames make a row's keyframes, which attempts failed)
are tested without decoding a video or drawing a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..manifest import AttemptRecord, RunManifest, RunPlan, RunStatus, stretched_s


@dataclass(frozen=True)
class AttemptSummary:
    """One judged attempt of a segment (manifest.segments[i].scores[k])."""

    number: int  # 1-based
    seed: int
    passed: bool
    quality: float
    scores: dict[str, float]  # only the checks that were measured
    failures: list[str]
    backend: str | None
    seconds: float  # the judge's time on it

    @classmethod
    def from_record(cls, number: int, attempt: AttemptRecord) -> AttemptSummary:
        return cls(
            number=number,
            seed=attempt.seed,
            passed=attempt.passed,
            quality=attempt.quality,
            scores=attempt.measured,
            failures=list(attempt.failures),
            backend=attempt.backend,
            seconds=attempt.seconds,
        )

    def describe(self) -> str:
        """One line, e.g. 'attempt 2 passed · seed 18 · quality 0.91 · anchor 0.93 seam 0.91'."""
        parts = [f"attempt {self.number} {'passed' if self.passed else 'failed'}", f"seed {self.seed}", f"quality {self.quality:.2f}"]
        if self.scores:
            parts.append(" ".join(f"{name} {value:.2f}" for name, value in self.scores.items()))
        if self.failures:
            parts.append("; ".join(self.failures))
        return " · ".join(parts)


@dataclass(frozen=True)
class SegmentSummary:
    index: int
    scene_index: int
    scene_text: str
    prompt: str
    state: str
    provider: str
    model: str | None
    cost_usd: float
    generate_seconds: float | None  # provider time for the kept attempt
    cached: bool
    attempts: int  # provider tasks created
    regenerations: int  # times the judge sent it back
    judged: list[AttemptSummary]
    error: str | None
    video_path: str | None  # relative to the run folder; None until generated
    fps: float
    start_frame: int
    frames: int  # what the segment contributes to the final timeline
    candidates: tuple = ()  # best-of-N: the manifest's CandidateRecords, side by side in the report

    @property
    def start_s(self) -> float:
        return self.start_frame / self.fps

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def failed_attempts(self) -> list[AttemptSummary]:
        return [a for a in self.judged if not a.passed]

    @property
    def regenerated(self) -> bool:
        return self.regenerations > 0

    def headline(self) -> str:
        return (
            f"#{self.index} · scene {self.scene_index + 1} · {format_time(self.start_s)}–"
            f"{format_time(self.start_s + self.duration_s)} · {self.state}"
        )

    def production(self) -> str:
        parts = [self.provider + (f" / {self.model}" if self.model else ""), f"${self.cost_usd:.2f}"]
        if self.cached:
            parts.append("from cache")
        elif self.generate_seconds is not None:
            parts.append(f"made in {self.generate_seconds:.1f} s")
        parts.append(f"{self.attempts} task{'s' if self.attempts != 1 else ''}")
        return " · ".join(parts)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    title: str
    prompt: str
    status: RunStatus
    planner: str
    duration_s: float
    fps: int
    width: int
    height: int
    cost_usd: float
    created_at: str
    updated_at: str
    warnings: list[str]
    error: str | None
    segments: list[SegmentSummary] = field(default_factory=list)

    @property
    def regenerated_segments(self) -> int:
        return sum(1 for s in self.segments if s.regenerated)


def format_time(seconds: float) -> str:
    """m:ss.s, e.g. 1:05.5."""
    minutes, rest = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def summarise(manifest: RunManifest, plan: RunPlan) -> RunSummary:
    jobs = {job.index: job for job in plan.segments}
    spec = manifest.spec
    width, height = spec.frame_size
    segments = []
    for record in manifest.segments:
        job = jobs.get(record.index)
        scene = job.scene if job is not None else plan.storyboard.scenes[min(record.scene_index, len(plan.storyboard.scenes) - 1)]
        segments.append(
            SegmentSummary(
                index=record.index,
                scene_index=record.scene_index,
                scene_text=scene.description,
                # A provider's safety refusal may have had the planner reword it.
                prompt=record.rephrased_prompt or (job.prompt if job is not None else ""),
                state=record.state.value,
                provider=record.provider,
                model=record.clip.model if record.clip else None,
                cost_usd=record.cost_usd,
                generate_seconds=record.clip.seconds_spent if record.clip else None,
                cached=record.cached,
                attempts=record.attempts,
                regenerations=record.regenerations,
                judged=[AttemptSummary.from_record(n, attempt) for n, attempt in enumerate(record.scores, start=1)],
                error=record.error,
                video_path=record.clip.path if record.clip else None,
                fps=float(job.fps if job is not None else spec.fps),
                start_frame=job.start_frame if job is not None else 0,
                frames=job.frames if job is not None else (record.clip.frames if record.clip else 0),
                candidates=tuple(record.candidates),
            )
        )
    return RunSummary(
        run_id=manifest.run_id,
        title=plan.storyboard.title,
        prompt=spec.prompt,
        status=manifest.status,
        planner=plan.storyboard.planner,
        duration_s=stretched_s(plan, spec) or manifest.duration_s,  # as planned: narration may have stretched it
        fps=spec.fps,
        width=width,
        height=height,
        cost_usd=manifest.cost_usd,
        created_at=manifest.created_at,
        updated_at=manifest.updated_at,
        warnings=list(manifest.warnings),
        error=manifest.error,
        segments=segments,
    )


def keyframe_indices(frames: int, count: int) -> list[int]:
    """`count` evenly spaced frame indices over [0, frames - 1], both ends included (fewer
    when the segment is shorter than `count` frames)."""
    if frames <= 0 or count <= 0:
        return []
    if frames <= count:
        return list(range(frames))
    return sorted({round(float(x)) for x in np.linspace(0, frames - 1, count)})
