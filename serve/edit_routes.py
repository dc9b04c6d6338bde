"""Editing a finished render over HTTP: POST /v1/renders/{id}/edits (estimate, then admit
like a render: the same per-token limit, an Idempotency-Key, a worker renders the new
version), GET /v1/renders/{id}/versions, and each version's video and report behind the
same ownership rules and signed links as the render's own.

(No `from __future__ import annotations` here: FastAPI reads the route signatures.)
"""

import base64
import binascii
import hashlib
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from longvid.editing import ReplaceEdit
from longvid.errors import InputError
from longvid.manifest import RunPlan, RunStatus
from longvid.runtime.layout import FINAL, PLAN, REPORT, version_path

from . import views
from .access import Access, Principal, checked_id
from .errors import ApiError
from .lookup import RenderLookup, not_found
from .models import ERRORS
from .security import signed_path


def _version_file(version: int, name: str, history) -> str:
    """A version's file; v1 of a never-edited render is the run's own file."""
    return name if history is None and version == 1 else version_path(version, name)


@contextmanager
def uploaded_clips(clips: object):
    """`{"<segment>": "<base64 MP4>"}` as files in a private temporary folder, removed after
    the request (the edit keeps its own copy); checked by decoding in prepare_edit."""
    if not isinstance(clips, dict) or not all(isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in clips.items()):
        raise ApiError(422, "invalid_request", "clips: an object of segment number -> base64 MP4")
    with tempfile.TemporaryDirectory(prefix="longvid-clips-") as folder:
        paths = {}
        for segment, data in clips.items():
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(422, "invalid_base64", f"clips.{segment} is not valid base64") from None
            paths[int(segment)] = Path(folder) / f"segment-{int(segment)}.mp4"
            paths[int(segment)].write_bytes(raw)
        yield paths


def public_edits(edits: list[dict]) -> list[dict]:
    """A version's edits as the API shows them: a replacement clip's server path left out."""
    return [{k: v for k, v in e.items() if k != "clip"} for e in edits]


def add_edit_routes(app: FastAPI, settings, records, guard: Access, lookup: RenderLookup, admission, start, clock) -> None:
    from longvid.wiring import RenderOptions, planning_pipeline

    def pipeline():
        # Checks and estimates only (no Ray, no judge); the offline planner: an edit re-plans nothing.
        return planning_pipeline(records.store, RenderOptions(planner="offline"), settings.longvid)

    def version_links(request: Request, run_id: str, version: int) -> dict:
        root, now = request.scope.get("root_path", "").rstrip("/"), clock()
        base = f"/v1/renders/{run_id}/versions/{version}"
        return {kind: root + signed_path(lookup.secret, f"{base}/{kind}", now, settings.link_ttl_s) for kind in ("video", "report")}

    def history_of(run_id: str):
        from longvid.runtime.store import read_manifest
        from longvid.runtime.versions import current_history, pending_edit, read_history

        run = records.store.open(run_id)
        saved = read_history(run)
        return run, saved, current_history(run, read_manifest(run)), pending_edit(run, saved)

    def admit_edit(run_id: str, prepared) -> str:
        from longvid.runtime.edit_run import begin_edit
        from longvid.runtime.runlock import RunLock

        run = records.store.open(run_id)
        with RunLock(run, settings.longvid.store.run_lock_ttl_s):
            begin_edit(run, prepared)
        return records.requeue(records.load(run_id))  # queued: a worker resumes it into the new version

    @app.post("/v1/renders/{render_id}/edits", status_code=202, response_model=None, responses=ERRORS, tags=["renders"])
    async def edit_render(
        request: Request, render_id: str, principal: Annotated[Principal, Depends(guard.writer)],
        body: Annotated[dict[str, Any], Body(description="an EditRequest: {\"edits\": [{\"kind\": \"scene\", \"scene\": 2, "
                                                         "\"text\": \"…\"}, {\"kind\": \"regenerate\", \"segment\": 3}, "
                                                         "{\"kind\": \"lock\", \"segments\": [0]}], \"budget_usd\": 2}")],
        estimate_only: Annotated[bool, Query(description="answer with what the edit would regenerate and cost; start nothing")] = False,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
    ) -> JSONResponse:
        """Edit a finished render into its next version: change scenes, regenerate or lock
        segments. Only what changed (and its chain) is regenerated; every version is kept."""
        from longvid.editing import parse_edit_request

        record = await lookup.load(render_id, principal)
        body = dict(body)
        clips = body.pop("clips", None) or {}
        try:
            edit = parse_edit_request(body, "edit")
        except InputError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        if any(isinstance(e, ReplaceEdit) for e in edit.edits):  # a path would name a file on this server
            raise ApiError(422, "invalid_request", "send a replacement clip as \"clips\": {\"<segment>\": \"<base64 MP4>\"}, "
                                                   "not as a replace edit with a path")
        with uploaded_clips(clips) as replacements:
            return await admit(request, record, principal, edit, replacements, estimate_only, idempotency_key)

    async def admit(request, record, principal, edit, replacements, estimate_only, idempotency_key) -> JSONResponse:
        from longvid.runtime.edit_run import EditConflict, keyed_edit, prepare_edit, set_locks
        from longvid.runtime.runlock import RunLocked

        if replacements:
            edit = edit.model_copy(update={"edits": [*edit.edits, *(ReplaceEdit(segment=i, clip=p) for i, p in replacements.items())]})
        key = None
        if idempotency_key is not None:  # a retried request finds the version it made
            key = "api:" + hashlib.sha256(f"{principal.owner}\n{idempotency_key}".encode()).hexdigest()[:40]
            state = await run_in_threadpool(keyed_edit, records.store.open(record.run_id), key)
            if state is not None:
                if state[0] == "pending":  # begun by this request before; start it again if its driver died
                    status, _ = views.effective_status(record.manifest.status, record.heartbeat_at, clock(), settings.stale_after_s)
                    if not views.is_active(status):
                        attempt = await run_in_threadpool(admission.start_within_limit, principal,
                                                          lambda: records.requeue(record), record.run_id)
                        await start(record.run_id, attempt)
                return JSONResponse({"id": record.run_id, "version": state[1], "status": "done" if state[0] == "done" else "queued",
                                     "links": version_links(request, record.run_id, state[1])}, status_code=200)
        status, _ = views.effective_status(record.manifest.status, record.heartbeat_at, clock(), settings.stale_after_s)
        if record.manifest.status is not RunStatus.DONE or status is not views.ApiStatus.DONE:
            raise ApiError(409, "not_editable", f"only a finished render can be edited; this one is {status.value}")
        try:
            prepared = await run_in_threadpool(prepare_edit, pipeline(), record.run_id, edit, key, estimate_only)
        except InputError as exc:
            message = str(exc)
            for segment, path in replacements.items():  # the temporary file's path is the server's business
                message = message.replace(str(path), f"clips.{segment}")
            raise ApiError(422, "invalid_request", views.scrub(message, records.hidden_paths)) from None
        summary = prepared.summary()
        if estimate_only:
            return JSONResponse(summary, status_code=200)
        if not prepared.new_version:
            try:
                history = await run_in_threadpool(set_locks, pipeline(), prepared)
            except RunLocked as exc:  # another request holds the run's lease for a moment: retry
                raise ApiError(409, "edit_conflict", views.scrub(str(exc), records.hidden_paths)) from None
            return JSONResponse({"id": record.run_id, "locked": history.locked}, status_code=200)
        try:
            attempt = await run_in_threadpool(admission.start_within_limit, principal, lambda: admit_edit(record.run_id, prepared),
                                              record.run_id)
        except (EditConflict, RunLocked) as exc:  # another edit began or finished since this one was prepared, or holds the run
            raise ApiError(409, "edit_conflict", views.scrub(str(exc), records.hidden_paths)) from None
        await start(record.run_id, attempt)
        return JSONResponse({**summary, "id": record.run_id, "status": views.ApiStatus.QUEUED,
                             "links": {**lookup.links(request, record.run_id),
                                       "version": version_links(request, record.run_id, prepared.version)}}, status_code=202)

    def segments_view(request: Request, run, history) -> list[dict]:
        """The current version's segments for the studio: place, scene, lock and a thumbnail link."""
        plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
        root, now = request.scope.get("root_path", "").rstrip("/"), clock()
        out = []
        for job in plan.segments:
            thumb = f"/v1/renders/{run.run_id}/segments/{job.index}/thumbnail"
            out.append({"index": job.index, "scene": job.scene_index + 1, "start_s": round(job.start_frame / job.fps, 3),
                        "duration_s": round(job.frames / job.fps, 3), "locked": job.index in history.locked,
                        "description": job.scene.description,
                        "thumbnail": root + signed_path(lookup.secret, thumb, now, settings.link_ttl_s) + f"&v={history.latest}"})
        return out

    def changed_span(run, version) -> list[float] | None:
        """[start, end] in seconds of what `version` regenerated or replaced (None for v1)."""
        changed = [*version.regenerated, *version.replaced]
        where = version_path(version.version, PLAN)
        if version.version == 1 or not changed or not run.exists(where):
            return None
        jobs = RunPlan.model_validate_json(run.read_bytes(where)).segments
        picked = [j for j in jobs if j.index in changed]
        return [round(min(j.start_frame for j in picked) / jobs[0].fps, 3),
                round(max(j.start_frame + j.frames for j in picked) / jobs[0].fps, 3)]

    def versions_body(request: Request, run_id: str) -> dict:
        run, _saved, history, pending = history_of(run_id)
        return {"id": run_id, "locked": history.locked,
                "pending": {"version": pending.version, "stage": pending.stage.value} if pending else None,
                "versions": [{**v.model_dump(mode="json", exclude={"key"}), "edits": public_edits(v.edits), "changed_span_s": changed_span(run, v),
                              "links": version_links(request, run_id, v.version)} for v in history.versions],
                "segments": segments_view(request, run, history)}

    @app.get("/v1/renders/{render_id}/versions", responses=ERRORS, tags=["renders"])
    async def list_versions(request: Request, render_id: str, principal: Annotated[Principal, Depends(guard.reader)]) -> dict:
        """Every version of the render (v1: the first render), with what each edit changed and
        cost, the span it changed, signed links to each version's video and report, and the
        current version's segments (with thumbnails) for editing."""
        record = await lookup.load(render_id, principal)
        return await run_in_threadpool(versions_body, request, record.run_id)

    @app.get("/v1/renders/{render_id}/segments/{index}/thumbnail", response_class=Response, tags=["renders"],
             responses={**ERRORS, 200: {"content": {"image/png": {}}}})
    async def segment_thumbnail(render_id: str, index: int,
                                access: Annotated[Principal | None, Depends(guard.signed_reader("segments/{index}/thumbnail"))]):
        """A frame from the middle of the current version's segment `index`, as PNG."""
        from longvid.media.frames import frame_png
        from longvid.runtime.store import read_manifest

        if access is not None:
            await lookup.load(render_id, access)
        run = await run_in_threadpool(records.open, checked_id(render_id))
        if run is None:
            raise not_found(render_id)
        manifest = await run_in_threadpool(read_manifest, run)
        if not 0 <= index < len(manifest.segments) or manifest.segments[index].clip is None:
            raise ApiError(404, "not_found", f"render {render_id} has no finished segment {index}")
        clip = manifest.segments[index].clip
        png = await run_in_threadpool(frame_png, run.local_path(clip.path), clip.frames // 2)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def version_file(render_id: str, version: int, name: str, access: Principal | None):
        if access is not None:  # a token: only its own renders (another's is not found)
            await lookup.load(render_id, access)
        elif await run_in_threadpool(records.open, checked_id(render_id)) is None:  # a signed link: bound to this path
            raise not_found(render_id)
        run, saved, history, _pending = await run_in_threadpool(history_of, render_id)
        if history.version(version) is None:
            raise ApiError(404, "not_found", f"render {render_id} has no version {version}")
        where = _version_file(version, name, saved)
        if not await run_in_threadpool(run.exists, where):
            raise ApiError(404, "not_ready", f"version {version} has no {name}")
        return await run_in_threadpool(run.local_path, where)

    @app.get("/v1/renders/{render_id}/versions/{version}/video", response_class=FileResponse, tags=["renders"],
             responses={**ERRORS, 200: {"content": {"video/mp4": {}}}})
    async def version_video(render_id: str, version: int,
                            access: Annotated[Principal | None, Depends(guard.signed_reader("versions/{version}/video"))]):
        """One version's MP4 (Range requests are served)."""
        path = await version_file(render_id, version, FINAL, access)
        return FileResponse(path, media_type="video/mp4", content_disposition_type="inline", filename=f"{render_id}-v{version}.mp4",
                            headers={"Cache-Control": "private, max-age=60"})

    app.add_api_route("/v1/renders/{render_id}/versions/{version}/video", version_video, methods=["HEAD"], include_in_schema=False)

    @app.get("/v1/renders/{render_id}/versions/{version}/report", responses=ERRORS, tags=["renders"])
    async def version_report(render_id: str, version: int,
                             access: Annotated[Principal | None, Depends(guard.signed_reader("versions/{version}/report"))]) -> JSONResponse:
        """One version's report.json (segments, costs, timings), without server paths."""
        path = await version_file(render_id, version, REPORT, access)
        text = views.scrub(await run_in_threadpool(path.read_text), records.hidden_paths, limit=10**7)
        return JSONResponse(json.loads(text), headers={"Cache-Control": "no-store"})
