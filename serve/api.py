"""The HTTP API as a FastAPI app: `create_api(planner, renderer, settings)`.

(No `from __future__ import annotations` here: FastAPI reads the route signatures, whose
dependencies are closures of create_api.)

It runs without Serve (tests, schemathesis), with a planner and a renderer given as plain
objects; the Serve ingress (serve/app.py) builds the same app with deployment handles.
Everything it reports about renders is read from the run store, so any replica answers
alike. A render belongs to the token that asked for it: another token is told it does not
exist. The contract is in serve/API.md.

Here: the app, the plan and render routes and the Studio. Access rules are in access.py,
the per-token render limit in admission.py, finding a render in lookup.py and the routes
of a render's outputs (events, video, report, contact sheet) in media_routes.py.
"""


import hashlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

import longvid
from longvid.errors import describe_validation_error
from longvid.manifest import RunPlan
from longvid.runtime.store import open_store
from longvid.spec import RenderSpec

from . import views
from .access import Access, Principal
from .admission import Admission
from .bodies import Submitted, add_component_schemas, openapi_request_body, read_submission
from .clients import PlannerClient, RendererClient
from .edit_routes import add_edit_routes
from .errors import ApiError, install_error_handlers
from .images import CheckedImage, ImageFetcher, check_image_bytes, decode_base64_image
from .inputs import InputSweeper, StagedImages
from .lookup import RenderLookup
from .media_routes import add_media_routes
from .middleware import AuthenticateWrites, BodySizeLimit, SecurityHeaders
from .models import (
    ERRORS,
    Cancelling,
    Health,
    PlanResponse,
    RenderAccepted,
    RenderList,
    RenderRequest,
    RenderStatus,
    RenderSubmission,
)
from .runs import RenderStore, new_render_id
from .security import is_valid_render_id
from .settings import ApiSettings

STUDIO_DIR = Path(__file__).parent / "studio"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
LIST_LIMIT = 100
MAX_IMAGE_DOWNLOADS = 8  # per replica: slow image hosts may hold at most these threadpool threads


def create_api(planner, renderer, settings: ApiSettings | None = None, *, fetcher: ImageFetcher | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The API over `planner` (with `.plan(spec, storyboard)`) and `renderer` (with
    `.start(run_id, attempt)`): deployment handles or in-process objects."""
    settings = settings or ApiSettings.from_env()
    settings.check_auth_configured()  # no tokens: only with LONGVID_ALLOW_NO_AUTH
    records = RenderStore(open_store(settings.store, settings.longvid.store.s3_part_mb))
    planner_client, renderer_client = PlannerClient(planner), RendererClient(renderer)
    fetcher = fetcher or ImageFetcher(settings.max_image_bytes)
    image_downloads = threading.BoundedSemaphore(MAX_IMAGE_DOWNLOADS)
    # Reference images no render refers to are swept now, then at most every input_sweep_every_s.
    sweeper = InputSweeper(lambda: records.sweep_inputs(clock(), settings.input_grace_s),
                           settings.input_sweep_every_s, time.monotonic)
    sweeper.due()
    access = Access(settings, records, sweeper, clock)
    admission = Admission(settings, records, clock)
    lookup = RenderLookup(settings, records, clock)
    writer, reader = access.writer, access.reader

    app = FastAPI(
        title="longvid",
        version=longvid.__version__,
        description="Prompt in, long video out. Every error is `{\"error\": {\"code\", \"message\"}}`. "
                    "Media and event links in a render's `links` are signed, for browser elements that cannot send headers.",
    )
    install_error_handlers(app)
    default_openapi = app.openapi

    def openapi() -> dict:
        # The write routes read their body themselves (JSON or multipart: serve/bodies.py), so
        # the models their documented bodies point to are added here.
        fresh = app.openapi_schema is None
        schema = default_openapi()
        return add_component_schemas(schema, [RenderRequest, RenderSubmission]) if fresh else schema

    app.openapi = openapi
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Added after the size limit, so it runs before it: an unauthenticated write is a 401, whatever
    # its body.
    app.add_middleware(AuthenticateWrites, authenticate=access.authenticate_request)
    app.add_middleware(SecurityHeaders)

    # -- helpers ---------------------------------------------------------------------------------

    def fetch_image(url: str) -> CheckedImage:
        if not image_downloads.acquire(blocking=False):
            raise ApiError(503, "unavailable", "too many reference images are being downloaded right now; retry in a "
                                               "few seconds or send the image as data_base64", headers={"Retry-After": "5"})
        try:
            return fetcher.fetch(url)
        finally:
            image_downloads.release()

    async def reference_images(submitted: Submitted, stage: StagedImages) -> list[Path]:
        """The spec's images (base64 or URL), then the uploaded ones: all checked alike, then
        staged for this request only (a render keeps them when it is created: Admission.admit_render)."""
        images: list[CheckedImage] = []
        for ref in submitted.body.reference_images:
            if ref.data_base64 is not None:
                images.append(await run_in_threadpool(decode_base64_image, ref.data_base64, settings.max_image_bytes))
            else:
                images.append(await run_in_threadpool(fetch_image, ref.url))
        for data in submitted.uploads:
            images.append(await run_in_threadpool(check_image_bytes, data, settings.max_image_bytes))
        return [await run_in_threadpool(stage.add, image) for image in images]

    async def spec_for(submitted: Submitted, stage: StagedImages) -> RenderSpec:
        body = submitted.body
        try:
            return RenderSpec(
                prompt=body.prompt, duration_s=body.duration_s, aspect_ratio=body.aspect_ratio, resolution=body.resolution,
                provider=body.provider, quality=body.quality, continuity=body.continuity, budget_usd=body.budget_usd,
                seed=body.seed, judge=body.judge, reference_images=await reference_images(submitted, stage),
                narration=body.narration, speech=body.speech, voice=body.voice, burn_subtitles=body.burn_subtitles,
                subtitles=body.subtitles, candidates=body.candidates, candidates_for=body.candidates_for,
            )
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", describe_validation_error(exc)) from None

    async def plan_for(spec: RenderSpec, storyboard: dict | None) -> dict:
        plan = await planner_client.plan(spec.model_dump(mode="json"), storyboard)
        error = plan.get("error")
        if error:
            status = 503 if error.get("code") == "planner_failed" else 422
            raise ApiError(status, error.get("code", "invalid_request"), error.get("message", "the request cannot be planned"))
        return plan

    async def start(run_id: str, attempt: str) -> None:
        try:
            await renderer_client.start(run_id, attempt)
        except ApiError:
            await run_in_threadpool(records.mark_failed, run_id,
                                    "the renderer was unavailable when this render was queued; resume it")
            raise

    async def replay(request: Request, run_id: str, request_sha: str) -> JSONResponse:
        """The answer to a resubmission with an Idempotency-Key already used."""
        earlier = await run_in_threadpool(records.request_of, run_id)
        if earlier is not None and earlier.get("request_sha256") != request_sha:
            raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used for a different request; "
                                                        "use a new key for a new render")
        record = await run_in_threadpool(records.load, run_id) if earlier is not None else None
        if record is None:
            raise ApiError(409, "request_in_progress", "a request with this Idempotency-Key is still being accepted; "
                                                       "retry in a moment", headers={"Retry-After": "1"})
        return JSONResponse(lookup.status_body(request, record), status_code=200)

    # -- routes ----------------------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/plans", response_model=PlanResponse, responses=ERRORS, tags=["plans"],
              openapi_extra=openapi_request_body(RenderRequest))
    async def create_plan(request: Request, principal: Annotated[Principal, Depends(writer)]) -> dict:
        """Plan a video: its storyboard (edit the scenes, then send it with POST /v1/renders),
        the exact segments, and the estimated cost. The body is a RenderRequest as JSON, or
        multipart/form-data with it as `spec` and reference image files as `images`."""
        submitted = await read_submission(request, RenderRequest, settings.max_image_bytes)
        stage = records.inputs.stage()
        try:  # a plan keeps no image
            plan = await plan_for(await spec_for(submitted, stage), None)
        finally:
            await run_in_threadpool(stage.discard)
        plan["segments"] = [{k: v for k, v in s.items() if k != "scene"} for s in plan["segments"]]
        plan.pop("speech_costs", None)  # the planner's bookkeeping, not the answer's
        return plan

    @app.post("/v1/renders", status_code=202, response_model=None, tags=["renders"],
              responses={**ERRORS, 202: {"model": RenderAccepted, "description": "queued"},
                         200: {"model": RenderStatus, "description": "an earlier request with the same Idempotency-Key"}},
              openapi_extra=openapi_request_body(RenderSubmission))
    async def submit_render(
        request: Request,
        principal: Annotated[Principal, Depends(writer)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", description="same key + same body "
                                                      "(and the same uploaded files): the same render")] = None,
    ) -> JSONResponse:
        """Start a render; answers at once (202) with its id and links. The body is a
        RenderSubmission as JSON, or multipart/form-data with it as `spec` and reference image
        files as `images`."""
        submitted = await read_submission(request, RenderSubmission, settings.max_image_bytes)
        body, request_sha = submitted.body, submitted.sha256
        if idempotency_key is not None:
            if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
                raise ApiError(400, "invalid_idempotency_key", "an Idempotency-Key is 1-200 printable ASCII characters without spaces")
            run_id = "k-" + hashlib.sha256(f"{principal.owner}\n{idempotency_key}".encode()).hexdigest()[:40]
            if await run_in_threadpool(records.request_of, run_id) is not None:
                return await replay(request, run_id, request_sha)
        else:
            run_id = new_render_id()
        await admission.check_concurrency(principal)
        stage = records.inputs.stage()
        try:  # the images are kept only if the render is created
            spec = await spec_for(submitted, stage)
            storyboard = body.storyboard.model_dump(mode="json") if body.storyboard is not None else None
            plan = await plan_for(spec, storyboard)
            run_plan = RunPlan.model_validate({"storyboard": plan["storyboard"], "segments": plan["segments"],
                                               "narration": plan.get("narration")})
            attempt = await run_in_threadpool(
                admission.start_within_limit, principal,
                lambda: admission.admit_render(principal, run_id, request_sha, spec, run_plan, plan["warnings"], stage,
                                               plan.get("speech_costs", [])), run_id)
        finally:
            await run_in_threadpool(stage.discard)
        if attempt is None:  # another request took this id first
            if idempotency_key is not None:
                return await replay(request, run_id, request_sha)
            raise ApiError(409, "conflict", "a render with this id was just created; retry")
        await start(run_id, attempt)
        return JSONResponse({"id": run_id, "status": views.ApiStatus.QUEUED, "links": lookup.links(request, run_id)}, status_code=202)

    @app.get("/v1/renders", response_model=RenderList, responses=ERRORS, tags=["renders"])
    async def list_renders(principal: Annotated[Principal, Depends(reader)]) -> dict:
        """Your renders (the token's), newest first (at most 100)."""
        found = await run_in_threadpool(records.records, None if principal.sees_every_run else principal.owner)
        found.sort(key=lambda r: r.manifest.created_at, reverse=True)
        now = clock()
        return {"renders": [views.summary_view(r.run_id, r.manifest, r.heartbeat_at, now, settings.stale_after_s)
                            for r in found[:LIST_LIMIT]]}

    @app.get("/v1/renders/{render_id}", response_model=RenderStatus, responses=ERRORS, tags=["renders"])
    async def get_render(request: Request, render_id: str, principal: Annotated[Principal, Depends(reader)]) -> dict:
        return lookup.status_body(request, await lookup.load(render_id, principal))

    # The routes of a render's outputs, registered here so the route order stays the same.
    add_media_routes(app, settings, records, access, lookup)

    # Edits and versions (edit_routes.py), before the catch-all below.
    add_edit_routes(app, settings, records, access, lookup, admission, start, clock)

    def edit_pending(run_id: str) -> bool:
        from longvid.runtime.versions import pending_edit

        return pending_edit(records.store.open(run_id)) is not None

    @app.post("/v1/renders/{render_id}/resume", status_code=202, response_model=RenderAccepted, responses=ERRORS, tags=["renders"])
    async def resume_render(request: Request, render_id: str, principal: Annotated[Principal, Depends(writer)]) -> dict:
        """Continue an interrupted, failed or cancelled render: finished segments are kept."""
        record = await lookup.load(render_id, principal)
        status, _ = views.effective_status(record.manifest.status, record.heartbeat_at, clock(), settings.stale_after_s)
        refusal = views.resume_refusal(status, await run_in_threadpool(edit_pending, record.run_id))
        if refusal:
            raise ApiError(409, *refusal)
        attempt = await run_in_threadpool(admission.start_within_limit, principal, lambda: records.requeue(record), record.run_id)
        await start(record.run_id, attempt)
        return {"id": record.run_id, "status": views.ApiStatus.QUEUED, "links": lookup.links(request, record.run_id)}

    @app.delete("/v1/renders/{render_id}", status_code=202, response_model=Cancelling, responses=ERRORS, tags=["renders"])
    async def cancel_render(render_id: str, principal: Annotated[Principal, Depends(writer)]) -> dict:
        """Stop a running render; it stays resumable."""
        record = await lookup.load(render_id, principal)
        status, _ = views.effective_status(record.manifest.status, record.heartbeat_at, clock(), settings.stale_after_s)
        refusal = views.cancel_refusal(status)
        if refusal:
            raise ApiError(409, *refusal)
        if record.attempt is None:
            raise ApiError(409, "not_cancellable", "this render was not started by the API; stop it where it runs")
        await run_in_threadpool(records.request_cancel, record)
        return {"id": record.run_id, "status": "cancelling"}

    @app.api_route("/v1/renders/{rest:path}", methods=["GET", "POST", "DELETE"], include_in_schema=False)
    async def malformed_render_path(request: Request, rest: str):
        """Paths no route takes: an id with a slash (a%2Fb) or a traversal is an invalid id."""
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        first = raw.split("/v1/renders/", 1)[-1].split("/", 1)[0]
        from urllib.parse import unquote

        if not is_valid_render_id(unquote(first)):
            raise ApiError(400, "invalid_id", "a render id is 1-80 letters, digits, '.', '_' or '-' (and not '.' or '..')")
        raise ApiError(404, "not_found", "no such endpoint; see /docs")

    # -- the Studio ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/studio/" if STUDIO_DIR.is_dir() else "/docs")

    if STUDIO_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/studio", StaticFiles(directory=STUDIO_DIR, html=True), name="studio")

    return app
