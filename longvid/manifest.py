"""The run manifest: every segment's state, and the rules for moving between states.

Pure data and pure transitions: the runtime writes a manifest after every transition, so a
reader (a resumed render, `longvid status`, the HTTP API) always sees a consistent picture.
"""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, describe_validation_error
from .providers.ledger import CostLedger, LedgerEntry
from .sound.narration import NarrationRecord
from .spec import Clip, RenderSpec, SegmentJob, SegmentState, Storyboard

MANIFEST_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

# Which state may follow which. FAILED can be retried (back to PENDING); GENERATED may skip
# JUDGED when no judge is configured.
ALLOWED_TRANSITIONS: dict[SegmentState, frozenset[SegmentState]] = {
    # PENDING -> GENERATED: reused from the segment cache, nothing was submitted.
    SegmentState.PENDING: frozenset({SegmentState.SUBMITTED, SegmentState.GENERATED, SegmentState.FAILED}),
    SegmentState.SUBMITTED: frozenset({SegmentState.GENERATED, SegmentState.FAILED}),
    SegmentState.GENERATED: frozenset({SegmentState.JUDGED, SegmentState.ACCEPTED, SegmentState.FAILED}),
    SegmentState.JUDGED: frozenset({SegmentState.ACCEPTED, SegmentState.FAILED}),
    SegmentState.ACCEPTED: frozenset(),
    SegmentState.FAILED: frozenset({SegmentState.PENDING}),
}


class IllegalTransition(ValueError):
    pass


class RunStatus(enum.StrEnum):
    """Where a whole render stands (the HTTP API shows PLANNED as 'queued')."""

    PLANNED = "planned"  # the Serve API made the run folder; no worker has started it yet
    RENDERING = "rendering"
    MERGING = "merging"
    DONE = "done"
    FAILED = "failed"  # resumable: finished segments are kept
    CANCELLED = "cancelled"  # resumable, like FAILED

    @property
    def finished(self) -> bool:
        """Nothing is working on the run (done, or stopped and resumable)."""
        return self in (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED)


SCORE_NAMES = ("anchor", "seam", "prompt", "character", "flicker", "smoothness", "jump", "drift", "subject", "background",
               "aesthetic")  # the judge's checks, in its order


def _unmeasured(value: object) -> bool:
    return value is None


class VisionVerdict(BaseModel):
    """What the Gemini vision judge said of one attempt (consistency/gemini_judge.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    character: float
    scene: float
    lighting: float
    motion: float
    passed: bool
    reasons: tuple[str, ...] = ()
    adjustments: tuple[str, ...] = ()
    cost_usd: float = 0.0


class AttemptRecord(BaseModel):
    """One judged attempt of a segment: the seed it was made with, the judge's verdict and
    checks, and the file it was kept in (written only when the judge rejected it, so a
    better later attempt can replace it or it can be kept as the best of a bad lot).

    The fields are the judge's (consistency.judge.SegmentScores, less `passed`, plus its
    notes), flat, as manifests have always stored them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    passed: bool
    quality: float  # higher is better; picks the attempt to keep when none passes
    file: str  # segments/seg_NNNN.attemptK.mp4
    sha256: str  # of the attempt's bytes
    # The checks; None when not measured (no seam at a scene's start, no prompt without CLIP).
    anchor: float | None = None
    seam: float | None = None
    prompt: float | None = None
    character: float | None = None
    failures: tuple[str, ...] = ()  # why it failed, one line per check
    backend: str | None = None  # the scorer: "clip" or "structural"
    keyframes: tuple[int, ...] = ()  # frame indices that were judged
    seconds: float = 0.0  # the judge's time on it
    notes: str = ""
    # Weight-free temporal metrics (consistency/temporal.py). Left out of the JSON when not
    # measured, so manifests from judges without them keep the shape they always had.
    flicker: float | None = Field(default=None, exclude_if=_unmeasured)
    smoothness: float | None = Field(default=None, exclude_if=_unmeasured)
    jump: float | None = Field(default=None, exclude_if=_unmeasured)
    drift: float | None = Field(default=None, exclude_if=_unmeasured)  # long-range (consistency/longrange.py)
    vision: VisionVerdict | None = Field(default=None, exclude_if=_unmeasured)  # Gemini's verdict, when it was asked
    # Weighted VBench metrics (consistency/weighted.py), only where their weights are present.
    subject: float | None = Field(default=None, exclude_if=_unmeasured)
    background: float | None = Field(default=None, exclude_if=_unmeasured)
    aesthetic: float | None = Field(default=None, exclude_if=_unmeasured)

    @property
    def measured(self) -> dict[str, float]:
        """The checks that were measured, in the judge's order."""
        return {name: value for name in SCORE_NAMES if (value := getattr(self, name)) is not None}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class CandidateRecord(BaseModel):
    """One of a segment's best-of-N candidates (runtime/candidates.py), as the judge scored it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int  # 0: the planned seed
    seed: int
    provider: str
    passed: bool
    quality: float
    file: str  # segments/seg_NNNN.candK.mp4
    sha256: str
    cost_usd: float = 0.0
    kept: bool = False
    scores: dict[str, float] = {}  # the checks that were measured
    reason: str = ""


class SegmentRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    scene_index: int
    state: SegmentState = SegmentState.PENDING
    provider: str
    task_id: str | None = None
    cache_key: str | None = None  # what the submitted task was asked to make
    seed: int | None = None
    attempts: int = 0  # provider tasks created for this segment
    regenerations: int = 0  # times the judge sent it back
    cached: bool = False  # reused from the segment cache, nothing generated
    clip: Clip | None = None
    cost_usd: float = 0.0
    resources: dict[str, float] | None = None
    scores: list[AttemptRecord] = []  # one per judged attempt, oldest first
    error: str | None = None
    history: list[str] = []  # why it was reset, retried or regenerated
    # The planner's rewording of this segment's prompt after a provider refused it for
    # safety; used instead of the planned prompt from then on (resume included).
    rephrased_prompt: str | None = None
    updated_at: str = Field(default_factory=_now)
    # A vision judge's suggested changes, folded into the prompt of this segment's next
    # attempt (runtime/acceptance.fold_adjustments); left out of the JSON when none.
    prompt_adjustments: tuple[str, ...] = Field(default=(), exclude_if=lambda value: not value)
    # Best-of-N: every candidate of this segment with its scores; left out of the JSON when none.
    candidates: tuple[CandidateRecord, ...] = Field(default=(), exclude_if=lambda value: not value)


class RunPlan(BaseModel):
    """plan.json: the storyboard and the exact segment jobs, so a resumed render makes the
    same segments even if planning rules change between versions."""

    model_config = ConfigDict(extra="forbid")

    version: int = MANIFEST_VERSION
    storyboard: Storyboard
    segments: list[SegmentJob]
    # Who spoke the narration, what and when (runtime/narration_step.py); absent when silent.
    narration: Annotated[NarrationRecord | None, Field(exclude_if=lambda v: v is None)] = None


def stretched_s(plan: RunPlan, spec: RenderSpec) -> float | None:
    """The planned length in seconds when the narration made it longer than requested, else None."""
    if plan.narration is None:
        return None
    planned = sum(plan.narration.scene_frames) / plan.narration.fps
    return round(planned, 6) if planned > spec.duration_s + 1e-9 else None


class RunManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = MANIFEST_VERSION
    run_id: str
    spec: RenderSpec
    status: RunStatus = RunStatus.PLANNED
    segments: list[SegmentRecord] = []
    output: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()  # added by with_warnings, never in place
    ledger: list[LedgerEntry] = []  # every paid call: reserved before it is made, charged after
    created_at: str = Field(default_factory=_now)
    updated_at: str = Field(default_factory=_now)
    # The video's planned length when narration stretched it past spec.duration_s (absent
    # otherwise, so manifests without it write back byte for byte).
    stretched_s: Annotated[float | None, Field(exclude_if=lambda v: v is None)] = None

    @property
    def duration_s(self) -> float:
        """How long the video is planned to be: the requested length, or the narration's."""
        return self.stretched_s if self.stretched_s is not None else self.spec.duration_s

    @property
    def cost_usd(self) -> float:
        """Money committed: the ledger's total (failed and discarded attempts included)."""
        if self.ledger:
            return self._cost_ledger().committed_usd
        return round(sum(s.cost_usd for s in self.segments), 6)

    def cost_breakdown(self) -> dict[str, dict]:
        """Committed money per provider and per segment (the ledger's view)."""
        ledger = self._cost_ledger()
        return {"by_provider": ledger.by_provider(), "by_segment": {str(k): v for k, v in ledger.by_segment().items()}}

    def _cost_ledger(self) -> CostLedger:
        return CostLedger(entries=list(self.ledger))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.segments:
            out[record.state.value] = out.get(record.state.value, 0) + 1
        return out


def transition(manifest: RunManifest, index: int, new_state: SegmentState, **changes) -> RunManifest:
    """Return a new manifest with segment `index` moved to `new_state` (and `changes` applied).

    Refuses moves the state machine does not allow, so a bug cannot, say, accept a segment
    that was never generated.
    """
    record = manifest.segments[index]
    if new_state not in ALLOWED_TRANSITIONS[record.state]:
        raise IllegalTransition(f"segment {index}: {record.state.value} -> {new_state.value} is not allowed")
    if new_state in (SegmentState.GENERATED, SegmentState.ACCEPTED):
        changes.setdefault("error", None)  # an earlier try's failure is history now, not this segment's state
    if new_state is SegmentState.SUBMITTED:
        changes.setdefault("attempts", record.attempts + 1)
    updated = record.model_copy(update={**changes, "state": new_state, "updated_at": _now()})
    return _with_segment(manifest, index, updated, updated_at=_now())


def update_record(manifest: RunManifest, index: int, **changes) -> RunManifest:
    """Return a new manifest with fields of segment `index` changed, its state unchanged
    (a new seed, a rewording, a kept attempt's file, the reason it waits)."""
    return _with_segment(manifest, index, manifest.segments[index].model_copy(update=changes))


def _with_segment(manifest: RunManifest, index: int, record: SegmentRecord, **changes) -> RunManifest:
    segments = list(manifest.segments)
    segments[index] = record
    return manifest.model_copy(update={"segments": segments, **changes})


def with_warnings(manifest: RunManifest, *texts: str) -> RunManifest:
    """Return a new manifest with `texts` added to its warnings, each once (a resumed render
    that meets the same problem again does not repeat it)."""
    new = [t for i, t in enumerate(texts) if t not in manifest.warnings and t not in texts[:i]]
    if not new:
        return manifest
    return manifest.model_copy(update={"warnings": (*manifest.warnings, *new), "updated_at": _now()})


def reset(manifest: RunManifest, index: int, reason: str) -> RunManifest:
    """Send a segment back to PENDING whatever its state (its file was lost or corrupt, or
    the judge rejected it), keeping the reason in its history."""
    record = manifest.segments[index]
    updated = record.model_copy(
        update={
            "state": SegmentState.PENDING,
            "clip": None,
            "task_id": None,
            "cache_key": None,
            "cached": False,
            "history": [*record.history, f"{_now()} reset from {record.state.value}: {reason}"],
            "updated_at": _now(),
        }
    )
    return _with_segment(manifest, index, updated, updated_at=_now())


def load_manifest(text: str, where: str = "manifest.json") -> RunManifest:
    """Parse a manifest, refusing clearly one that is corrupt or from another version."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        raise InputError(f"{where} is corrupt or truncated (not valid JSON); the run cannot be resumed from it") from None
    version = data.get("version") if isinstance(data, dict) else None
    if version not in SUPPORTED_VERSIONS:
        newer = isinstance(version, int) and version > MANIFEST_VERSION
        hint = "upgrade longvid to resume it" if newer else "it cannot be resumed by this longvid"
        raise InputError(f"{where} has manifest version {version!r}; this longvid reads {sorted(SUPPORTED_VERSIONS)}: {hint}")
    try:
        return RunManifest.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where} is invalid: {describe_validation_error(exc)}") from None
