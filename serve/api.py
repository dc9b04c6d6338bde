"""The HTTP API as a FastAPI app: `create_api(planner, renderer, settings)`.

(No `from __future__ import annotations` here: FastAPI reads the route signatures, whose
dependencies are closures of create_api.)

It runs without Serve (tests, schemathesis), with a planner and a renderer given as plain
objects; the Serve ingress (serve/app.py) builds the same app with deployment handles.
Everything it reports about renders is read from the run store, so any replica answers
alike. A render belongs to the token that asked for it: another token is told it does not
exist. The contract is in serve/API.md.
"""


import asyncio
import hashlib
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

import longvid
from longvid.errors import describe_validation_error
from longvid.manifest import RunPlan, RunStatus
from longvid.review import CONTACT_SHEET, REPORT_HTML
from longvid.runtime.store import FINAL, open_store
from longvid.spec import RenderSpec

from . import views
from .bodies import Submitted, add_component_schemas, openapi_request_body, read_submission
from .clients import PlannerClient, RendererClient
from .errors import ApiError, install_error_handlers
from .images import CheckedImage, ImageFetcher, check_image_bytes, decode_base64_image
from .inputs import InputSweeper, StagedImages, quota_refusal
from .middleware import AuthenticateWrites, BodySizeLimit, SecurityHeaders
from .models import (
    Cancelling,
    ErrorResponse,
    Health,
    PlanResponse,
    RenderAccepted,
    RenderList,
    RenderRequest,
    RenderStatus,
    RenderSubmission,
)
from .runs import REQUEST, RenderStore, RunRecord, new_render_id
from .security import (
    RateLimiter,
    is_loopback_host_header,
    is_valid_render_id,
    matching_token,
    retry_after_header,
    signed_path,
    token_fingerprint,
    verify_link,
)
from .settings import ApiSettings

STUDIO_DIR = Path(__file__).parent / "studio"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
LIST_LIMIT = 100
MAX_IMAGE_DOWNLOADS = 8  # per replica: slow image hosts may hold at most these threadpool threads
# A report shows user content (prompts): pictures and the video, nothing that runs.
REPORT_POLICY = ("default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; "
                 "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)}


@dataclass(frozen=True)
class Principal:
    owner: str  # a token fingerprint, or "local" without auth
    sees_every_run: bool = False  # the one user of a tokenless, local-only server


def create_api(planner, renderer, settings: ApiSettings | None = None, *, fetcher: ImageFetcher | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The API over `planner` (with `.plan(spec, storyboard)`) and `renderer` (with
    `.start(run_id, attempt)`): deployment handles or in-process objects."""
    settings = settings or ApiSettings.from_env()
    settings.check_auth_configured()  # no tokens: only with LONGVID_ALLOW_NO_AUTH
    records = RenderStore(open_store(settings.store, settings.longvid.store.s3_part_mb))
    planner_client, renderer_client = PlannerClient(planner), RendererClient(renderer)
    fetcher = fetcher or ImageFetcher(settings.max_image_bytes)
    secret = settings.link_secret.get_secret_value()
    tokens = settings.token_values()
    write_limiter = RateLimiter(settings.write_rate_per_minute, clock=time.monotonic)
    read_limiter = RateLimiter(settings.read_rate_per_minute, clock=time.monotonic)
    bearer = HTTPBearer(auto_error=False, description="a token from LONGVID_API_TOKENS")
    image_downloads = threading.BoundedSemaphore(MAX_IMAGE_DOWNLOADS)
    owner_locks: dict[str, threading.Lock] = {}
    owner_locks_guard = threading.Lock()
    # Reference images no render refers to are swept now, then at most every input_sweep_every_s.
    sweeper = InputSweeper(lambda: records.sweep_inputs(clock(), settings.input_grace_s),
                           settings.input_sweep_every_s, time.monotonic)
    sweeper.due()

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
    # its body. (authenticate_request is defined below, with the other access rules.)
    app.add_middleware(AuthenticateWrites, authenticate=lambda request: authenticate_request(request))
    app.add_middleware(SecurityHeaders)

    # -- access --------------------------------------------------------------------------------

    def _client_is_loopback(request: Request) -> bool:
        try:
            return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
        except ValueError:
            return False

    def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        if not tokens:  # LONGVID_ALLOW_NO_AUTH: the server only listens on loopback; say no to anything else
            if not _client_is_loopback(request):
                raise ApiError(403, "forbidden", "this server runs without tokens and only answers local clients")
            if not is_loopback_host_header(request.headers.get("host")):  # a rebound name of another site
                raise ApiError(403, "forbidden", "this server runs without tokens and only answers requests addressed to "
                                                 "localhost, 127.0.0.1 or [::1]; open it by one of those names")
            return Principal("local", sees_every_run=True)
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "unauthorized", "send a token: Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
        token = matching_token(credentials.credentials, tokens)
        if token is None:
            raise ApiError(401, "unauthorized", "the bearer token is not valid; check it against LONGVID_API_TOKENS",
                           headers={"WWW-Authenticate": "Bearer"})
        return Principal(token_fingerprint(token))

    def _limit(limiter: RateLimiter, key: str) -> None:
        wait = limiter.check(key)
        if wait is not None:
            seconds = retry_after_header(wait)
            raise ApiError(429, "rate_limited", f"too many requests; retry in {seconds} s",
                           headers={"Retry-After": seconds})

    async def authenticate_request(request: Request) -> Principal:
        return _authenticate(request, await bearer(request))

    def writer(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        principal = _authenticate(request, credentials)
        _limit(write_limiter, principal.owner)
        sweeper.due()
        return principal

    def reader(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        principal = _authenticate(request, credentials)
        _limit(read_limiter, principal.owner)
        return principal

    def signed_reader(kind: str):
        """Bearer token or a valid signature for this exact path (browser elements send no
        headers). None when a signature let the request in: it opens its own render only."""

        def dependency(
            request: Request,
            render_id: str,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
            exp: Annotated[str | None, Query(max_length=20, description="expiry of a signed link (unix seconds)")] = None,
            sig: Annotated[str | None, Query(max_length=128, description="signature of a signed link")] = None,
        ) -> Principal | None:
            if not (exp or sig):
                return reader(request, credentials)
            client = request.client.host if request.client else "?"
            if verify_link(secret, f"/v1/renders/{render_id}/{kind}", exp, sig, clock(), settings.link_ttl_s):
                # Per render owner and client: clients behind one address (a NAT, a proxy)
                # reading one tenant's links do not use up another tenant's.
                owner = (records.request_of(render_id) or {}).get("owner") or "-"
                _limit(read_limiter, f"link:{owner}:{client}")
                return None
            _limit(read_limiter, f"bad-link:{client}")  # a failed signature costs too: no free guessing
            return reader(request, credentials)

        return dependency

    def checked_id(render_id: str) -> str:
        if not is_valid_render_id(render_id):
            raise ApiError(400, "invalid_id", "a render id is 1-80 letters, digits, '.', '_' or '-' (and not '.' or '..')")
        return render_id

    # -- helpers ---------------------------------------------------------------------------------

    def links(request: Request, run_id: str) -> dict:
        root = request.scope.get("root_path", "").rstrip("/")
        base, now = f"/v1/renders/{run_id}", clock()

        def signed(kind: str) -> str:
            return root + signed_path(secret, f"{base}/{kind}", now, settings.link_ttl_s)

        return {"self": root + base, "events": signed("events"), "video": signed("video"),
                "report": signed("report"), "contact_sheet": signed("contact-sheet")}

    def status_body(request: Request, record: RunRecord) -> dict:
        return views.render_view(record.run_id, record.manifest, record.heartbeat_at, clock(), settings.stale_after_s,
                                 links(request, record.run_id), records.hidden_paths)

    def not_found(render_id: str) -> ApiError:
        return ApiError(404, "not_found", f"no render {render_id!r}; list renders with GET /v1/renders")

    def can_see(principal: Principal | None, request_record: dict | None) -> bool:
        """None: a signed link, which opens the render it was made for."""
        return principal is None or views.visible_to(principal.owner, request_record, principal.sees_every_run)

    async def load(render_id: str, principal: Principal | None) -> RunRecord:
        """The render, if it exists and `principal` may see it (another token's render is
        'not found', so ids tell nothing about other users)."""
        record = await run_in_threadpool(records.load, checked_id(render_id))
        if record is None or not can_see(principal, record.request):
            raise not_found(render_id)
        return record

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
        staged for this request only (a render keeps them when it is created: admit_render)."""
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

    # -- the per-token render limit ---------------------------------------------------------------
    # Checked early (before planning), then again with the start of the render under a lock
    # per token (parallel requests to this replica), and once more after it (other replicas).

    def too_many_renders(active: int) -> ApiError:
        return ApiError(429, "too_many_renders", f"you have {active} unfinished renders (the limit is "
                                                 f"{settings.max_concurrent_renders}); wait for one to finish or cancel one",
                        headers={"Retry-After": "30"})

    def unfinished(principal: Principal) -> list[RunRecord]:
        now = clock()
        return [r for r in records.records(principal.owner)
                if views.is_active(views.effective_status(r.manifest.status, r.heartbeat_at, now, settings.stale_after_s)[0])]

    def raise_if_at_limit(principal: Principal) -> None:
        active = len(unfinished(principal))
        if active >= settings.max_concurrent_renders:
            raise too_many_renders(active)

    async def check_concurrency(principal: Principal) -> None:
        await run_in_threadpool(raise_if_at_limit, principal)

    def owner_lock(owner: str) -> threading.Lock:
        with owner_locks_guard:
            return owner_locks.setdefault(owner, threading.Lock())

    def admission_order(record: RunRecord) -> tuple[float, str]:
        try:
            return float((record.request or {}).get("created_at", 0.0)), record.run_id
        except (TypeError, ValueError):
            return 0.0, record.run_id

    def admit_render(principal: Principal, run_id: str, request_sha: str, spec: RenderSpec, run_plan: RunPlan,
                     warnings: list[str], stage: StagedImages) -> str | None:
        """Keep the request's staged images in the store for this render (within the token's
        quota), then create the render; its attempt id, or None if the id was taken."""
        if stage.images:
            refusal = quota_refusal(records.kept_inputs(principal.owner), stage.sizes(), settings.input_quota_bytes)
            if refusal is not None:
                raise refusal
            spec = spec.model_copy(update={"reference_images": [records.inputs.save(image) for image in stage.images]})
        return records.admit(run_id, principal.owner, request_sha, spec, run_plan, warnings)

    def start_within_limit(principal: Principal, make_active: Callable[[], str | None], run_id: str) -> str | None:
        """Run `make_active` (admit or requeue `run_id`; returns the attempt, or None) only
        while the token is under its limit. Another replica may have done the same at the same
        moment: then the earliest admitted renders keep their places, and this one is
        cancelled again (resumable) and refused."""
        with owner_lock(principal.owner):
            raise_if_at_limit(principal)
            attempt = make_active()
            if attempt is None:
                return None
            active = unfinished(principal)
            mine = next((r for r in active if r.run_id == run_id), None)
            ahead = [r for r in active if r.run_id != run_id and (mine is None or admission_order(r) < admission_order(mine))]
            if len(ahead) >= settings.max_concurrent_renders:
                records.mark_stopped(run_id, RunStatus.CANCELLED, "refused: too many unfinished renders were started at once; "
                                                          "resume it when one has finished")
                raise too_many_renders(len(ahead))
            return attempt

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
        return JSONResponse(status_body(request, record), status_code=200)

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
        await check_concurrency(principal)
        stage = records.inputs.stage()
        try:  # the images are kept only if the render is created
            spec = await spec_for(submitted, stage)
            storyboard = body.storyboard.model_dump(mode="json") if body.storyboard is not None else None
            plan = await plan_for(spec, storyboard)
            run_plan = RunPlan.model_validate({"storyboard": plan["storyboard"], "segments": plan["segments"]})
            attempt = await run_in_threadpool(
                start_within_limit, principal,
                lambda: admit_render(principal, run_id, request_sha, spec, run_plan, plan["warnings"], stage), run_id)
        finally:
            await run_in_threadpool(stage.discard)
        if attempt is None:  # another request took this id first
            if idempotency_key is not None:
                return await replay(request, run_id, request_sha)
            raise ApiError(409, "conflict", "a render with this id was just created; retry")
        await start(run_id, attempt)
        return JSONResponse({"id": run_id, "status": views.ApiStatus.QUEUED, "links": links(request, run_id)}, status_code=202)

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
        return status_body(request, await load(render_id, principal))

    @app.get("/v1/renders/{render_id}/events", responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
             "description": "`event: status` (the render, as GET /v1/renders/{id}) at once and on every change; "
                            "`event: end` when it is done, failed or cancelled"}},
             response_class=Response, tags=["renders"])
    async def render_events(request: Request, render_id: str,
                            access: Annotated[Principal | None, Depends(signed_reader("events"))]):
        from sse_starlette import EventSourceResponse, ServerSentEvent

        await load(render_id, access)  # 400/404 before the stream starts

        async def stream():
            started, last = time.monotonic(), None
            while True:
                record = await run_in_threadpool(records.load, render_id)
                if record is None:
                    yield ServerSentEvent(event="end", data=json.dumps({"status": "missing"}))
                    return
                body = status_body(request, record)
                fingerprint = json.dumps({k: v for k, v in body.items() if k != "links"}, sort_keys=True)
                if fingerprint != last:
                    last = fingerprint
                    yield ServerSentEvent(event="status", data=json.dumps(body), retry=2000)
                if body["status"] in views.FINISHED:
                    yield ServerSentEvent(event="end", data=json.dumps({"status": body["status"]}))
                    return
                if time.monotonic() - started > settings.event_stream_max_s:
                    return  # under the proxy's request timeout; EventSource reconnects and gets the status at once
                await asyncio.sleep(settings.event_poll_s)

        return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})

    async def run_file(render_id: str, name: str, missing_status: int, access: Principal | None) -> Path:
        run = await run_in_threadpool(records.open, checked_id(render_id))
        if run is None or (access is not None and not can_see(access, await run_in_threadpool(records.read_json, run, REQUEST))):
            raise not_found(render_id)
        if not await run_in_threadpool(run.exists, name):
            raise ApiError(missing_status, "not_ready", f"this render has no {name} yet; wait for status 'done'")
        return await run_in_threadpool(run.local_path, name)

    @app.get("/v1/renders/{render_id}/video", response_class=FileResponse, tags=["renders"],
             responses={**ERRORS, 200: {"content": {"video/mp4": {}}}, 206: {"description": "the requested byte range"},
                        416: {"model": ErrorResponse}})
    async def render_video(request: Request, render_id: str, access: Annotated[Principal | None, Depends(signed_reader("video"))]):
        """The finished MP4; supports Range requests (206)."""
        path = await run_file(render_id, FINAL, 409, access)
        _check_range(request.headers.get("range"), path.stat().st_size)
        return FileResponse(path, media_type="video/mp4", content_disposition_type="inline",
                            filename=f"{render_id}.mp4", headers={"Cache-Control": "private, max-age=60"})

    # Media players ask with HEAD first (size, ranges): the same answer without the body
    # (FileResponse sends only the headers for HEAD, Range included). Not a second operation
    # in the schema.
    app.add_api_route("/v1/renders/{render_id}/video", render_video, methods=["HEAD"], include_in_schema=False)

    @app.get("/v1/renders/{render_id}/report", response_class=HTMLResponse, responses=ERRORS, tags=["renders"])
    async def render_report(request: Request, render_id: str, access: Annotated[Principal | None, Depends(signed_reader("report"))]):
        """The render's HTML report (storyboard, segments, scores, costs, the video)."""
        await run_file(render_id, REPORT_HTML, 404, access)  # written when the render finished
        record = await load(render_id, access)
        html = await run_in_threadpool(records.report_html, record, links(request, render_id)["video"])
        return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_POLICY, "Cache-Control": "no-store"})

    @app.get("/v1/renders/{render_id}/contact-sheet", response_class=FileResponse, tags=["renders"],
             responses={**ERRORS, 200: {"content": {"image/png": {}}}})
    async def render_contact_sheet(render_id: str, access: Annotated[Principal | None, Depends(signed_reader("contact-sheet"))]):
        """Keyframes of every segment with its scores, as one PNG."""
        return FileResponse(await run_file(render_id, CONTACT_SHEET, 404, access), media_type="image/png")

    @app.post("/v1/renders/{render_id}/resume", status_code=202, response_model=RenderAccepted, responses=ERRORS, tags=["renders"])
    async def resume_render(request: Request, render_id: str, principal: Annotated[Principal, Depends(writer)]) -> dict:
        """Continue an interrupted, failed or cancelled render: finished segments are kept."""
        record = await load(render_id, principal)
        status, _ = views.effective_status(record.manifest.status, record.heartbeat_at, clock(), settings.stale_after_s)
        refusal = views.resume_refusal(status)
        if refusal:
            raise ApiError(409, *refusal)
        attempt = await run_in_threadpool(start_within_limit, principal, lambda: records.requeue(record), record.run_id)
        await start(record.run_id, attempt)
        return {"id": record.run_id, "status": views.ApiStatus.QUEUED, "links": links(request, record.run_id)}

    @app.delete("/v1/renders/{render_id}", status_code=202, response_model=Cancelling, responses=ERRORS, tags=["renders"])
    async def cancel_render(render_id: str, principal: Annotated[Principal, Depends(writer)]) -> dict:
        """Stop a running render; it stays resumable."""
        record = await load(render_id, principal)
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


def _check_range(header: str | None, size: int) -> None:
    """Refuse an unsatisfiable or malformed Range with the API's error shape (Starlette's
    FileResponse would answer in plain text); valid ranges are served by FileResponse."""
    if not header:
        return
    try:  # Starlette's own parser, so the pre-check and the response agree
        from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
    except ImportError:  # a Starlette without them: leave it to FileResponse
        return
    try:
        FileResponse._parse_range_header(header, size)
    except RangeNotSatisfiable:
        raise ApiError(416, "range_not_satisfiable", f"the range is outside the file ({size} bytes)",
                       headers={"Content-Range": f"bytes */{size}"}) from None
    except MalformedRangeHeader:
        raise ApiError(400, "invalid_range", "the Range header is malformed; use e.g. 'bytes=0-1023'") from None
