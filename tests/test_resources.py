import pytest

from longvid.planning import OfflinePlanner, segment_storyboard
from longvid.providers.base import ProviderCapabilities
from longvid.providers.preview import PREVIEW_CAPABILITIES
from longvid.runtime.resources import (
    MB,
    NOTHING,
    ClusterCapacity,
    ResourceRequest,
    admit,
    estimate,
    fit_to_cluster,
    normalise_slots,
    is_autoscaling,
    resident_in_flight_limit,
    within_limit,
    priority,
)
from longvid.spec import QualityTier, RenderSpec

GPU_LOCAL = ProviderCapabilities(name="local-model", model="m", durations=PREVIEW_CAPABILITIES.durations, uses_gpu=True)
REMOTE = ProviderCapabilities(name="remote", model="m", durations=PREVIEW_CAPABILITIES.durations, runs_remotely=True, uses_gpu=True)


@pytest.fixture
def job():
    spec = RenderSpec(prompt="a red fox", duration_s=45, resolution="360p")
    return segment_storyboard(OfflinePlanner().plan(spec, 6), spec, PREVIEW_CAPABILITIES.durations)[0]


def test_memory_and_work_follow_the_design(job):
    request = estimate(job, PREVIEW_CAPABILITIES, QualityTier.STANDARD)
    seconds = job.generate_duration_s
    assert request.memory_bytes == int((512 + 100 * seconds) * MB)
    assert request.expected_work_s == pytest.approx(15 * seconds)
    assert request.num_cpus == 1.0


@pytest.mark.parametrize(
    "caps, quality, gpus",
    [
        (GPU_LOCAL, QualityTier.HIGH, 1.0),
        (GPU_LOCAL, QualityTier.PREMIUM, 1.0),
        (GPU_LOCAL, QualityTier.STANDARD, 0.5),
        (GPU_LOCAL, QualityTier.DRAFT, 0.5),
        (REMOTE, QualityTier.HIGH, 0.0),
        (PREVIEW_CAPABILITIES, QualityTier.HIGH, 0.0),
    ],
)
def test_gpu_request(job, caps, quality, gpus):
    assert estimate(job, caps, quality).num_gpus == gpus


def test_request_becomes_ray_options(job):
    options = estimate(job, GPU_LOCAL, QualityTier.HIGH).ray_options()
    assert set(options) == {"num_cpus", "num_gpus", "memory"}
    assert options["num_gpus"] == 1.0 and isinstance(options["memory"], int)


def test_capacity_uses_80_percent_of_memory():
    capacity = ClusterCapacity.from_ray_resources({"CPU": 2.0, "memory": 10_000.0})
    assert capacity == ClusterCapacity(cpus=2.0, gpus=0.0, memory_bytes=8_000)


def test_oversized_request_is_shrunk_to_the_cluster():
    capacity = ClusterCapacity(cpus=2, gpus=0, memory_bytes=1000 * MB)
    fitted, notes = fit_to_cluster(ResourceRequest(4, 1, 2000 * MB), capacity)
    assert fitted == ResourceRequest(2, 0, 1000 * MB)
    assert len(notes) == 3


def test_normalisations_start_as_many_as_the_cores_hold():
    one_core = ResourceRequest(1, 0, 256 * MB)
    two_cores = ClusterCapacity(cpus=2, gpus=0, memory_bytes=8000 * MB)
    # two on the cores and one queued in Ray, the rest wait in the driver
    assert [normalise_slots(two_cores, one_core, running) for running in (0, 1, 2, 3, 4)] == [3, 2, 1, 0, 0]
    # a request bigger than the cluster (fit_to_cluster shrinks it anyway) still starts
    assert normalise_slots(ClusterCapacity(cpus=0.5, gpus=0, memory_bytes=8000 * MB), one_core, 0) == 1
    # an autoscaling cluster gets every one: pending work is what brings its nodes
    assert normalise_slots(ClusterCapacity(cpus=0, gpus=0, memory_bytes=0, autoscaling=True), one_core, 5) > 1000


def test_admission_never_exceeds_capacity():
    capacity = ClusterCapacity(cpus=2, gpus=1, memory_bytes=3000 * MB)
    one = ResourceRequest(1, 0.5, 1000 * MB)
    queue = [(i, one) for i in range(5)]
    assert admit(queue, NOTHING, capacity) == [0, 1]
    assert admit(queue, one, capacity) == [0]
    assert admit(queue, one + one, capacity) == []


def test_admission_backfills_smaller_jobs():
    capacity = ClusterCapacity(cpus=4, gpus=0, memory_bytes=2000 * MB)
    queue = [(0, ResourceRequest(1, 0, 1500 * MB)), (1, ResourceRequest(1, 0, 1000 * MB)), (2, ResourceRequest(1, 0, 400 * MB))]
    assert admit(queue, NOTHING, capacity) == [0, 2]


def test_admission_always_starts_something_when_idle():
    capacity = ClusterCapacity(cpus=1, gpus=0, memory_bytes=100 * MB)
    assert admit([(7, ResourceRequest(1, 0, 500 * MB))], NOTHING, capacity) == [7]


def test_priority_puts_scene_openers_first():
    spec = RenderSpec(prompt="a fox", duration_s=120, resolution="360p")
    jobs = segment_storyboard(OfflinePlanner().plan(spec, 15), spec, PREVIEW_CAPABILITIES.durations)
    ordered = sorted(jobs, key=priority)
    openers = [j for j in jobs if j.segment_in_scene == 0]
    assert ordered[: len(openers)] == openers


def test_remote_provider_tasks_hold_a_quarter_core(job):
    assert estimate(job, REMOTE, QualityTier.STANDARD).num_cpus == 0.25
    assert estimate(job, PREVIEW_CAPABILITIES, QualityTier.STANDARD).num_cpus == 1.0


def test_a_cluster_without_cpus_is_autoscaling_and_keeps_requests_whole(job):
    # cluster.yaml's head runs no tasks: before workers join, the cluster has no CPU and no
    # GPU. Shrinking to that would make GPU segments ask for none (no GPU node ever comes)
    # and CPU work ask for none (it would run on the head).
    resources = {"memory": 16e9}
    capacity = ClusterCapacity.from_ray_resources(resources, autoscaling=is_autoscaling(None, resources, started_here=False))
    assert capacity.autoscaling
    request = estimate(job, GPU_LOCAL, QualityTier.STANDARD)
    assert fit_to_cluster(request, capacity) == (request, [])
    assert request.num_gpus == 0.5 and request.num_cpus == 1.0


def test_a_ray_started_here_without_cpus_does_not_grow(job):
    # `--num-cpus 0`-like: nothing will ever join, so requests shrink (with a note) instead of
    # pending forever.
    resources = {"memory": 16e9}
    capacity = ClusterCapacity.from_ray_resources(resources, autoscaling=is_autoscaling(None, resources, started_here=True))
    assert not capacity.autoscaling
    request, notes = fit_to_cluster(estimate(job, GPU_LOCAL, QualityTier.STANDARD), capacity)
    assert (request.num_cpus, request.num_gpus) == (0.0, 0.0) and notes


def test_the_autoscaling_setting_overrides_the_guess():
    # A second render while CPU workers are up (or KubeRay's CPU group with minReplicas 1)
    # has CPUs: only LONGVID_AUTOSCALING=1 says the cluster still grows.
    assert is_autoscaling(True, {"CPU": 4.0}, started_here=False)
    assert not is_autoscaling(False, {"memory": 16e9}, started_here=False)
    assert not is_autoscaling(None, {"CPU": 4.0}, started_here=False)


def test_resident_model_segments_stay_capped_on_an_autoscaling_cluster():
    # 60 ready segments of a local model on an autoscaling cluster: capacity admits all of
    # them, but one model worker makes one at a time, so only twice the pool goes in flight.
    capacity = ClusterCapacity(cpus=0, gpus=0, memory_bytes=0, autoscaling=True)
    waiting = ResourceRequest(0.25, 0, 1000 * MB)
    admitted = admit([(i, waiting) for i in range(60)], NOTHING, capacity)
    assert len(admitted) == 60
    limit = resident_in_flight_limit(resident_only=True, pool_workers=1)
    assert within_limit(admitted, 0, limit) == [0, 1]
    assert within_limit(admitted, 1, limit) == [0] and within_limit(admitted, 3, limit) == []
    assert within_limit(admitted, 0, resident_in_flight_limit(True, 3)) == list(range(6))
    assert resident_in_flight_limit(resident_only=False, pool_workers=1) is None  # remote providers: capacity alone
    assert within_limit(admitted, 5, None) == admitted


def test_an_autoscaling_cluster_admits_every_ready_segment():
    # What is queued in Ray is the autoscaler's demand: the driver holds nothing back.
    capacity = ClusterCapacity.from_ray_resources({"CPU": 2.0, "memory": 4e9}, autoscaling=True)
    big = ResourceRequest(4, 1, 8000 * MB)
    assert admit([(i, big) for i in range(6)], big, capacity) == list(range(6))
    assert fit_to_cluster(big, capacity) == (big, [])
    static = ClusterCapacity.from_ray_resources({"CPU": 2.0, "memory": 4e9})
    assert not static.autoscaling and admit([(i, big) for i in range(6)], big, static) == []
