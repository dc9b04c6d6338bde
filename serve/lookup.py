"""Finding a render for a caller, and what the API says about it: its status body, its
signed links and its files. Another token's render is 'not found', so ids tell nothing
about other users."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from longvid.runtime.layout import REQUEST

from . import views
from .access import Principal, checked_id
from .errors import ApiError
from .runs import RenderStore, RunRecord
from .security import signed_path
from .settings import ApiSettings


def not_found(render_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no render {render_id!r}; list renders with GET /v1/renders")


def can_see(principal: Principal | None, request_record: dict | None) -> bool:
    """None: a signed link, which opens the render it was made for."""
    return principal is None or views.visible_to(principal.owner, request_record, principal.sees_every_run)


class RenderLookup:
    def __init__(self, settings: ApiSettings, records: RenderStore, clock: Callable[[], float]):
        self.settings, self.records, self.clock = settings, records, clock
        self.secret = settings.link_secret.get_secret_value()

    def links(self, request: Request, run_id: str) -> dict:
        root = request.scope.get("root_path", "").rstrip("/")
        base, now = f"/v1/renders/{run_id}", self.clock()

        def signed(kind: str) -> str:
            return root + signed_path(self.secret, f"{base}/{kind}", now, self.settings.link_ttl_s)

        return {"self": root + base, "events": signed("events"), "video": signed("video"),
                "report": signed("report"), "contact_sheet": signed("contact-sheet")}

    def status_body(self, request: Request, record: RunRecord) -> dict:
        return views.render_view(record.run_id, record.manifest, record.heartbeat_at, self.clock(),
                                 self.settings.stale_after_s, self.links(request, record.run_id), self.records.hidden_paths)

    async def load(self, render_id: str, principal: Principal | None) -> RunRecord:
        """The render, if it exists and `principal` may see it."""
        record = await run_in_threadpool(self.records.load, checked_id(render_id))
        if record is None or not can_see(principal, record.request):
            raise not_found(render_id)
        return record

    async def run_file(self, render_id: str, name: str, missing_status: int, access: Principal | None) -> Path:
        """A file of the render (video, report, contact sheet) once it exists, else `missing_status`."""
        run = await run_in_threadpool(self.records.open, checked_id(render_id))
        if run is None or (access is not None
                           and not can_see(access, await run_in_threadpool(self.records.read_json, run, REQUEST))):
            raise not_found(render_id)
        if not await run_in_threadpool(run.exists, name):
            raise ApiError(missing_status, "not_ready", f"this render has no {name} yet; wait for status 'done'")
        return await run_in_threadpool(run.local_path, name)
