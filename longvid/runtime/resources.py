"""Resource estimates for segment tasks, and admission against what the cluster has.

Pure functions: no Ray here. The runtime turns a `ResourceRequest` into
`.options(num_cpus=…, num_gpus=…, memory=…)`.

From the design: memory = 512 MB + 100 MB per second of video; GPU 1 for high quality,
0.5 otherwise, and 0 for providers that run remotely or on the CPU; CPU = the segment's
complexity; about 15 s of work per second of video; use at most 80% of the memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..providers.base import ProviderCapabilities
from ..spec import QualityTier, SegmentJob

MB = 1024 * 1024


@dataclass(frozen=True)
class EstimatorConfig:
    base_memory_mb: int = 512
    memory_per_second_mb: int = 100
    work_seconds_per_video_second: float = 15.0
    high_quality_gpus: float = 1.0
    standard_gpus: float = 0.5
    memory_fraction: float = 0.8  # of the cluster's memory the driver may ask for at once
    remote_cpu_fraction: float = 0.25  # of a core, for a task that waits on a remote provider
    # Normalising a segment (decode, scale, re-encode with x264): one core, the worker plus
    # x264's lookahead and a few decoded frames, about half a second of work per second at 720p.
    normalise_cpus: float = 1.0
    normalise_base_memory_mb: int = 256
    normalise_memory_per_megapixel_mb: int = 100
    normalise_work_seconds_per_video_second: float = 0.5


DEFAULT_ESTIMATOR = EstimatorConfig()


@dataclass(frozen=True)
class ResourceRequest:
    num_cpus: float
    num_gpus: float
    memory_bytes: int
    expected_work_s: float = 0.0
    vram_gb: float = 0.0  # GPU memory the work needs (a local model), 0 when none

    def ray_options(self) -> dict[str, float | int]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "memory": self.memory_bytes}

    def __add__(self, other: ResourceRequest) -> ResourceRequest:
        return ResourceRequest(
            self.num_cpus + other.num_cpus,
            self.num_gpus + other.num_gpus,
            self.memory_bytes + other.memory_bytes,
            self.expected_work_s + other.expected_work_s,
            self.vram_gb + other.vram_gb,
        )


NOTHING = ResourceRequest(0.0, 0.0, 0, 0.0)


def complexity(job: SegmentJob) -> float:
    """CPU cores a segment is worth: one, plus a little for crowded scenes."""
    return 1.0 + 0.5 * max(0, len(job.scene.characters) - 2)


def estimate(
    job: SegmentJob,
    capabilities: ProviderCapabilities,
    quality: QualityTier,
    config: EstimatorConfig = DEFAULT_ESTIMATOR,
) -> ResourceRequest:
    seconds = job.generate_duration_s
    if capabilities.resident_model or capabilities.runs_remotely or not capabilities.uses_gpu:
        # A resident model's GPU is held by its worker actor (model_worker_request): the
        # segment task only waits on it.
        gpus = 0.0
    elif quality in (QualityTier.HIGH, QualityTier.PREMIUM):
        gpus = config.high_quality_gpus
    else:
        gpus = config.standard_gpus
    memory_mb = config.base_memory_mb + config.memory_per_second_mb * seconds
    # A remote provider's task mostly waits on the network: holding a whole core would cap
    # in-flight segments at the core count for no work.
    waits = capabilities.runs_remotely or capabilities.resident_model
    cpus = complexity(job) * (config.remote_cpu_fraction if waits else 1.0)
    return ResourceRequest(
        num_cpus=cpus,
        num_gpus=gpus,
        memory_bytes=int(memory_mb * MB),
        expected_work_s=config.work_seconds_per_video_second * seconds,
    )


# Custom resource a GPU node type may declare (its GPU memory in GB, cluster.yaml and the
# KubeRay manifest do): when the cluster has it, model workers ask for their VRAM need too.
VRAM_RESOURCE = "longvid_vram_gb"


def model_worker_request(vram_gb: float, on_gpu: bool, cluster_resources: Mapping[str, float],
                         host_memory_gb: float | None = None, gpu_share: float = 1.0) -> tuple[ResourceRequest, dict[str, float]]:
    """What a resident model worker (one loaded pipeline) asks Ray for, from the model's
    profile: one GPU (or `gpu_share` of one, to leave room for helpers beside it), host memory beside it (the profile's figure, default 8 GB), and its
    VRAM need as the custom resource where the cluster declares one. On the CPU (no GPU
    asked for: tests and CI) it reserves nothing, so it always places; a GPU request is kept whole, so an autoscaling cluster's pending demand brings a
    GPU node. Returns (the request, custom resources)."""
    memory_gb = host_memory_gb if host_memory_gb is not None else 8.0
    request = ResourceRequest(num_cpus=1.0, num_gpus=gpu_share if on_gpu else 0.0, memory_bytes=int(memory_gb * 1024 * MB),
                              vram_gb=vram_gb if on_gpu else 0.0)
    custom = {VRAM_RESOURCE: vram_gb} if on_gpu and float(cluster_resources.get(VRAM_RESOURCE, 0.0)) > 0 else {}
    if not on_gpu:
        # On the CPU (tests, CI, a laptop) a worker reserves nothing, so a worker made for other
        # settings always places beside the ones a process already holds (each reserving a core
        # and the memory left them stalled a third until the placement timeout); the segment
        # task that drives it holds the CPU.
        request = ResourceRequest(num_cpus=0.0, num_gpus=0.0, memory_bytes=0, vram_gb=0.0)
    return request, custom


def normalise_estimate(job: SegmentJob, config: EstimatorConfig = DEFAULT_ESTIMATOR) -> ResourceRequest:
    """What re-encoding one arrived segment into the house format needs: CPU only."""
    megapixels = job.width * job.height / 1e6
    return ResourceRequest(
        num_cpus=config.normalise_cpus,
        num_gpus=0.0,
        memory_bytes=int((config.normalise_base_memory_mb + config.normalise_memory_per_megapixel_mb * megapixels) * MB),
        expected_work_s=config.normalise_work_seconds_per_video_second * job.needed_frames / job.fps * max(1.0, megapixels),
    )


def normalise_slots(capacity: ClusterCapacity, request: ResourceRequest, in_flight: int) -> int:
    """How many more normalisations to start now, `in_flight` started: as many as the
    cluster's cores hold at once plus one queued in Ray (a core freed while the driver is
    busy with an earlier result starts it at once); the rest wait in the driver, which starts
    them earliest in the timeline first, rather than in Ray's queue, which runs them in
    arrival order. An autoscaling cluster gets them all at once: pending work is what brings
    its nodes."""
    if capacity.autoscaling or request.num_cpus <= 0:
        return 1 << 30
    return max(int(capacity.cpus // request.num_cpus) + 1 - in_flight, 0)


@dataclass(frozen=True)
class ClusterCapacity:
    """What the driver may have in flight at once. `autoscaling`: the cluster grows with
    demand, so what it has now is no limit (see `grows`)."""

    cpus: float
    gpus: float
    memory_bytes: int
    autoscaling: bool = False

    @classmethod
    def from_ray_resources(cls, resources: Mapping[str, float], config: EstimatorConfig = DEFAULT_ESTIMATOR,
                           autoscaling: bool = False) -> ClusterCapacity:
        return cls(
            cpus=float(resources.get("CPU", 0.0)),
            gpus=float(resources.get("GPU", 0.0)),
            memory_bytes=int(resources.get("memory", 0.0) * config.memory_fraction),
            autoscaling=autoscaling,
        )

    def fits(self, request: ResourceRequest) -> bool:
        if self.autoscaling:  # queued requests are the autoscaler's demand: holding them back would hide it
            return True
        return (
            request.num_cpus <= self.cpus + 1e-9
            and request.num_gpus <= self.gpus + 1e-9
            and request.memory_bytes <= self.memory_bytes
        )


def grows(resources: Mapping[str, float]) -> bool:
    """Whether a cluster with these resources can only be waiting for an autoscaler: it has
    no CPU at all (a head that runs no tasks, as cluster.yaml's), so nothing could run until
    workers join. A guess, true only while no CPU worker is up: see `is_autoscaling`."""
    return float(resources.get("CPU", 0.0)) <= 0


def is_autoscaling(setting: bool | None, resources: Mapping[str, float], started_here: bool) -> bool:
    """Whether to treat the cluster as growing with demand. `setting` is LONGVID_AUTOSCALING
    (cluster.yaml and the KubeRay manifests set it to 1 on every node; None: auto). Ray
    publishes nothing a driver could read to tell, so auto guesses from a CPU-less cluster,
    and only for one this process connected to: a Ray it started itself (--num-cpus) never
    grows, and keeping requests whole there would leave them pending forever."""
    if setting is not None:
        return setting
    return not started_here and grows(resources)


def fit_to_cluster(request: ResourceRequest, capacity: ClusterCapacity) -> tuple[ResourceRequest, list[str]]:
    """Shrink a request the cluster could never satisfy (Ray would leave it pending forever)
    to what the cluster has; say what was shrunk. On an autoscaling cluster the request is
    kept whole: what it has now is not what it can have, and a request shrunk to the GPU-less
    head's zero would never bring a GPU node up (and would run on the head)."""
    if capacity.autoscaling:
        return request, []
    notes = []
    cpus, gpus, memory = request.num_cpus, request.num_gpus, request.memory_bytes
    if cpus > capacity.cpus:
        notes.append(f"num_cpus {cpus:g} -> {capacity.cpus:g}")
        cpus = max(capacity.cpus, 0.0)
    if gpus > capacity.gpus:
        notes.append(f"num_gpus {gpus:g} -> {capacity.gpus:g} (the cluster has no more)")
        gpus = capacity.gpus
    if memory > capacity.memory_bytes:
        notes.append(f"memory {memory // MB} MB -> {capacity.memory_bytes // MB} MB")
        memory = capacity.memory_bytes
    return ResourceRequest(cpus, gpus, memory, request.expected_work_s), notes


def total(requests: Iterable[ResourceRequest]) -> ResourceRequest:
    out = NOTHING
    for request in requests:
        out = out + request
    return out


def admit(
    queue: Sequence[tuple[int, ResourceRequest]],
    in_flight: ResourceRequest,
    capacity: ClusterCapacity,
) -> list[int]:
    """Which queued keys to submit now, in queue (priority) order, so that what is in
    flight never exceeds the capacity. Smaller later jobs may fill gaps a big one leaves;
    with nothing in flight the head of the queue always goes, so work never stalls."""
    admitted: list[int] = []
    used = in_flight
    for key, request in queue:
        if capacity.fits(used + request) or (used == NOTHING and not admitted):
            admitted.append(key)
            used = used + request
    return admitted


# A resident model works one segment at a time per worker: one queued behind each keeps it
# busy; more would only wait at the model, each holding a quarter core and its memory (and,
# on an autoscaling cluster, asking for CPU nodes that would sit idle).
RESIDENT_IN_FLIGHT_PER_WORKER = 2


def resident_in_flight_limit(resident_only: bool, pool_workers: int,
                             per_worker: int = RESIDENT_IN_FLIGHT_PER_WORKER) -> int | None:
    """The most segments in flight when every provider is a resident model served by a pool
    of `pool_workers` (LONGVID_LOCAL_WORKERS); None (no limit beyond the capacity) otherwise."""
    return per_worker * max(1, pool_workers) if resident_only else None


def within_limit(admitted: list[int], in_flight: int, limit: int | None) -> list[int]:
    """The admitted keys that keep what is in flight at or under `limit` (None: all)."""
    return admitted if limit is None else admitted[:max(0, limit - in_flight)]


def priority(job: SegmentJob) -> tuple[int, int]:
    """Scene openers first (they start the chains that gate the rest), then timeline order,
    so the start of the video is ready first."""
    return (job.segment_in_scene, job.index)


# Helper actors (judge, compressor) work in short bursts between generations. On a small
# cluster a reserved core would halve how many segments render at once, so they reserve
# one only where it is a small share of the whole.
HELPER_ACTOR_MIN_CLUSTER_CPUS = 8


def helper_actor_cpus(cluster_resources: Mapping[str, float]) -> float:
    return 1.0 if float(cluster_resources.get("CPU", 0.0)) >= HELPER_ACTOR_MIN_CLUSTER_CPUS else 0.0
