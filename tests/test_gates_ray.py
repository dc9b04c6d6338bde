"""Provider gates on Ray: one named actor per provider account, shared by every process."""

import pytest

from longvid.runtime.gates import Admission, GateConfig, RayGates

pytestmark = pytest.mark.ray


def test_a_concurrency_limit_holds_across_processes(ray_session):
    ray = ray_session
    config = GateConfig(max_concurrent=1)
    identity = "runway-gatetest0001"
    here = RayGates()
    assert here.try_acquire(identity, config, "run-a/0") == Admission.OK

    @ray.remote(num_cpus=0)
    def elsewhere(holder: str) -> str:  # another worker process, another RayGates
        return RayGates().try_acquire(identity, config, holder)

    assert ray.get(elsewhere.remote("run-b/0")) == Admission.BUSY  # the slot is taken cluster-wide
    here.release(identity, config, "run-a/0")
    assert ray.get(elsewhere.remote("run-b/0")) == Admission.OK
    snapshot = here.snapshot(identity, config)
    assert snapshot["in_flight"] == 1 and snapshot["max_concurrent"] == 1
    for _ in range(4):
        ray.get(ray.remote(num_cpus=0)(lambda: RayGates().record(identity, config, False)).remote())
    assert here.snapshot(identity, config)["breaker"] == "open"  # outcomes from anywhere count
    ray.kill(ray.get_actor(f"gate-{identity}", namespace="longvid"))
