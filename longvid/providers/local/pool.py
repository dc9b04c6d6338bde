"""Where the resident model workers live: Ray actors on the cluster (one loaded pipeline
each, holding a GPU where there is one), or one worker in this process without Ray.

Actors are named by the model and its load options, so the driver (which creates them when
it submits the first segment, and so owns them for as long as it runs) and every segment
task reach the same ones; a Serve replica or a long batch driver keeps them across renders.
"""

from __future__ import annotations

import threading

from ...settings import LocalModelSettings
from ...spec import SegmentJob
from ..base import GenerationFailed, to_wire
from .loader import LoadSpec
from .placement import MODEL_WORKER_GPU_SHARE, clip_vram_gb, unplaced_reason, wants_gpu
from .worker import GeneratedClip, ModelWorker

_IN_PROCESS: dict[tuple, ModelWorker] = {}
_LOCK = threading.Lock()
_ACTOR_CLASS = None  # ModelWorker as a Ray actor class, made once per process
# Handles held for this process's lifetime: Ray ends a (non-detached) actor once no handle
# to it is left, and the model must outlive each segment.
_HANDLES: dict[str, object] = {}
_OPTIONS: dict[str, dict] = {}  # what each worker asked Ray for (for the unplaced message)
PLACEMENT_GROUP = "placement"
UNPLACED = "LOCAL.UNPLACED"  # the model worker's resources never became free


def worker_name(spec: LoadSpec, settings: LocalModelSettings, index: int) -> str:
    """One name per loaded model and the way it generates (steps, height) and pool slot."""
    return f"longvid-local-{spec.profile.key}-{spec.key}-s{settings.steps or 0}h{settings.generate_height or 0}-{index}"


def ray_worker(spec: LoadSpec, settings: LocalModelSettings, job: SegmentJob):
    """The actor for `job` (segments share the pool's workers round-robin), created if absent."""
    import ray

    from ...runtime.resources import model_worker_request

    index = job.index % max(1, settings.workers)
    name = worker_name(spec, settings, index)
    if name in _HANDLES:
        return _HANDLES[name]
    resources = ray.cluster_resources()
    on_gpu = wants_gpu(settings.device, resources)
    vram = clip_vram_gb(spec.profile, job.width, job.height, int(round(job.generate_duration_s * job.fps)),
                        settings.precision, settings.cpu_offload, settings.generate_height)
    request, custom = model_worker_request(vram, on_gpu, resources, host_memory_gb=spec.profile.host_memory_gb,
                                           gpu_share=MODEL_WORKER_GPU_SHARE)
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(concurrency_groups={PLACEMENT_GROUP: 1})(ModelWorker)
    options = {**request.ray_options(), **({"resources": custom} if custom else {})}
    # max_concurrency=1: one segment at a time in the default group; the placement check
    # has its own group, so it is answered while a segment runs.
    actor = _ACTOR_CLASS.options(name=name, get_if_exists=True, max_concurrency=1, max_restarts=1, **options)
    with _LOCK:
        if name not in _HANDLES:
            _HANDLES[name] = actor.remote(spec, settings.steps, settings.generate_height)
            _OPTIONS[name] = options
        return _HANDLES[name]


def wait_placed(name: str, handle, timeout_s: float) -> None:
    """Wait (at most `timeout_s`) until Ray has placed and started the worker; past that, a
    GenerationFailed saying what it asked for and what the cluster has, never a silent hang."""
    import ray

    ready = handle.placed.options(concurrency_group=PLACEMENT_GROUP).remote()
    done, _ = ray.wait([ready], timeout=timeout_s)
    if done:
        ray.get(ready)
        return
    raise GenerationFailed(unplaced_reason(name, _OPTIONS.get(name, {}), timeout_s, ray.cluster_resources(),
                                           ray.available_resources()), failure_code=UNPLACED)


def forget(name: str) -> None:
    """Drop a dead worker's handle, so the next segment reaches (or makes) a live one."""
    with _LOCK:
        _HANDLES.pop(name, None)


def in_process_worker(spec: LoadSpec, settings: LocalModelSettings) -> ModelWorker:
    key = (spec, settings.steps, settings.generate_height)
    with _LOCK:
        if key not in _IN_PROCESS:
            _IN_PROCESS[key] = ModelWorker(spec, settings.steps, settings.generate_height)
        return _IN_PROCESS[key]


def ray_running() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:  # pragma: no cover - ray is a dependency
        return False


def on_a_cluster() -> bool:
    """Whether this process is connected to a Ray cluster of more than one node."""
    if not ray_running():
        return False
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive")) > 1


def ensure_worker(spec: LoadSpec, settings: LocalModelSettings, job: SegmentJob) -> None:
    """Create the job's worker now (the driver does, at submit, so it owns the actor)."""
    if ray_running():
        ray_worker(spec, settings, job)


def generate(spec: LoadSpec, settings: LocalModelSettings, job: SegmentJob, conditioning: bytes | None) -> GeneratedClip:
    if not ray_running():
        return in_process_worker(spec, settings).generate(job, conditioning)
    import ray
    from ray.exceptions import RayActorError

    name = worker_name(spec, settings, job.index % max(1, settings.workers))
    for attempt in (1, 2):
        handle = ray_worker(spec, settings, job)
        try:
            wait_placed(name, handle, settings.placement_timeout_s)
            return ray.get(handle.generate.remote(job, to_wire(conditioning)))
        except RayActorError:
            # The worker died (killed, its node lost, restarts used up): a cached handle to it
            # would fail every later segment too, so drop it and reach a live one once more.
            forget(name)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
