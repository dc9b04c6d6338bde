"""How the ingress reaches the planner and the renderer: through Serve deployment handles
in production, or plain in-process objects (tests, tools). Both look alike to the API:
`await planner.plan(spec, storyboard)`, `await renderer.start(run_id, attempt)`.
A handle that fails (replica gone, overloaded) becomes a 503 the client can retry.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from .errors import ApiError

log = logging.getLogger("longvid.serve")


def _unavailable(what: str) -> ApiError:
    return ApiError(503, "unavailable", f"the {what} is unavailable right now; retry in a few seconds",
                    headers={"Retry-After": "5"})


class _Client:
    what = "service"

    def __init__(self, target):
        self.target = target
        self.is_handle = _is_handle(target)

    async def _call(self, method: str, *args):
        try:
            if self.is_handle:
                return await getattr(self.target, method).remote(*args)
            return await run_in_threadpool(getattr(self.target, method), *args)
        except ApiError:
            raise
        except Exception as exc:
            log.warning("%s.%s failed: %s", self.what, method, exc.__class__.__name__, exc_info=True)
            raise _unavailable(self.what) from None


class PlannerClient(_Client):
    what = "planner"

    async def plan(self, spec: dict, storyboard: dict | None) -> dict:
        return await self._call("plan", spec, storyboard)


class RendererClient(_Client):
    what = "renderer"

    async def start(self, run_id: str, attempt: str) -> bool:
        return await self._call("start", run_id, attempt)


def _is_handle(target) -> bool:
    try:
        from ray.serve.handle import DeploymentHandle
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return isinstance(target, DeploymentHandle)
