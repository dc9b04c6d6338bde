"""longvid over HTTP on Ray Serve: a FastAPI ingress composed with a planner and a renderer.

    LongvidAPI (ingress, FastAPI: serve/api.py) --handle--> Planner   (plans: Gemini or offline)
                                                 --handle--> Renderer  (renders in background threads:
                                                                        RenderPipeline + RaySegmentRunner)

Render state lives in the run store (LONGVID_STORE: a folder or s3://bucket/prefix), never in
a replica: any ingress replica answers for any render, and a cancel reaches the Renderer
replica that runs the render through a marker in its run folder.

    serve run serve.app:app                          # LONGVID_API_TOKENS=... or LONGVID_ALLOW_NO_AUTH=1
    serve run serve.app:build_app store=s3://bucket/runs
    serve deploy serve_config.yaml

Secrets (tokens, link secret, provider keys) are read by each replica from its environment;
they are never deployment arguments.
"""

from __future__ import annotations

import logging
import os

from pydantic import BaseModel, ConfigDict
from ray import serve

from .settings import ApiSettings, local_store_path

log = logging.getLogger("longvid.serve")

def _json_logs(settings: ApiSettings) -> None:
    """A replica logs longvid's events as JSON lines (run_id, segment, provider, task_id) into
    its Ray log file, every secret it holds (tokens, link secret, provider keys) redacted."""
    from longvid.observability.logs import configure_logging, secret_values

    configure_logging("json", secrets=secret_values(settings))


# Small CPU shares: the ingress and the planner wait on I/O, the renderer only drives Ray
# tasks (segments ask the cluster for their own CPUs and GPUs).
INGRESS_ACTOR = {"num_cpus": 0.25}
PLANNER_ACTOR = {"num_cpus": 0.25}
RENDERER_ACTOR = {"num_cpus": 0.25}


@serve.deployment(
    ray_actor_options=PLANNER_ACTOR,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2},
    max_ongoing_requests=8,  # a Gemini plan takes seconds; more would queue inside one replica
    health_check_period_s=10,
    health_check_timeout_s=30,
)
class Planner:
    def __init__(self, store: str | None = None):
        from longvid.runtime import open_store

        from .planning import PlanService

        settings = ApiSettings.from_env()  # this replica's environment: LONGVID_PLANNER and the Gemini key
        _json_logs(settings)
        # the renderers' store: speech paid for while planning is cached where they look for it
        runs = open_store(store, settings.longvid.store.s3_part_mb) if store is not None else None
        self.service = PlanService(settings.planner, settings.longvid, runs)

    def plan(self, spec: dict, storyboard: dict | None = None) -> dict:
        return self.service.plan(spec, storyboard)

    def check_health(self) -> None:
        if self.service.planner_mode not in ("auto", "offline", "gemini"):
            raise RuntimeError("LONGVID_PLANNER must be auto, offline or gemini")


@serve.deployment(
    ray_actor_options=RENDERER_ACTOR,
    # Fixed, not autoscaled: a replica only drives renders (their segments are Ray tasks that
    # scale the cluster), and Serve cannot see renders running in threads, so it would scale
    # a busy replica down. Renders on a replica that stops are stopped cleanly (resumable).
    num_replicas=1,
    max_ongoing_requests=32,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=60,
)
class Renderer:
    def __init__(self, store: str):
        from longvid.runtime import RaySegmentRunner, open_store

        from .worker import RenderWorker

        api = ApiSettings.from_env(store=store)  # this replica's environment: provider keys never travel as arguments
        _json_logs(api)
        settings = api.longvid
        runs = open_store(store, settings.store.s3_part_mb)
        self.worker = RenderWorker(runs, RaySegmentRunner, _render_options(api), settings=settings)
        # renders whose replica died (killed, node lost) are taken over by a live replica
        from .adoption import OrphanAdopter

        self.adopter = OrphanAdopter(runs, self.worker.start, api.adopt_after_s, api.stale_after_s).run_in_background()

    def start(self, run_id: str, attempt: str) -> bool:
        """Start attempt `attempt` of the run prepared in the store; returns at once."""
        return self.worker.start(run_id, attempt)

    def running(self) -> list[str]:
        return self.worker.running()

    def check_health(self) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialised in this replica")
        if not self.worker.healthy():
            raise RuntimeError("a render thread died without recording its outcome")
        self.worker.records.check_reachable()

    def __del__(self):
        adopter = getattr(self, "adopter", None)
        if adopter is not None:
            adopter.stop()  # a replica shutting down takes nothing new over
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.stop_all(timeout_s=45)


def _proxy_host() -> str | None:
    """The address Serve's HTTP proxies listen on (None if it cannot be told)."""
    try:
        from ray.serve.context import _get_global_client

        return _get_global_client().http_config.host
    except Exception:
        return None


@serve.deployment(
    ray_actor_options=INGRESS_ACTOR,
    # Event streams hold a request open for minutes; the handlers are async, so one
    # replica carries many of them.
    max_ongoing_requests=256,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64},
    health_check_period_s=10,
    health_check_timeout_s=30,
)
@serve.ingress()
class LongvidAPI:
    def __init__(self, planner, renderer, store: str):
        from longvid.runtime import open_store

        from .runs import RenderStore

        self.settings = ApiSettings.from_env(store=store)
        _json_logs(self.settings)
        self.settings.check_can_start(_proxy_host())  # no tokens: refuse, unless allowed and on loopback
        self.planner, self.renderer = planner, renderer
        self.records = RenderStore(open_store(self.settings.store, self.settings.longvid.store.s3_part_mb))

    def __serve_build_asgi_app__(self):
        from .api import create_api

        return create_api(self.planner, self.renderer, self.settings)

    def check_health(self) -> None:
        self.records.check_reachable()


class AppArgs(BaseModel):
    """Arguments of `serve run serve.app:build_app key=value ...` (and `args:` in a config)."""

    model_config = ConfigDict(extra="forbid")

    store: str | None = None  # default: LONGVID_STORE, else ./runs


def build_app(args: dict | None = None, *, runtime_env: dict | None = None, num_cpus: float | None = None,
              renderer_replicas: int | None = None):
    """The bound application. `runtime_env` and `num_cpus` (for every replica) and
    `renderer_replicas` are for callers in Python, e.g. tests; `args` is what `serve run`/`serve
    deploy` pass (a config sets the renderer's num_replicas under `deployments:`)."""
    options = AppArgs.model_validate(args or {})
    store = local_store_path(options.store or os.environ.get("LONGVID_STORE", "").strip() or "runs")

    def actor(defaults: dict) -> dict:
        out = dict(defaults)
        if num_cpus is not None:
            out["num_cpus"] = num_cpus
        if runtime_env is not None:
            out["runtime_env"] = runtime_env
        return out

    planner = Planner.options(ray_actor_options=actor(PLANNER_ACTOR)).bind(store)
    replicas = {} if renderer_replicas is None else {"num_replicas": renderer_replicas}
    renderer = Renderer.options(ray_actor_options=actor(RENDERER_ACTOR), **replicas).bind(store)
    return LongvidAPI.options(ray_actor_options=actor(INGRESS_ACTOR)).bind(planner, renderer, store)


app = build_app()


def _render_options(api: ApiSettings):
    """The Renderer replica's render options: the planner choice (LONGVID_PLANNER, which also
    rewords refused prompts) and where CLIP weights are; a server never downloads weights."""
    from longvid.wiring import RenderOptions

    clip = api.longvid.clip
    return RenderOptions(planner=api.planner, clip_model=clip.model, clip_checkpoint=clip.checkpoint)
