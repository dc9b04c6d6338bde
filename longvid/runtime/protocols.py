"""What the render pipeline needs from its collaborators, declared once: the planner, the
consistency judge, the progress sink and the judge's verdict. Anything with these methods
plugs in (the offline planner or Gemini; the CLIP/structural judge or a test double)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..spec import RenderSpec, SegmentJob, SegmentState, Storyboard


class PlanReport(Protocol):
    """A storyboard and what went wrong on the way to it (e.g. a fallback), for the manifest."""

    storyboard: Storyboard
    warnings: list[str]


class Planner(Protocol):
    """Storyboard from a spec (offline, Gemini, or anything alike), and the rewording of a
    segment prompt a provider refused for safety."""

    name: str

    def plan_with_report(self, spec: RenderSpec, max_scenes: int) -> PlanReport: ...

    def rephrase(self, text: str, reason: str) -> str: ...


class ProgressSink(Protocol):
    def planned(self, storyboard: Storyboard, jobs: list[SegmentJob], run: Any) -> None: ...

    def segment(self, index: int, state: SegmentState, detail: str = "") -> None: ...

    def merging(self) -> None: ...


class NullProgress:
    def planned(self, storyboard, jobs, run):
        pass

    def segment(self, index, state, detail=""):
        pass

    def merging(self):
        pass

    def close(self):  # as the CLI's live table, which has a screen to give back
        pass


@dataclass(frozen=True)
class JudgeVerdict:
    passed: bool
    scores: dict[str, Any]  # the judge's checks: AttemptRecord's fields from `anchor` on
    reason: str = ""
    quality: float = 0.0  # higher is better; picks the attempt to keep when none passes
    adjustments: tuple[str, ...] = ()  # a vision judge's suggested prompt changes for the regeneration
    warnings: tuple[str, ...] = ()  # for the run's warnings (e.g. the vision judge fell back)


class SegmentJudge(Protocol):
    """Scores a generated segment; a failing one is regenerated with a new seed."""

    max_attempts: int
    backend: str  # what scored: "clip", "structural", ...
    notes: str  # why that backend (e.g. a fallback), for the report

    def judge(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None) -> JudgeVerdict: ...

    def remember_accepted(self, job: SegmentJob, segment: Path) -> None:
        """An accepted segment: its characters and frames become context for later ones."""

    def save_state(self, run: Any) -> None:
        """Persist the judge's context (FramePack, character memory) in the run folder."""

    def close(self) -> None:
        """Release what the judge holds (Ray actors): it belongs to one render."""
