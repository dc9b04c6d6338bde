"""Provider gates on Ray: one named actor per provider account, shared by every process."""

import pytest

from longvid.runtime.gates import Admission, GateConfig, RayGates
from longvid.settings import Settings

pytestmark = pytest.mark.ray


def test_a_concurrency_limit_holds_across_processes(ray_session):
    ray = ray_session
    config = GateConfig(max_concurrent=1)
    identity = "runway-gatetest0001"
    here = RayGates().gate(identity, config)
    assert here.try_acquire("run-a/0") == Admission.OK

    @ray.remote(num_cpus=0)
    def elsewhere(holder: str) -> str:  # another worker process, another RayGates
        return RayGates().gate(identity, config).try_acquire(holder)

    assert ray.get(elsewhere.remote("run-b/0")) == Admission.BUSY  # the slot is taken cluster-wide
    here.release("run-a/0")
    assert ray.get(elsewhere.remote("run-b/0")) == Admission.OK
    snapshot = here.snapshot()
    assert snapshot["in_flight"] == 1 and snapshot["max_concurrent"] == 1
    for _ in range(4):
        ray.get(ray.remote(num_cpus=0)(lambda: RayGates().gate(identity, config).record(False)).remote())
    assert here.snapshot()["breaker"] == "open"  # outcomes from anywhere count
    ray.kill(ray.get_actor(f"gate-{identity}", namespace="longvid"))


def test_a_render_on_ray_keeps_to_the_providers_limit(ray_session, tmp_path, monkeypatch):
    from longvid.runtime import LocalRunStore, RaySegmentRunner, RenderPipeline
    from longvid.spec import RenderSpec
    from longvid.testing.fake_runway import DEFAULT_KEY, start_fake_runway

    server, fake = start_fake_runway(pending_polls=1, running_polls=2, scale=0.1)
    try:
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
        monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.1")
        monkeypatch.setenv("LONGVID_MAX_CONCURRENT_RUNWAY", "2")
        spec = RenderSpec(prompt="a lighthouse at night", duration_s=40, resolution="360p", provider="runway",
                          judge="off", continuity="anchor")
        result = RenderPipeline(LocalRunStore(tmp_path), RaySegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
        assert result.segments == 6 and len(fake.tasks) == 6
        assert fake.most_in_flight() <= 2  # six independent segments, never more than two at Runway at once
    finally:
        server.stop()


def test_a_slot_call_that_timed_out_leaves_no_slot_held(ray_session):
    # The actor answers after the caller gave up (a restart, a busy head): the slot it then
    # takes is released, not held for the lease (hours) by a segment that never got it.
    import time

    from longvid.runtime.gates import ProviderGate, _RemoteGate

    ray = ray_session

    class SlowGate(ProviderGate):
        def try_acquire(self, holder: str) -> str:
            time.sleep(1.0)
            return super().try_acquire(holder)

    actor = ray.remote(num_cpus=0)(SlowGate).remote("runway-slowgate01", GateConfig(max_concurrent=1))
    gate = _RemoteGate(ray, actor, timeout_s=0.3)
    with pytest.raises(ray.exceptions.GetTimeoutError):
        gate.try_acquire("run-a/0")
    # Calls run in order: the release came after the late acquire (waited for here in full).
    assert ray.get(actor.snapshot.remote(), timeout=60)["in_flight"] == 0
    assert ray.get(actor.try_acquire.remote("run-b/0"), timeout=60) == Admission.OK  # the slot is free
    ray.kill(actor)
