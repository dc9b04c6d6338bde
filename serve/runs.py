"""Renders as the API keeps them: in the durable run store, never in replica memory, so a
restarted replica or a second one sees the same renders.

Beside the pipeline's plan.json and manifest.json, each run folder made by the API holds:

- request.json: who asked (a token fingerprint, never the token) and a hash of the request,
  for idempotent resubmission and per-token limits; created exclusively, so two replicas
  given the same Idempotency-Key make one render;
- worker.json: the current attempt's id and the heartbeat of the replica running it (a
  render whose heartbeat stops is reported interrupted, and can be resumed);
- cancel.requested: the attempt a user asked to stop. The replica running that attempt
  watches for it and sets the pipeline's stop event, whichever replica took the DELETE.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from longvid.errors import InputError, LongvidError
from longvid.manifest import RunManifest, RunPlan, RunStatus, SegmentRecord, stretched_s
from longvid.runtime.layout import CANCEL, MANIFEST, PLAN, REQUEST, WORKER
from longvid.runtime.narration_step import book_speech_costs
from longvid.runtime.store import read_manifest, write_model

from .images import InputImages
from .views import scrub_html


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    manifest: RunManifest
    request: dict | None  # None for runs the API did not create (CLI, batch jobs)
    worker: dict | None

    @property
    def heartbeat_at(self) -> float | None:
        try:
            return float(self.worker["heartbeat_at"]) if self.worker else None
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def attempt(self) -> str | None:
        return self.worker.get("attempt") if self.worker else None


def new_render_id() -> str:
    """Time-ordered and unguessable: 20250101-120000-1a2b3c4d5e."""
    return f"{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(5)}"


def worker_record(attempt: str, now: float | None = None) -> bytes:
    return json.dumps({"attempt": attempt, "heartbeat_at": time.time() if now is None else now}).encode()


class RenderStore:
    """The API's reads and writes in the run store."""

    def __init__(self, store):
        self.store = store
        self.inputs = InputImages(store)

    @property
    def hidden_paths(self) -> list[str]:
        """Server locations to keep out of anything shown to clients."""
        hidden = [str(self.store.url)]
        if getattr(self.store, "root", None) is not None:
            hidden.append(str(Path(self.store.root).resolve()))
        if getattr(self.store, "scratch_root", None) is not None:
            hidden.append(str(self.store.scratch_root))
        return hidden

    def check_reachable(self) -> None:
        """Raise if the store cannot be reached (for health checks): cheap, no listing."""
        root = getattr(self.store, "root", None)
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                raise RuntimeError("the run store folder is not writable")
        else:
            self.store.client.head_bucket(Bucket=self.store.bucket)

    # -- reads -----------------------------------------------------------------------------

    def open(self, run_id: str):
        """The run folder, or None if there is no such run (or the id cannot name one)."""
        try:
            return self.store.open(run_id) if self.store.has_run(run_id) else None
        except InputError:
            return None

    def read_json(self, run, name: str) -> dict | None:
        try:
            if not run.exists(name):
                return None
            data = json.loads(run.read_bytes(name))
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def load(self, run_id: str) -> RunRecord | None:
        run = self.open(run_id)
        if run is None:
            return None
        return self._record(run)

    def _record(self, run) -> RunRecord | None:
        try:
            manifest = self.read_manifest(run)
        except (LongvidError, OSError):
            return None  # unreadable: shown as missing rather than as a server error
        return RunRecord(run.run_id, manifest, self.read_json(run, REQUEST), self.read_json(run, WORKER))

    def read_manifest(self, run) -> RunManifest:
        raw = json.loads(run.read_bytes(MANIFEST))
        paths = raw.get("spec", {}).get("reference_images", []) if isinstance(raw, dict) else []
        self.inputs.materialize(paths)  # the spec's images must be readable for it to validate
        return read_manifest(run)

    def report_html(self, record: RunRecord, video_link: str) -> str:
        """The run's report as served over HTTP: the same page as its report.html, with the
        video played from `video_link` (a signed API link) instead of the file beside it, and
        no server paths (in error texts and warnings)."""
        from longvid.review import report_html

        run = self.store.open(record.run_id)
        plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
        return scrub_html(report_html(run, record.manifest, plan, video_src=video_link), self.hidden_paths)

    def request_of(self, run_id: str) -> dict | None:
        run = self.open_folder(run_id)
        return None if run is None else self.read_json(run, REQUEST)

    def open_folder(self, run_id: str):
        """The folder even while it is being created (no manifest yet)."""
        from longvid.runtime.store import LocalRunFolder, LocalRunStore, S3RunFolder, check_run_id

        try:
            check_run_id(run_id)
        except InputError:
            return None
        if isinstance(self.store, LocalRunStore):
            path = Path(self.store.root) / run_id
            return LocalRunFolder(path) if path.is_dir() else None
        return S3RunFolder(self.store, run_id)

    def records(self, owner: str | None = None) -> list[RunRecord]:
        """Every readable run (only those `owner` asked for, when given)."""
        out = []
        for run_id in self.store.list_runs():
            run = self.open(run_id)
            if run is None or (owner is not None and (self.read_json(run, REQUEST) or {}).get("owner") != owner):
                continue
            record = self._record(run)
            if record is not None:
                out.append(record)
        return out

    # -- reference images kept for renders (serve/inputs.py) --------------------------------

    def kept_inputs(self, owner: str) -> dict[str, int]:
        """The distinct reference images `owner`'s renders refer to: name -> bytes."""
        return {Path(p).name: self.inputs.size(Path(p).name)
                for record in self.records(owner) for p in record.manifest.spec.reference_images}

    def referenced_inputs(self) -> set[str]:
        """Names of the stored images any run refers to (read from the raw manifests, so a
        run whose images are missing still counts)."""
        names: set[str] = set()
        for run_id in self.store.list_runs():
            try:
                raw = json.loads(self.store.open(run_id).read_bytes(MANIFEST))
                names.update(Path(str(p)).name for p in raw.get("spec", {}).get("reference_images", []))
            except (ValueError, AttributeError):
                continue  # a corrupt manifest (not JSON, not an object): no render can use its images
            # Any other failure (the store unreachable) ends the sweep: better keep an orphan than
            # delete what a run it could not read refers to.
        return names

    def sweep_inputs(self, now: float, grace_s: float) -> list[str]:
        """Remove stored images no run refers to, and stages left behind, once older than
        `grace_s`; the names removed."""
        from .inputs import orphaned

        self.inputs.discard_stale_stages(now, grace_s)
        referenced = self.referenced_inputs()  # listed before the images: one written after is younger than the grace
        candidates = orphaned(self.inputs.written(), referenced, now, grace_s)
        # Checked again at deletion: an image saved again meanwhile (a new render) is kept.
        return [name for name in candidates if self.inputs.delete(name, written_before=now - grace_s)]

    def cancel_requested(self, run, attempt: str) -> bool:
        marker = self.read_json(run, CANCEL)
        return marker is not None and marker.get("attempt") == attempt

    # -- writes ----------------------------------------------------------------------------

    def admit(self, run_id: str, owner: str, request_sha256: str, spec, plan: RunPlan, warnings: list[str],
              speech_costs=()) -> str | None:
        """Create the run folder of a new render, ready for a worker: request.json (made
        exclusively), plan.json, worker.json and a 'planned' manifest, whose ledger holds the
        speech paid for while planning it (`speech_costs`: (clip key, USD) pairs). Returns the
        attempt id, or None if a render with this id exists already (or is being created)."""
        try:
            run = self.store.create(run_id)
        except FileExistsError:
            return None
        request = {"owner": owner, "request_sha256": request_sha256, "created_at": time.time()}
        if not run.create_exclusive(REQUEST, json.dumps(request).encode()):
            return None
        write_model(run, PLAN, plan)
        attempt = secrets.token_hex(8)
        run.write_bytes(WORKER, worker_record(attempt))
        manifest = RunManifest(
            run_id=run_id, spec=spec, status=RunStatus.PLANNED, warnings=warnings, stretched_s=stretched_s(plan, spec),
            segments=[SegmentRecord(index=j.index, scene_index=j.scene_index, provider=spec.provider) for j in plan.segments],
        )
        manifest = book_speech_costs(manifest, [(str(key), float(cost)) for key, cost in speech_costs])
        write_model(run, MANIFEST, manifest)
        return attempt

    def requeue(self, record: RunRecord) -> str:
        """A new attempt for a stopped run (resume): shown as queued until a worker takes it."""
        run = self.store.open(record.run_id)
        attempt = secrets.token_hex(8)
        run.write_bytes(WORKER, worker_record(attempt))
        write_model(run, MANIFEST, record.manifest.model_copy(update={"status": RunStatus.PLANNED, "error": None}))
        return attempt

    def request_cancel(self, record: RunRecord) -> None:
        run = self.store.open(record.run_id)
        run.write_bytes(CANCEL, json.dumps({"attempt": record.attempt, "requested_at": time.time()}).encode())

    def mark_failed(self, run_id: str, error: str) -> None:
        self.mark_stopped(run_id, RunStatus.FAILED, error)

    def mark_stopped(self, run_id: str, status: RunStatus, error: str) -> None:
        """End a run no worker has taken (status failed or cancelled; it stays resumable)."""
        run = self.store.open(run_id)
        manifest = self.read_manifest(run)
        write_model(run, MANIFEST, manifest.model_copy(update={"status": RunStatus(status), "error": error}))

    def heartbeat(self, run, attempt: str) -> None:
        run.write_bytes(WORKER, worker_record(attempt))
