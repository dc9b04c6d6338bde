"""An edit of a finished run, as a render of its next version: prepare (check, re-plan,
decide what to regenerate, estimate; nothing written or paid: edited narration with a paid
engine is only estimated), begin (under the run's lease, once the edit is confirmed and
admitted: say that narration, record the edit with its speech costs, snapshot the old
version, write the new plan and manifest), render (the ordinary generate and merge steps),
finish (snapshot the new version, add it to history.json).

Each stage is written before the next one starts (versions/vN/edit.json says which), so an
edit interrupted anywhere continues with `longvid resume RUN` (or the API's POST /resume, or
the same keyed edit request again) under the same version number, and the resume machinery
polls tasks already created instead of paying again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable
from pathlib import Path

from ..editing.edits import EditRequest, apply_scene_edits
from ..editing.regeneration import Decision, RegenerationPlan, plan_regeneration
from ..errors import InputError
from ..manifest import RunManifest, RunPlan, RunStatus, SegmentRecord, stretched_s
from ..planning import segment_storyboard
from ..providers import provider_capabilities
from ..providers.estimate import CostEstimate, budget_verdict, estimate_cost
from ..providers.ledger import CostLedger
from ..sound.narration import Spoken
from ..spec import Clip, SegmentState, Storyboard
from .candidates import extra_candidate_seconds, plan_candidates
from .edit_narration import EditSpeech, narration_changed, speak_edit
from .narration_step import book_speech_costs
from .layout import FINAL, MANIFEST, PLAN, segment_path, version_path
from .router import candidate_providers
from .runlock import RunLock
from .store import RunFolder, read_manifest, sha256_file, write_model
from .versions import (
    EDIT, EditStage, History, PendingEdit, VersionRecord, current_history, ensure_first_version, pending_edit, read_history,
    repoint_snapshots, snapshot, version_manifest, write_history, write_pending,
)


@dataclass(frozen=True)
class PreparedEdit:
    """What an edit will do and may cost, before anything is written or paid."""

    run_id: str
    version: int
    request: EditRequest
    storyboard: Storyboard
    regeneration: RegenerationPlan
    estimate: CostEstimate
    locked: list[int]
    budget_usd: float | None
    warnings: list[str]
    narration: Spoken | None = None  # re-spoken when the edit changed what is said
    key: str | None = None  # the caller's idempotency key (a batch line, an API request)
    speech_estimate_usd: float = 0.0  # paid speech for edited narration, in `estimate` too
    # Says the edited narration with a paid engine: called by begin_edit under the run's
    # lease, once the edit is confirmed and admitted (a refused edit never pays for speech).
    speak_later: Callable[[], EditSpeech] | None = None

    @property
    def new_version(self) -> bool:
        return self.request.changes_video

    def summary(self) -> dict:
        plan = self.regeneration
        return {"run_id": self.run_id, "version": self.version if self.new_version else None,
                "regenerate": plan.regenerated, "replace": plan.indices(Decision.REPLACE),
                "keep": plan.indices(Decision.KEEP, Decision.LOCKED), "locked": self.locked,
                "estimated_cost": self.estimate.to_dict(), "estimated_speech_usd": round(self.speech_estimate_usd, 4),
                "budget_usd": self.budget_usd, "warnings": self.warnings}


def check_clip(path: Path) -> None:
    """A one-line InputError unless PyAV decodes the clip's video frames (before anything is paid)."""
    from ..media import probe

    if not Path(path).is_file():
        raise InputError(f"replacement clip {path} does not exist")
    try:
        info = probe(Path(path))
    except Exception as exc:
        raise InputError(f"replacement clip {path} is not a video PyAV can decode ({exc.__class__.__name__})") from None
    if info.frames < 1:
        raise InputError(f"replacement clip {path} has no video frames")


def prepare_edit(pipeline, run_id: str, request: EditRequest, key: str | None = None,
                 estimate_only: bool = False) -> PreparedEdit:
    """Check `request` against run `run_id` and decide what it regenerates; nothing is written.
    `key`: the caller's idempotency key, kept in history.json with the version.
    `estimate_only`: the caller will not run it. Paid speech for an edited narration is only
    estimated here either way; begin_edit asks for it (a free engine speaks here, to check the fit)."""
    run = pipeline.store.open(run_id)
    manifest = read_manifest(run)
    history = current_history(run, manifest)
    if pending_edit(run, read_history(run)) is not None:
        raise InputError(f"run {run_id} has an unfinished edit (v{history.latest + 1}); finish it first: longvid resume {run_id}")
    if manifest.status is not RunStatus.DONE:
        raise InputError(f"run {run_id} is {manifest.status.value}, not done; finish it first: longvid resume {run_id}")
    plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
    spec = manifest.spec
    request.check_against(len(plan.segments), len(plan.storyboard.scenes), spec.narration == "auto", set(history.locked))
    for clip in request.replacements.values():
        check_clip(clip)
    capabilities = pipeline.check_inputs(spec)
    storyboard = apply_scene_edits(plan.storyboard, request)
    spoken, warnings, speech_usd, speak_later = None, [], 0.0, None
    scene_frames = plan.narration.scene_frames if plan.narration else None  # an edit keeps every scene's length
    if narration_changed(plan.storyboard, storyboard):
        speech = speak_edit(spec, plan, storyboard, pipeline.settings, pipeline.store, pipeline.allow_download, True)
        spoken, warnings, speech_usd = speech.spoken, list(speech.warnings), speech.estimate_usd
        if spoken is None and not estimate_only:
            settings, store, allow_download = pipeline.settings, pipeline.store, pipeline.allow_download
            speak_later = lambda: speak_edit(spec, plan, storyboard, settings, store, allow_download)  # noqa: E731
    if storyboard == plan.storyboard:
        jobs = list(plan.segments)
    else:
        try:
            jobs = segment_storyboard(storyboard, spec, capabilities.durations, scene_frames=scene_frames)
        except ValueError as exc:
            raise InputError(f"cannot segment the edited storyboard: {exc}") from None
    request.check_segment_count(len(plan.segments), len(jobs), set(history.locked))
    locked = sorted((set(history.locked) | request.locks) - request.unlocks)
    version = history.latest + 1
    regeneration = plan_regeneration(plan.segments, jobs, reseeds=request.reseeds, replaced=set(request.replacements),
                                     locked=set(locked), version=version)
    if (request.changes_video and storyboard == plan.storyboard
            and not regeneration.indices(Decision.REGENERATE, Decision.REPLACE)):
        raise InputError(f"this edit changes nothing: v{history.latest} of run {run_id} already is what it asks for")
    prices = {n: provider_capabilities(n, pipeline.settings).price_per_second_usd
              for n in candidate_providers(spec.provider, pipeline.settings)}
    budget = request.budget_usd if request.budget_usd is not None else spec.budget_usd
    remade = [regeneration.jobs[i] for i in regeneration.regenerated]
    estimate = estimate_cost((job.generate_duration_s for job in remade), prices)
    # Best-of-N: the regenerated segments' extra candidates, N lowered by the edit's budget
    # as the generate loop will lower it (kept segments make none).
    candidates, _ = plan_candidates(spec.model_copy(update={"budget_usd": budget}), remade, prices[estimate.cheapest])
    extra_s = extra_candidate_seconds(candidates, remade)
    estimate = replace(estimate, low_usd=estimate.low_usd + speech_usd + prices[estimate.cheapest] * extra_s,
                       high_usd=estimate.high_usd + speech_usd + prices[estimate.dearest] * extra_s)
    refusal, warning = budget_verdict(estimate, budget)
    if refusal is not None:
        raise InputError(refusal.replace("shorten --duration", "regenerate fewer segments"))
    return PreparedEdit(run_id, version, request, storyboard, regeneration, estimate, locked, budget,
                        [*warnings, *([warning] if warning else [])], spoken, key, speech_usd, speak_later)


def set_locks(pipeline, prepared: PreparedEdit) -> History:
    """A request that only locks or unlocks: history.json changes, no new version."""
    run = pipeline.store.open(prepared.run_id)
    with RunLock(run, pipeline.settings.store.run_lock_ttl_s):
        history = ensure_first_version(run, read_manifest(run))
        # From the history read under the lease, not prepared.locked (read before it): two
        # quick lock requests must both count.
        locked = sorted((set(history.locked) | prepared.request.locks) - prepared.request.unlocks)
        history = history.model_copy(update={"locked": locked})
        write_history(run, history)
        return history


def run_edit(pipeline, prepared: PreparedEdit, output: Path | None = None):
    """Make the new version: apply, render (generate only what changed, merge), finish."""
    started = time.perf_counter()
    run = pipeline.store.open(prepared.run_id)
    with RunLock(run, pipeline.settings.store.run_lock_ttl_s, on_lost=pipeline.stop.set) as lease:
        _check_still_current(run, prepared)
        prepared = with_speech(prepared)  # the clips are needed below; begin_edit does not speak again
        pending, manifest, plan = begin_edit(run, prepared)
        if output is not None:
            manifest = manifest.model_copy(update={"output": str(output)})
            write_model(run, MANIFEST, manifest)
        capabilities = pipeline.check_inputs(manifest.spec)
        spoken = prepared.narration
        result = pipeline._execute(run, manifest, plan.storyboard, plan.segments, capabilities, output, started, lease,
                                   plan.narration, spoken.clips if spoken else {})
        finish_version(run, pending)
        return result


class EditConflict(InputError):
    """The run changed between preparing an edit and starting it (another edit began or
    finished meanwhile): the edit must be prepared again (the API answers 409)."""


def begin_edit(run: RunFolder, prepared: PreparedEdit) -> tuple[PendingEdit, RunManifest, RunPlan]:
    """v1 snapshotted if this is the first edit, the edit recorded, then applied: from here
    a resume (the CLI's, a worker's) renders the new version. The caller holds the run's lease,
    so the checks below see the run as no other edit can change it until the edit is applied."""
    _check_still_current(run, prepared)
    prepared = with_speech(prepared)
    ensure_first_version(run, read_manifest(run))
    pending = _write_prepared(run, prepared)
    manifest, plan = apply_prepared(run, pending)
    return pending, manifest, plan


def with_speech(prepared: PreparedEdit) -> PreparedEdit:
    """`prepared` with its edited narration said, if a paid engine is to say it (paid here,
    and booked from edit.json when the edit is applied)."""
    if prepared.narration is not None or prepared.speak_later is None:
        return prepared
    return replace(prepared, narration=prepared.speak_later().spoken, speak_later=None)


def _check_still_current(run: RunFolder, prepared: PreparedEdit) -> None:
    """Refuse an edit prepared against a version that is no longer the run's latest finished
    one: a second edit prepared before the first one finished would otherwise write over
    the first one's version folder."""
    manifest = read_manifest(run)
    history = read_history(run)
    if pending_edit(run, history) is not None:
        raise EditConflict(f"run {run.run_id} has an unfinished edit (v{history.latest + 1}); "
                           f"finish it first: longvid resume {run.run_id}")
    if manifest.status is not RunStatus.DONE:
        raise EditConflict(f"run {run.run_id} is {manifest.status.value}, not done; finish it first: longvid resume {run.run_id}")
    latest = history.latest if history is not None else 1
    if latest + 1 != prepared.version:
        raise EditConflict(f"run {run.run_id} is at v{latest} now, not v{prepared.version - 1} as when this edit was "
                           f"prepared; prepare the edit again")


def _write_prepared(run: RunFolder, prepared: PreparedEdit) -> PendingEdit:
    """versions/vN/plan.json (the new plan), the user's clips, then edit.json: from here on
    the edit can be applied again from the run folder alone."""
    n = prepared.version
    if run.exists(version_path(n, EDIT)):  # never over another edit's version
        raise EditConflict(f"run {run.run_id} already has an edit making v{n}; prepare the edit again")
    plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
    if prepared.narration is None and narration_changed(plan.storyboard, prepared.storyboard):
        raise InputError("this edit was prepared as an estimate (its narration was not spoken); prepare it again to run it")
    narration = prepared.narration.record if prepared.narration else plan.narration
    write_model(run, version_path(n, "next_plan.json"),
                RunPlan(storyboard=prepared.storyboard, segments=prepared.regeneration.jobs, narration=narration))
    uploads = {}
    for index, clip in prepared.request.replacements.items():
        uploads[index] = version_path(n, f"uploads/seg_{index:04d}{Path(clip).suffix.lower() or '.mp4'}")
        run.publish(uploads[index], Path(clip))
    pending = PendingEdit(version=n, request=prepared.request, locked=prepared.locked, budget_usd=prepared.budget_usd,
                          decisions={i: (d.value, why) for i, (d, why) in prepared.regeneration.decisions.items()},
                          sources=prepared.regeneration.sources, uploads=uploads, estimate_usd=prepared.estimate.low_usd,
                          key=prepared.key, speech_costs=prepared.narration.costs if prepared.narration else [])
    write_pending(run, pending)
    return pending


def apply_prepared(run: RunFolder, pending: PendingEdit) -> tuple[RunManifest, RunPlan]:
    """Make the run's plan.json and manifest.json the new version's (again, after a crash):
    kept segments stay accepted with their files, the others start pending."""
    n = pending.version
    plan = RunPlan.model_validate_json(run.read_bytes(version_path(n, "next_plan.json")))
    if pending.stage is EditStage.APPLIED:
        return read_manifest(run), plan
    previous = version_manifest(run, n - 1)
    spec = previous.spec  # the user's request; the edit's cap stays in edit.json (versions.edit_spec)
    decisions = {job.index: Decision(pending.decisions[job.index][0]) for job in plan.segments}
    # Kept segments first: one that moved is copied from its old place, which a replaced
    # clip below may be written over.
    kept = {job.index: _kept(run, n, previous.segments[pending.sources[job.index]], job.index)
            for job in plan.segments if decisions[job.index] in (Decision.KEEP, Decision.LOCKED)}
    remade = [job.index for job in plan.segments if job.index not in kept]
    for index in remade:
        _preserve(run, n - 1, index)
    repoint_snapshots(run, n, remade)
    records = []
    for job in plan.segments:
        if job.index in kept:
            records.append(kept[job.index])
        elif decisions[job.index] is Decision.REPLACE:
            records.append(_replaced(run, job, pending.uploads[job.index]))
        else:
            records.append(SegmentRecord(index=job.index, scene_index=job.scene_index, provider=spec.provider,
                                         history=[f"edit v{n}: {pending.decisions[job.index][1]}"]))
    manifest = RunManifest(run_id=run.run_id, spec=spec, status=RunStatus.RENDERING, segments=records,
                           stretched_s=stretched_s(plan, spec), output=run.location(FINAL))
    manifest = book_speech_costs(manifest, [tuple(c) for c in pending.speech_costs])  # the edited narration, said before
    write_model(run, PLAN, plan)
    write_model(run, MANIFEST, manifest)
    write_pending(run, pending.model_copy(update={"stage": EditStage.APPLIED}))
    return manifest, plan


def _kept(run: RunFolder, version: int, record: SegmentRecord, index: int) -> SegmentRecord:
    """The previous version's accepted segment, at its (maybe new) place. A segment that
    moved gets a copy of its file in this version's folder, since the file at its old place
    may be regenerated."""
    clip = record.clip
    if index != record.index and clip is not None:
        path = version_path(version, f"kept/seg_{index:04d}.mp4")
        run.write_bytes(path, run.read_bytes(clip.path))  # from the store itself: a local copy may be another version's
        clip = clip.model_copy(update={"path": path, "segment_index": index})
    return record.model_copy(update={"index": index, "clip": clip, "cost_usd": 0.0})  # paid by an earlier version


def _preserve(run: RunFolder, previous: int, index: int) -> None:
    """Keep the previous version's file of segment `index` before this version overwrites it."""
    current, kept = segment_path(index), version_path(previous, segment_path(index))
    if run.exists(current) and not run.exists(kept):
        run.write_bytes(kept, run.read_bytes(current))  # from the store itself: a local copy may be another version's


def _replaced(run: RunFolder, job, upload: str) -> SegmentRecord:
    """The user's clip, fitted to the segment's frames and size in the house format, accepted
    as it is (never judged: the user chose it)."""
    from .normalisation import normalise_segment

    done = normalise_segment(job, run.local_path(upload).read_bytes(), False)
    path = segment_path(job.index)
    run.write_bytes(path, done.mp4)
    clip = Clip(segment_index=job.index, provider="user", model="upload", path=path, frames=job.frames, width=job.width,
                height=job.height, fps=job.fps, sha256=sha256_file(run.local_path(path)), normalised=True, original=upload)
    return SegmentRecord(index=job.index, scene_index=job.scene_index, provider="user", state=SegmentState.ACCEPTED, clip=clip,
                         history=[f"replaced by the user's clip {upload}"])


def finish_version(run: RunFolder, pending: PendingEdit) -> History:
    """The rendered version into versions/vN/ and history.json (idempotent)."""
    n = pending.version
    manifest = read_manifest(run)
    original = version_manifest(run, 1).spec
    if manifest.spec != original:  # an edit applied before its cap moved to edit.json wrote the cap here
        manifest = manifest.model_copy(update={"spec": original})
        write_model(run, MANIFEST, manifest)
    snapshot(run, n)
    history = read_history(run)
    if history.version(n) is None:
        decisions = {i: d for i, (d, _) in pending.decisions.items()}
        record = VersionRecord(
            version=n, created_at=pending.created_at, edits=[e.model_dump(mode="json") for e in pending.request.edits],
            regenerated=sorted(i for i, d in decisions.items() if d == Decision.REGENERATE.value),
            reused=sorted(i for i, d in decisions.items() if d in (Decision.KEEP.value, Decision.LOCKED.value)),
            replaced=sorted(i for i, d in decisions.items() if d == Decision.REPLACE.value), locked=pending.locked,
            estimate_usd=pending.estimate_usd, cost_usd=CostLedger(entries=list(manifest.ledger)).committed_usd, key=pending.key)
        history = history.model_copy(update={"versions": [*history.versions, record], "locked": pending.locked})
        write_history(run, history)
    write_pending(run, pending.model_copy(update={"stage": EditStage.DONE}))
    return history


def keyed_edit(run: RunFolder, key: str) -> tuple[str, int] | None:
    """("done", version) when an edit with this idempotency key made a version, ("pending",
    version) while it is being made, None when none was started (a re-submitted batch line
    or a retried API request does not edit twice)."""
    history = read_history(run)
    if history is not None and (done := history.keyed(key)) is not None:
        return "done", done.version
    pending = pending_edit(run, history)
    if pending is not None and pending.key == key:
        return "pending", pending.version
    return None
