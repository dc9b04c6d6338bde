"""Routing between providers: candidates, shared clip lengths, gates (slots and breakers),
and renders that fail over from Runway to Veo through both real clients and fake servers."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longvid.errors import InputError, RenderError
from longvid.manifest import load_manifest
from longvid.planning.segmentation import DurationRule
from longvid.providers.routing import BreakerConfig, common_durations, counts_against_provider, requested_providers
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.gates import Admission, GateConfig, ProviderGate
from longvid.settings import Settings
from longvid.spec import RenderSpec, SegmentState
from longvid.testing import fake_runway, fake_veo

KNOWN = ["preview", "runway", "veo"]


def test_requested_providers():
    remote = {"runway", "veo"}.__contains__
    assert requested_providers("auto", KNOWN, lambda n: True, remote) == ["runway", "veo"]
    assert requested_providers("auto", KNOWN, lambda n: n == "veo", remote) == ["veo"]
    assert requested_providers("auto", KNOWN, lambda n: False, remote) == ["preview"]  # no key: still renders
    assert requested_providers("veo,runway", KNOWN, lambda n: True, remote) == ["veo", "runway"]
    with pytest.raises(ValueError, match="unknown provider 'sora'"):
        requested_providers("runway,sora", KNOWN, lambda n: True, remote)
    with pytest.raises(ValueError, match="twice"):
        requested_providers("veo,veo", KNOWN, lambda n: True, remote)


def test_common_durations():
    runway = DurationRule(2, 10, tuple(float(s) for s in range(2, 11)))
    veo = DurationRule(4, 8, (4.0, 6.0, 8.0))
    preview = DurationRule(1, 10)
    assert common_durations([runway, veo]).allowed == (4.0, 6.0, 8.0)
    assert common_durations([preview, veo]).allowed == (4.0, 6.0, 8.0)
    assert common_durations([preview, DurationRule(2, 6)]) == DurationRule(2, 6)
    with pytest.raises(ValueError):
        common_durations([DurationRule(5, 10, (5.0, 10.0)), veo])


def test_what_counts_against_a_provider():
    assert counts_against_provider("INTERNAL") and counts_against_provider("HTTP.UNAVAILABLE")
    assert not counts_against_provider("SAFETY.INPUT.TEXT")  # the content, not the provider
    assert not counts_against_provider("BUDGET") and not counts_against_provider(None)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_gate_slots_leases_and_breaker():
    clock = Clock()
    gate = ProviderGate("runway", GateConfig(max_concurrent=2, lease_s=100, breaker=BreakerConfig(open_seconds=30)), clock)
    assert gate.try_acquire("r1/0") == Admission.OK
    assert gate.try_acquire("r1/0") == Admission.OK  # re-acquiring holds one slot, not two
    assert gate.try_acquire("r2/0") == Admission.OK
    assert gate.try_acquire("r2/1") == Admission.BUSY
    gate.release("r2/0")
    assert gate.try_acquire("r2/1") == Admission.OK
    assert gate.release_prefix("r2/") == 1
    clock.now = 150  # r1/0's lease ran out: a crashed driver does not block the provider
    assert gate.snapshot()["in_flight"] == 0
    for _ in range(4):
        gate.record(False)
    assert gate.snapshot()["breaker"] == "open"
    assert gate.try_acquire("r3/0") == Admission.OPEN
    clock.now = 181  # half-open: exactly one probe goes
    assert gate.snapshot()["breaker"] == "half_open"
    assert gate.try_acquire("r3/0") == Admission.OK
    assert gate.try_acquire("r3/1") == Admission.OPEN  # the probe is still out
    assert gate.record(True) == "closed"
    gate.release("r3/0")
    assert gate.try_acquire("r3/1") == Admission.OK


def test_gate_config_from_env():
    env = {"LONGVID_MAX_CONCURRENT_RUNWAY": "3", "LONGVID_BREAKER_OPEN_S": "5"}
    config = GateConfig.from_settings("runway", 4, Settings.from_env(env).gates)
    assert config.max_concurrent == 3 and config.breaker.open_seconds == 5
    assert GateConfig.from_settings("veo", 4, Settings.from_env(env).gates).max_concurrent == 4
    assert GateConfig.from_settings("veo", 4, Settings.from_env({"LONGVID_MAX_CONCURRENT_VEO": "0"}).gates).max_concurrent is None


@pytest.fixture
def two_providers(monkeypatch):
    """Fake Runway and fake Veo on 127.0.0.1, both configured; the real clients talk to them."""
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    runway_server, runway = fake_runway.start_fake_runway(pending_polls=1, running_polls=1)
    veo_server, veo = fake_veo.start_fake_veo(scale=0.1)
    monkeypatch.setenv("RUNWAYML_BASE_URL", runway_server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", fake_runway.DEFAULT_KEY)
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", veo_server.url)
    monkeypatch.setenv("GOOGLE_API_KEY", fake_veo.DEFAULT_KEY)
    monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
    monkeypatch.setenv("LONGVID_TASK_TIMEOUT_S", "8")
    monkeypatch.setenv("LONGVID_BREAKER_OPEN_S", "0.2")  # an open breaker's wait, shortened for tests
    yield runway, veo
    runway_server.stop()
    veo_server.stop()


def _books_balance(manifest, runway, veo):
    """Every task that exists at either provider is in the ledger, and nothing else is."""
    booked = {e.task_id for e in manifest.ledger if e.task_id}
    made = set(runway.tasks) | set(veo.operations)
    assert made == booked
    unknown = [e for e in manifest.ledger if e.task_id is None]
    assert all(e.state in ("charged", "released") for e in unknown)
    assert len(manifest.ledger) == len(made) + len(unknown)


# "surreal" routes to Runway first (the design's creative rule), so Veo is the failover.
SURREAL = "a surreal lighthouse at night"


def test_segments_fail_over_from_runway_to_veo(two_providers, tmp_path):
    runway, veo = two_providers
    runway.faults.append(fake_runway.Fault("fail", failure_code="INTERNAL.BAD_OUTPUT.CODE01", times=None))
    spec = RenderSpec(prompt=SURREAL, duration_s=8, resolution="360p", provider="auto", judge="off", budget_usd=20)
    result = RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
    assert result.frames == 8 * 24
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    assert {r.provider for r in manifest.segments} == {"veo"}
    assert all(r.state is SegmentState.ACCEPTED for r in manifest.segments)
    # INTERNAL is worth one more try at Runway, then the segment moves on: two Runway tasks each.
    assert len(runway.tasks) == 2 * len(manifest.segments)
    assert len(veo.operations) == len(manifest.segments)
    _books_balance(manifest, runway, veo)
    providers = {e.provider for e in manifest.ledger}
    assert providers == {"runway", "veo"}  # the failed Runway attempts are on the books too


def test_an_open_breaker_sends_later_segments_straight_to_the_next_provider(two_providers, tmp_path, capsys, monkeypatch):
    from longvid.cli import main

    runway, veo = two_providers
    monkeypatch.setenv("LONGVID_BREAKER_OPEN_S", "60")
    runway.faults.append(fake_runway.Fault("503", on="create", retry_after=0.01, times=None))
    spec = RenderSpec(prompt=SURREAL, duration_s=45, resolution="360p", provider="runway,veo", judge="off",
                      continuity="anchor")
    RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    assert len(manifest.segments) == 6 and {r.provider for r in manifest.segments} == {"veo"}
    per_call = runway.counts["create"] // 4
    assert runway.counts["create"] == 4 * per_call  # 4 refused calls opened the breaker; 2 segments skipped Runway
    assert not runway.tasks and len(veo.operations) == 6
    assert main(["providers", "--store", str(tmp_path), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["providers"]}
    assert rows["runway"]["breaker"] == "open" and rows["veo"]["breaker"] == "closed"
    assert rows["runway"]["health"]["recent_failures"] == 4
    assert fake_runway.DEFAULT_KEY not in json.dumps(rows)


def test_a_single_provider_does_not_fail_over(two_providers, tmp_path):
    runway, veo = two_providers
    runway.faults.append(fake_runway.Fault("fail", failure_code="INTERNAL", times=None))
    spec = RenderSpec(prompt=SURREAL, duration_s=8, resolution="360p", provider="runway", judge="off", continuity="anchor")
    with pytest.raises(RenderError, match="INTERNAL"):
        RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
    assert not veo.operations


def test_providers_without_a_shared_length_are_refused(tmp_path, monkeypatch):
    from longvid.providers import register_provider
    from longvid.providers.base import ProviderCapabilities

    caps = ProviderCapabilities(name="tens", model="t", durations=DurationRule(10, 10, (10.0,)), runs_remotely=True)
    register_provider("tens", caps, lambda settings: None)
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    with pytest.raises(InputError, match="share no clip length"):
        RenderPipeline(LocalRunStore(tmp_path), settings=Settings.from_env()).plan(RenderSpec(prompt="a fox", duration_s=20, provider="tens,veo"))


# Faults a render may meet at either provider (none that only waits out a timeout).
RUNWAY_FAULTS = st.sampled_from([
    fake_runway.Fault("429", on="create", retry_after=0.01),
    fake_runway.Fault("503", on="create", retry_after=0.01),
    fake_runway.Fault("500", on="create"),
    fake_runway.Fault("fail", failure_code="INTERNAL"),
    fake_runway.Fault("fail", failure_code="SAFETY.INPUT.TEXT"),
    fake_runway.Fault("malformed", on="poll"),
    fake_runway.Fault("500", on="poll"),
    fake_runway.Fault("truncate", on="download"),
])
VEO_FAULTS = st.sampled_from([
    fake_veo.Fault("429", on="create", retry_after=0.01),
    fake_veo.Fault("500", on="create"),
    fake_veo.Fault("fail", failure_code="INTERNAL"),
    fake_veo.Fault("rai"),
    fake_veo.Fault("500", on="poll"),
])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runway_faults=st.lists(RUNWAY_FAULTS, max_size=5), veo_faults=st.lists(VEO_FAULTS, max_size=3),
       budget=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
def test_random_faults_never_pass_the_budget_or_hide_a_task(two_providers, tmp_path_factory, runway_faults, veo_faults, budget):
    import copy

    runway, veo = two_providers
    runway.faults.clear()
    veo.faults.clear()
    runway.faults.extend(copy.copy(f) for f in runway_faults)
    veo.faults.extend(copy.copy(f) for f in veo_faults)
    runway.tasks.clear()
    veo.operations.clear()
    store = tmp_path_factory.mktemp("store")
    spec = RenderSpec(prompt=SURREAL, duration_s=8, resolution="360p", provider="auto", judge="off",
                      budget_usd=budget, continuity="anchor")
    try:
        RenderPipeline(LocalRunStore(store), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
        outcome = "done"
    except InputError as exc:  # the budget cannot cover even the cheapest plan: refused up front
        assert "budget" in str(exc) and not runway.tasks and not veo.operations
        return
    except RenderError as exc:
        outcome = str(exc)
    manifest = load_manifest((store / "r" / "manifest.json").read_text())
    assert manifest.cost_usd <= budget + 1e-9
    _books_balance(manifest, runway, veo)
    for record in manifest.segments:
        if outcome == "done":
            assert record.state is SegmentState.ACCEPTED
        elif record.state is SegmentState.SUBMITTED:  # unknown at the provider: resume polls it, never pays again
            assert record.task_id and f"segment {record.index}" in outcome
        else:
            assert record.state in (SegmentState.ACCEPTED, SegmentState.PENDING) or (record.error and f"segment {record.index}" in outcome)
    text = (store / "r" / "manifest.json").read_text()
    assert fake_runway.DEFAULT_KEY not in text and fake_veo.DEFAULT_KEY not in text and fake_veo.DEFAULT_KEY not in outcome


def test_a_half_open_probe_that_ends_without_an_outcome_frees_the_probe():
    """A probe slot released with no verdict (the segment came from the cache, or the run
    was cancelled) must not leave the breaker waiting for that probe for ever."""
    clock = Clock()
    gate = ProviderGate("veo", GateConfig(breaker=BreakerConfig(open_seconds=10)), clock)
    for _ in range(4):
        gate.record(False)
    clock.now = 11
    assert gate.try_acquire("r/0") == Admission.OK  # the probe
    assert gate.try_acquire("r/1") == Admission.OPEN
    gate.release("r/0")  # no outcome recorded
    assert gate.try_acquire("r/1") == Admission.OK  # the next call may probe
    assert gate.record(True) == "closed"


def test_review_findings_routing_rules():
    """Premium outranks the creative rule; creative words match whole words only; Runway's
    INPUT_PREPROCESSING.SAFETY codes count as safety refusals, not provider failures."""
    from longvid.providers import provider_capabilities
    from longvid.providers._http import is_safety_refusal
    from longvid.providers.routing import SegmentNeeds, rank
    from longvid.spec import AspectRatio, QualityTier

    caps = [provider_capabilities("runway", Settings()), provider_capabilities("veo", Settings())]
    needs = dict(aspect=AspectRatio.LANDSCAPE, duration_s=6.0, budget_left_usd=100.0)
    assert rank(caps, SegmentNeeds(quality=QualityTier.PREMIUM, style="surreal", **needs))[0] == "veo"
    assert rank(caps, SegmentNeeds(quality=QualityTier.STANDARD, style="surreal", **needs))[0] == "runway"
    assert rank(caps, SegmentNeeds(quality=QualityTier.STANDARD, style="abstraction of a creative-agency", **needs))[0] == "runway"
    assert rank(caps, SegmentNeeds(quality=QualityTier.STANDARD, style="an abstractionist office", **needs))[0] == "runway"  # cheaper
    assert is_safety_refusal("INPUT_PREPROCESSING.SAFETY.TEXT") and not counts_against_provider("INPUT_PREPROCESSING.SAFETY.TEXT")


def test_a_full_provider_with_an_open_breaker_sends_segments_on():
    clock = Clock()
    gate = ProviderGate("runway", GateConfig(max_concurrent=1, breaker=BreakerConfig(open_seconds=30)), clock)
    assert gate.try_acquire("a/0") == Admission.OK
    for _ in range(4):
        gate.record(False)
    assert gate.try_acquire("a/1") == Admission.OPEN  # not BUSY: the router moves on to another provider


def test_a_refused_prompt_is_reworded_whatever_the_safety_code_family(two_providers, tmp_path):
    runway, veo = two_providers
    runway.faults.append(fake_runway.Fault("fail", failure_code="INPUT_PREPROCESSING.SAFETY.TEXT"))
    spec = RenderSpec(prompt=SURREAL, duration_s=8, resolution="360p", provider="runway,veo", judge="off",
                      continuity="anchor")
    RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    reworded = [r for r in manifest.segments if r.rephrased_prompt]
    assert len(reworded) == 1 and reworded[0].provider == "runway"  # reworded, not sent verbatim to Veo
    assert not veo.operations


def test_a_paid_task_that_cannot_be_polled_is_left_for_resume_not_paid_again(two_providers, tmp_path):
    runway, veo = two_providers
    runway.faults.append(fake_runway.Fault("500", on="poll", times=40))
    spec = RenderSpec(prompt=SURREAL, duration_s=5, resolution="360p", provider="runway,veo", judge="off",
                      continuity="anchor")
    with pytest.raises(RenderError, match="longvid resume r"):
        RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    assert not veo.operations  # nothing paid twice
    assert any(r.state is SegmentState.SUBMITTED and r.task_id for r in manifest.segments)


def test_scenes_start_from_the_reference_image_at_a_generative_provider(two_providers, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from longvid.manifest import RunPlan

    runway, _ = two_providers
    reference = tmp_path / "ref.png"
    Image.new("RGB", (800, 600), (200, 40, 160)).save(reference)
    spec = RenderSpec(prompt="a lighthouse at night, then a storm", duration_s=20, resolution="360p", provider="runway",
                      judge="off", reference_images=[reference])
    RenderPipeline(LocalRunStore(tmp_path / "store"), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
    manifest = load_manifest((tmp_path / "store" / "r" / "manifest.json").read_text())
    jobs = RunPlan.model_validate_json((tmp_path / "store" / "r" / "plan.json").read_text()).segments
    openers = [j for j in jobs if j.segment_in_scene == 0]
    assert len(openers) >= 2
    for job in jobs:
        sent = runway.tasks[manifest.segments[job.index].task_id].image
        if job.segment_in_scene == 0:  # the reference, cropped to 16:9 and scaled to the segment
            picture = Image.open(io.BytesIO(sent))
            assert picture.size == (job.width, job.height)
            assert np.abs(np.asarray(picture.convert("RGB"), np.float32).mean(axis=(0, 1)) - (200, 40, 160)).max() < 3
        else:  # chained inside a scene: the previous segment's seam frame, not the reference
            assert sent is not None and job.conditioned_on is not None
