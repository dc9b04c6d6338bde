"""The routes that read a render's output: its event stream, video, report and contact
sheet. Each takes a bearer token or a signed link (browser elements send no headers).

(No `from __future__ import annotations` here: FastAPI reads the route signatures, whose
dependencies are closures of add_media_routes.)
"""

import asyncio
import json
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from longvid.review import CONTACT_SHEET, REPORT_HTML
from longvid.runtime.store import FINAL

from . import views
from .access import Access, Principal
from .errors import ApiError
from .lookup import RenderLookup
from .models import ERRORS, ErrorResponse
from .runs import RenderStore
from .settings import ApiSettings

# A report shows user content (prompts): pictures and the video, nothing that runs.
REPORT_POLICY = ("default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; "
                 "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")


def add_media_routes(app: FastAPI, settings: ApiSettings, records: RenderStore, guard: Access,
                     lookup: RenderLookup) -> None:
    """The GET (and HEAD) routes of a render's outputs, on `app`."""

    @app.get("/v1/renders/{render_id}/events", responses={**ERRORS, 200: {"content": {"text/event-stream": {}},
             "description": "`event: status` (the render, as GET /v1/renders/{id}) at once and on every change; "
                            "`event: end` when it is done, failed or cancelled"}},
             response_class=Response, tags=["renders"])
    async def render_events(request: Request, render_id: str,
                            access: Annotated[Principal | None, Depends(guard.signed_reader("events"))]):
        from sse_starlette import EventSourceResponse, ServerSentEvent

        await lookup.load(render_id, access)  # 400/404 before the stream starts

        async def stream():
            started, last = time.monotonic(), None
            while True:
                record = await run_in_threadpool(records.load, render_id)
                if record is None:
                    yield ServerSentEvent(event="end", data=json.dumps({"status": "missing"}))
                    return
                body = lookup.status_body(request, record)
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

    @app.get("/v1/renders/{render_id}/video", response_class=FileResponse, tags=["renders"],
             responses={**ERRORS, 200: {"content": {"video/mp4": {}}}, 206: {"description": "the requested byte range"},
                        416: {"model": ErrorResponse}})
    async def render_video(request: Request, render_id: str,
                           access: Annotated[Principal | None, Depends(guard.signed_reader("video"))]):
        """The finished MP4; supports Range requests (206)."""
        path = await lookup.run_file(render_id, FINAL, 409, access)
        _check_range(request.headers.get("range"), path.stat().st_size)
        return FileResponse(path, media_type="video/mp4", content_disposition_type="inline",
                            filename=f"{render_id}.mp4", headers={"Cache-Control": "private, max-age=60"})

    # Media players ask with HEAD first (size, ranges): the same answer without the body
    # (FileResponse sends only the headers for HEAD, Range included). Not a second operation
    # in the schema.
    app.add_api_route("/v1/renders/{render_id}/video", render_video, methods=["HEAD"], include_in_schema=False)

    @app.get("/v1/renders/{render_id}/report", response_class=HTMLResponse, responses=ERRORS, tags=["renders"])
    async def render_report(request: Request, render_id: str,
                            access: Annotated[Principal | None, Depends(guard.signed_reader("report"))]):
        """The render's HTML report (storyboard, segments, scores, costs, the video)."""
        await lookup.run_file(render_id, REPORT_HTML, 404, access)  # written when the render finished
        record = await lookup.load(render_id, access)
        html = await run_in_threadpool(records.report_html, record, lookup.links(request, render_id)["video"])
        return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_POLICY, "Cache-Control": "no-store"})

    @app.get("/v1/renders/{render_id}/contact-sheet", response_class=FileResponse, tags=["renders"],
             responses={**ERRORS, 200: {"content": {"image/png": {}}}})
    async def render_contact_sheet(render_id: str,
                                   access: Annotated[Principal | None, Depends(guard.signed_reader("contact-sheet"))]):
        """Keyframes of every segment with its scores, as one PNG."""
        return FileResponse(await lookup.run_file(render_id, CONTACT_SHEET, 404, access), media_type="image/png")


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
