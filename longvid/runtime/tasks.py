"""Where a segment is generated: one function, run as a Ray task (or inline, for tests).

The function is provider-agnostic: it speaks the provider protocol (submit, poll, fetch)
and returns the MP4 bytes plus the seam frame that a chained segment starts from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..media.frames import frame_png
from ..observability import logs, render_events
from ..providers.base import TaskState, from_wire, to_wire
from ..settings import Settings
from ..spec import SegmentJob
from .gates import LocalGates, RayGates
from .normalisation import normalise_segment
from .resources import ClusterCapacity, ResourceRequest, is_autoscaling

log = logging.getLogger(__name__)


# How often Ray may rerun a segment's collect task after losing its worker or node (system
# failures only: the task's own errors are the generate loop's to decide). Safe for paid
# providers: the task polls the provider task the driver created, it never creates one.
COLLECT_RETRIES = 2


@dataclass(frozen=True)
class SegmentResult:
    index: int
    provider: str
    model: str
    task_id: str
    mp4: bytes
    seam_png: bytes | None
    seconds: float
    cost_usd: float
    resources: dict[str, float] | None = None  # what Ray actually granted the task


def seam_frame_png(mp4: bytes, frame_index: int) -> bytes:
    """The frame at `frame_index` (or the last one), as PNG: where the next segment starts.
    Found by seeking to the keyframe before it (the renderer puts one exactly there)."""
    return frame_png(mp4, frame_index)


def collect_segment(provider_name: str, task_id: str, job: SegmentJob, conditioning_png: bytes | None, want_seam: bool,
                    settings: Settings) -> SegmentResult:
    """Wait for a task the driver already created (its id is in the manifest) and return
    its bytes. A local renderer re-registers the job first: its submit is idempotent.
    `settings` travels to a worker on another node as a task argument (not in runtime_env,
    which dashboards display); its secrets print masked."""
    from ..providers import create_provider
    from ..providers.base import wait_for_output

    started = time.perf_counter()
    provider = create_provider(provider_name, settings)
    log.info("waiting for the task", extra={"segment": job.index, "provider": provider_name, "task_id": task_id})
    if provider.capabilities.idempotent_submit:
        again = provider.submit(job, conditioning_png)
        if again != task_id:
            raise RuntimeError(f"segment {job.index}: the renderer produced task {again}, expected {task_id}")
    throttled = ThrottleClock()
    try:
        mp4 = wait_for_output(provider, task_id, poll_interval_s=getattr(provider, "poll_interval_s", 5.0),
                              timeout_s=settings.polling.task_timeout_s, on_status=throttled.saw)
    finally:  # a failed task waited too
        render_events.throttled(provider.capabilities.name, throttled.seconds)
    try:
        seam = seam_frame_png(mp4, job.frames) if want_seam else None
    except Exception:  # a provider's clip we cannot seek: its normalised copy gives the seam
        seam = None
    log.info("downloaded %d bytes in %.1f s", len(mp4), time.perf_counter() - started,
             extra={"segment": job.index, "provider": provider_name, "task_id": task_id})
    resources = _assigned_resources()
    worker_seconds = getattr(provider, "worker_seconds", None)  # a resident model's worker: what it ran
    render_events.gpu_time(provider.capabilities.name, provider.capabilities.model, resources, time.perf_counter() - started,
                           worker_seconds(task_id) if worker_seconds else None)
    return SegmentResult(
        resources=resources,
        index=job.index,
        provider=provider.capabilities.name,
        model=provider.capabilities.model,
        task_id=task_id,
        mp4=mp4,
        seam_png=seam,
        seconds=time.perf_counter() - started,
        cost_usd=_cost(provider, task_id, job),
    )


def _cost(provider, task_id: str, job: SegmentJob) -> float:
    """What the task cost: the provider's own account of it where it keeps one (a local
    model's GPU seconds), else its price for the clip's length."""
    spent = getattr(provider, "spent_usd", None)
    cost = spent(task_id) if spent is not None else None
    return cost if cost is not None else provider.price(job.generate_duration_s)


class ThrottleClock:
    """How long a task was THROTTLED at its provider (waiting for the account's slot there),
    from the states its polls saw."""

    def __init__(self, clock=time.monotonic):
        self._clock, self._since, self.seconds = clock, None, 0.0

    def saw(self, _task_id: str, status) -> None:
        now = self._clock()
        if self._since is not None:
            self.seconds += now - self._since
        self._since = now if status.state is TaskState.THROTTLED else None


def collect_segment_logged(log_setup: dict | None, provider_name: str, task_id: str, job: SegmentJob,
                           conditioning_png: bytes | None, want_seam: bool, settings: Settings) -> SegmentResult:
    """collect_segment in a Ray worker, logging like the driver that launched it (its format,
    its run id), so one render can be followed across processes in Ray's log files."""
    with logs.in_worker(log_setup, logs.secret_values(settings)):
        return collect_segment(provider_name, task_id, job, from_wire(conditioning_png), want_seam, settings)


# Whether ensure_ray started this process's Ray itself (not connected to a cluster): such a
# Ray never grows, whatever it has.
_ray_started_here = False


def _assigned_resources() -> dict[str, float] | None:
    try:
        import ray

        if ray.is_initialized():
            return {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}
    except Exception:  # outside a Ray worker there is nothing to report
        pass
    return None


class SegmentRunner(Protocol):
    """Runs segment generation somewhere: Ray tasks in production, inline in unit tests."""

    gates: LocalGates | RayGates  # provider slots and breakers: in this process, or shared by the cluster

    def capacity(self, autoscaling: bool | None = None) -> ClusterCapacity:
        """What the cluster has; `autoscaling` is Settings.autoscaling (None: auto)."""

    def collect(self, provider: str, task_id: str, job: SegmentJob, request: ResourceRequest, conditioning_png: bytes | None,
                want_seam: bool, retries: int, settings: Settings) -> Any: ...

    def normalise(self, job: SegmentJob, mp4: bytes, request: ResourceRequest, want_seam: bool, threads: int = 0) -> Any:
        """Start re-encoding an arrived segment into the house format (a NormalisedSegment);
        `threads`: the encoder's (normalise_segment)."""

    def wait(self, handles: Sequence[Any]) -> list[Any]: ...

    def result(self, handle: Any) -> Any: ...  # a SegmentResult, or a NormalisedSegment

    def cancel(self, handle: Any) -> None: ...



class InlineSegmentRunner:
    """Runs each segment in the calling process at submit time. For tests and debugging."""

    def __init__(self, capacity: ClusterCapacity | None = None):
        self._capacity = capacity or ClusterCapacity(cpus=2, gpus=0, memory_bytes=8 * 1024**3)
        self.submitted: list[tuple[int, ResourceRequest]] = []
        self.normalised: list[tuple[int, ResourceRequest]] = []
        self.gates = LocalGates()  # one process: provider slots and breakers live here

    def capacity(self, autoscaling: bool | None = None) -> ClusterCapacity:
        return self._capacity if autoscaling is None else replace(self._capacity, autoscaling=autoscaling)

    def collect(self, provider, task_id, job, request, conditioning_png, want_seam, retries, settings):
        self.submitted.append((job.index, request))
        try:
            return ("ok", collect_segment(provider, task_id, job, conditioning_png, want_seam, settings))
        except Exception as exc:  # surfaced by result(), as Ray would
            return ("error", exc)

    def normalise(self, job, mp4, request, want_seam, threads=0):
        self.normalised.append((job.index, request))
        try:
            return ("ok", normalise_segment(job, mp4, want_seam, threads))
        except Exception as exc:  # surfaced by result(), as Ray would
            return ("error", exc)

    def cancel(self, handle):
        pass

    def wait(self, handles):
        return list(handles)

    def result(self, handle):
        kind, value = handle
        if kind == "error":
            raise value
        return value


class RaySegmentRunner:
    """Each segment is a Ray task with the estimator's resource request."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._remote = ray.remote(collect_segment_logged)
        self._normalise = ray.remote(normalise_segment)
        self.gates = RayGates()  # named actors: slots and breakers shared by every driver on the cluster

    def capacity(self, autoscaling: bool | None = None) -> ClusterCapacity:
        resources = self._ray.cluster_resources()
        return ClusterCapacity.from_ray_resources(resources, autoscaling=is_autoscaling(autoscaling, resources, _ray_started_here))

    def collect(self, provider, task_id, job, request, conditioning_png, want_seam, retries, settings):
        options = request.ray_options()
        return self._remote.options(**options, max_retries=retries, name=f"segment-{job.index}").remote(
            logs.worker_setup(), provider, task_id, job, to_wire(conditioning_png), want_seam, settings
        )

    def normalise(self, job, mp4, request, want_seam, threads=0):
        # SPREAD: arrivals come in bursts; packing them onto one node would queue them there.
        options = request.ray_options()
        return self._normalise.options(**options, max_retries=2, scheduling_strategy="SPREAD",
                                       name=f"normalise-{job.index}").remote(job, mp4, want_seam, threads)

    def cancel(self, handle):
        self._ray.cancel(handle, force=True)

    def wait(self, handles):
        done, _ = self._ray.wait(list(handles), num_returns=1, timeout=1.0)
        return done

    def result(self, handle):
        try:
            return self._ray.get(handle)
        except self._ray.exceptions.RayTaskError as exc:
            # The worker's own exception (its failure code and the provider's words), not
            # Ray's wrapper, whose text is the remote traceback in terminal colours.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise exc.as_instanceof_cause() from None


# Ray logs this when a new local cluster turns token authentication on by default: good
# news, not something for the user to act on. (The opposite warning, that authentication is
# off, is kept: that one is.)
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_AUTH_ENABLED_NOTICE = "Token authentication is enabled for this Ray cluster"


def is_token_auth_enabled_notice(record) -> bool:
    """Whether a log record is Ray's 'token authentication is enabled' notice."""
    return record.name == RAY_AUTH_LOGGER and record.getMessage().startswith(TOKEN_AUTH_ENABLED_NOTICE)


class _DropTokenAuthNotice:
    """A logging filter that drops only that notice."""

    def filter(self, record) -> bool:
        return not is_token_auth_enabled_notice(record)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (the edges pass --ray-address or Settings.ray_address, i.e.
    RAY_ADDRESS) when given, else start Ray in-process (without printing Ray's notice that
    the new local cluster uses token authentication)."""
    import logging

    import ray

    if ray.is_initialized():
        return
    address = address or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if address is not None:
        ray.init(address=address, **kwargs)
        return
    global _ray_started_here
    quiet, logger = _DropTokenAuthNotice(), logging.getLogger(RAY_AUTH_LOGGER)
    logger.addFilter(quiet)
    try:
        ray.init(address=None, **kwargs)
        _ray_started_here = True
    finally:
        logger.removeFilter(quiet)
