"""Versions of a run's video in its run folder: history.json, each version's snapshot under
versions/vN/, and the edit that is making the next one (versions/vN/edit.json).

v1 is the original render; it is written lazily, from the run's current files, on the
first edit, so run folders from before editing work unchanged (their manifest.json is not
rewritten). Everything goes through the RunFolder interface: local disk or S3 alike.
"""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ..editing.edits import EditRequest
from ..manifest import RunManifest, load_manifest
from .layout import CONTACT_SHEET, FINAL, HISTORY, MANIFEST, PLAN, REPORT, REPORT_HTML, segment_path, version_path
from .narration_step import NARRATION_WAV, SUBTITLES_SRT, SUBTITLES_VTT
from .store import RunFolder, write_model

# What a version is made of, copied into versions/vN/ when it is finished (its segment files
# are copied there only when a later edit makes them again: repoint_snapshots).
SNAPSHOT_FILES = (FINAL, MANIFEST, PLAN, REPORT, REPORT_HTML, CONTACT_SHEET, NARRATION_WAV, SUBTITLES_SRT, SUBTITLES_VTT)
EDIT = "edit.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class VersionStatus(str, enum.Enum):
    RENDERING = "rendering"
    DONE = "done"


class VersionRecord(BaseModel):
    """One version in history.json: what the edit asked, what it did, what it cost."""

    model_config = ConfigDict(extra="forbid")

    version: int
    created_at: str = Field(default_factory=_now)
    status: VersionStatus = VersionStatus.DONE
    edits: list[dict] = []  # the EditRequest's edits as JSON (v1: none)
    regenerated: list[int] = []
    reused: list[int] = []
    replaced: list[int] = []
    locked: list[int] = []
    estimate_usd: float = 0.0  # the cheapest bound shown before it ran
    cost_usd: float = 0.0  # committed by this version alone
    # Who asked, for idempotency: a batch line's or an API request's key (absent otherwise).
    key: Annotated[str | None, Field(exclude_if=lambda v: v is None)] = None

    @property
    def video(self) -> str:
        return version_path(self.version, FINAL)


class History(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    locked: list[int] = []  # segments no edit, chain or judge may regenerate
    versions: list[VersionRecord] = []

    @property
    def latest(self) -> int:
        return self.versions[-1].version if self.versions else 1

    def version(self, number: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == number), None)

    def keyed(self, key: str) -> VersionRecord | None:
        """The version an edit with this idempotency key made, if any."""
        return next((v for v in self.versions if v.key == key), None)


class EditStage(str, enum.Enum):
    PREPARED = "prepared"  # edit.json and the new plan are written; the run's manifest is still the old version's
    APPLIED = "applied"  # plan.json and manifest.json are the new version's: resume renders it
    DONE = "done"  # snapshotted and in history.json


class PendingEdit(BaseModel):
    """versions/vN/edit.json: everything needed to apply and finish the edit again after a
    crash (the decisions were made once, before anything was paid)."""

    model_config = ConfigDict(extra="forbid")

    version: int
    stage: EditStage = EditStage.PREPARED
    request: EditRequest
    decisions: dict[int, tuple[str, str]]  # segment -> (decision, why)
    sources: dict[int, int]  # kept segment -> the previous version's segment it keeps
    uploads: dict[int, str] = {}  # replaced segment -> its clip, copied into the version folder
    locked: list[int] = []
    budget_usd: Annotated[float | None, Field(exclude_if=lambda v: v is None)] = None
    estimate_usd: float = 0.0
    created_at: str = Field(default_factory=_now)
    key: Annotated[str | None, Field(exclude_if=lambda v: v is None)] = None
    speech_costs: list[tuple[str, float]] = []  # (clip key, USD) of the edited narration, paid while preparing


def read_history(run: RunFolder) -> History | None:
    return History.model_validate_json(run.read_bytes(HISTORY)) if run.exists(HISTORY) else None


def write_history(run: RunFolder, history: History) -> None:
    write_model(run, HISTORY, history)


def first_history(manifest: RunManifest) -> History:
    """The history of a run never edited: v1, the original render."""
    indices = [r.index for r in manifest.segments]
    v1 = VersionRecord(version=1, created_at=manifest.created_at, regenerated=[i for i in indices if not manifest.segments[i].cached],
                       reused=[i for i in indices if manifest.segments[i].cached], cost_usd=manifest.cost_usd)
    return History(run_id=manifest.run_id, versions=[v1])


def current_history(run: RunFolder, manifest: RunManifest) -> History:
    """history.json, or the one-version history an unedited run has (nothing is written)."""
    return read_history(run) or first_history(manifest)


def snapshot(run: RunFolder, version: int) -> None:
    """Copy the run's current final video, manifest, plan and report into versions/vN/."""
    for name in SNAPSHOT_FILES:
        if run.exists(name):
            run.publish(version_path(version, name), run.local_path(name))


def ensure_first_version(run: RunFolder, manifest: RunManifest) -> History:
    """history.json with v1 snapshotted, made on the first edit (idempotent: the snapshot is
    written before history.json, so a crash between them just copies again)."""
    history = read_history(run)
    if history is not None:
        return history
    snapshot(run, 1)
    history = first_history(manifest)
    write_history(run, history)
    return history


def repoint_snapshots(run: RunFolder, version: int, remade: list[int]) -> None:
    """Version `version` is about to write segments `remade` over the files earlier versions'
    manifests name (their copies are already in versions/v{version-1}/segments/): point those
    manifests at the copies (idempotent)."""
    moved = {segment_path(i): version_path(version - 1, segment_path(i)) for i in remade}
    for earlier in range(1, version):
        where = version_path(earlier, MANIFEST)
        if not run.exists(where):
            continue
        manifest = version_manifest(run, earlier)
        segments = [r.model_copy(update={"clip": r.clip.model_copy(update={"path": moved[r.clip.path]})})
                    if r.clip is not None and r.clip.path in moved and run.exists(moved[r.clip.path]) else r
                    for r in manifest.segments]
        if segments != manifest.segments:
            write_model(run, where, manifest.model_copy(update={"segments": segments}))


def version_manifest(run: RunFolder, version: int) -> RunManifest:
    where = version_path(version, MANIFEST)
    return load_manifest(run.read_bytes(where).decode(), run.location(where))


def pending_edit(run: RunFolder, history: History | None = None) -> PendingEdit | None:
    """The edit making the version after the latest finished one, if one was started."""
    history = history or read_history(run)
    if history is None:
        return None
    where = version_path(history.latest + 1, EDIT)
    if not run.exists(where):
        return None
    pending = PendingEdit.model_validate_json(run.read_bytes(where))
    return pending if pending.stage is not EditStage.DONE else None


def edit_spec(run: RunFolder, manifest: RunManifest):
    """The spec an unfinished edit generates under: the run's, with the edit's own budget
    (kept in edit.json only, so manifest.json keeps the user's request); None otherwise."""
    pending = pending_edit(run)
    if pending is None or pending.stage is not EditStage.APPLIED:
        return None
    return manifest.spec.model_copy(update={"budget_usd": pending.budget_usd})


def write_pending(run: RunFolder, pending: PendingEdit) -> None:
    write_model(run, version_path(pending.version, EDIT), pending)
