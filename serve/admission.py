"""The per-token render limit: how many unfinished renders one token may have.

Checked early (before planning), then again with the start of the render under a lock per
token (parallel requests to this replica), and once more after it (other replicas).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from longvid.manifest import RunPlan, RunStatus
from longvid.spec import RenderSpec

from . import views
from .access import Principal
from .errors import ApiError
from .inputs import StagedImages, quota_refusal
from .runs import RenderStore, RunRecord
from .settings import ApiSettings


class Admission:
    def __init__(self, settings: ApiSettings, records: RenderStore, clock: Callable[[], float]):
        self.settings, self.records, self.clock = settings, records, clock
        self._owner_locks: dict[str, threading.Lock] = {}
        self._owner_locks_guard = threading.Lock()

    def too_many_renders(self, active: int) -> ApiError:
        return ApiError(429, "too_many_renders", f"you have {active} unfinished renders (the limit is "
                                                 f"{self.settings.max_concurrent_renders}); wait for one to finish or cancel one",
                        headers={"Retry-After": "30"})

    def unfinished(self, principal: Principal) -> list[RunRecord]:
        now = self.clock()
        return [r for r in self.records.records(principal.owner)
                if views.is_active(views.effective_status(r.manifest.status, r.heartbeat_at, now, self.settings.stale_after_s)[0])]

    def raise_if_at_limit(self, principal: Principal) -> None:
        active = len(self.unfinished(principal))
        if active >= self.settings.max_concurrent_renders:
            raise self.too_many_renders(active)

    async def check_concurrency(self, principal: Principal) -> None:
        await run_in_threadpool(self.raise_if_at_limit, principal)

    def owner_lock(self, owner: str) -> threading.Lock:
        with self._owner_locks_guard:
            return self._owner_locks.setdefault(owner, threading.Lock())

    @staticmethod
    def admission_order(record: RunRecord) -> tuple[float, str]:
        try:
            return float((record.request or {}).get("created_at", 0.0)), record.run_id
        except (TypeError, ValueError):
            return 0.0, record.run_id

    def admit_render(self, principal: Principal, run_id: str, request_sha: str, spec: RenderSpec, run_plan: RunPlan,
                     warnings: list[str], stage: StagedImages, speech_costs=()) -> str | None:
        """Keep the request's staged images in the store for this render (within the token's
        quota), then create the render; its attempt id, or None if the id was taken."""
        if stage.images:
            refusal = quota_refusal(self.records.kept_inputs(principal.owner), stage.sizes(), self.settings.input_quota_bytes)
            if refusal is not None:
                raise refusal
            spec = spec.model_copy(update={"reference_images": [self.records.inputs.save(image) for image in stage.images]})
        return self.records.admit(run_id, principal.owner, request_sha, spec, run_plan, warnings, speech_costs)

    def start_within_limit(self, principal: Principal, make_active: Callable[[], str | None], run_id: str) -> str | None:
        """Run `make_active` (admit or requeue `run_id`; returns the attempt, or None) only
        while the token is under its limit. Another replica may have done the same at the same
        moment: then the earliest admitted renders keep their places, and this one is
        cancelled again (resumable) and refused."""
        with self.owner_lock(principal.owner):
            self.raise_if_at_limit(principal)
            attempt = make_active()
            if attempt is None:
                return None
            active = self.unfinished(principal)
            mine = next((r for r in active if r.run_id == run_id), None)
            ahead = [r for r in active
                     if r.run_id != run_id and (mine is None or self.admission_order(r) < self.admission_order(mine))]
            if len(ahead) >= self.settings.max_concurrent_renders:
                self.records.mark_stopped(run_id, RunStatus.CANCELLED, "refused: too many unfinished renders were started "
                                                                       "at once; resume it when one has finished")
                raise self.too_many_renders(len(ahead))
            return attempt
