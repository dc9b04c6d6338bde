"""The run manifest: every segment's state, and the rules for moving between states.

Pure data and pure transitions: the runtime writes a manifest after every transition, so a
reader (a resumed render, `longvid status`, the HTTP API) always sees a consistent picture.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .spec import Clip, RenderSpec, SegmentState

MANIFEST_VERSION = 1

# Which state may follow which. FAILED can be retried (back to PENDING); GENERATED may skip
# JUDGED when no judge is configured.
ALLOWED_TRANSITIONS: dict[SegmentState, frozenset[SegmentState]] = {
    SegmentState.PENDING: frozenset({SegmentState.SUBMITTED, SegmentState.FAILED}),
    SegmentState.SUBMITTED: frozenset({SegmentState.GENERATED, SegmentState.FAILED}),
    SegmentState.GENERATED: frozenset({SegmentState.JUDGED, SegmentState.ACCEPTED, SegmentState.FAILED}),
    SegmentState.JUDGED: frozenset({SegmentState.ACCEPTED, SegmentState.PENDING, SegmentState.FAILED}),
    SegmentState.ACCEPTED: frozenset(),
    SegmentState.FAILED: frozenset({SegmentState.PENDING}),
}


class IllegalTransition(ValueError):
    pass


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class SegmentRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    scene_index: int
    state: SegmentState = SegmentState.PENDING
    provider: str
    task_id: str | None = None
    attempts: int = 0
    clip: Clip | None = None
    cost_usd: float = 0.0
    resources: dict[str, float] | None = None
    error: str | None = None
    updated_at: str = Field(default_factory=_now)


class RunManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = MANIFEST_VERSION
    run_id: str
    spec: RenderSpec
    status: Annotated[str, Field(pattern="^(planned|rendering|merging|done|failed)$")] = "planned"
    segments: list[SegmentRecord] = []
    output: str | None = None
    error: str | None = None
    warnings: list[str] = []
    created_at: str = Field(default_factory=_now)
    updated_at: str = Field(default_factory=_now)

    @property
    def cost_usd(self) -> float:
        return round(sum(s.cost_usd for s in self.segments), 6)

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
    if new_state is SegmentState.SUBMITTED:
        changes.setdefault("attempts", record.attempts + 1)
    updated = record.model_copy(update={**changes, "state": new_state, "updated_at": _now()})
    segments = list(manifest.segments)
    segments[index] = updated
    return manifest.model_copy(update={"segments": segments, "updated_at": _now()})
