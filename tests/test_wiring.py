"""One wiring for every way in (CLI, batch job, Serve worker, longvid.render): regression
tests for the bugs that came from each building the pipeline its own way."""

from __future__ import annotations

import json
import threading
import time

import pytest

from longvid.consistency import JudgeConfig
from longvid.consistency.framepack import FramePackCompressor
from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
from longvid.manifest import load_manifest
from longvid.planning import OfflinePlanner
from longvid.planning.result import PlanResult
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.pipeline import Cancelled
from longvid.settings import Settings
from longvid.spec import RenderSpec
from longvid.testing import fake_runway
from longvid.testing.fake_gemini import start_fake_gemini

# No word here is one the offline rewording softens, so the two rewordings differ:
# Gemini's fake answers "Softly lit: …", the offline one "A gentle, family-friendly depiction: …".
PROMPT = "a lighthouse keeper walks along the pier at night"
GEMINI_KEY = "gemini-test-key-0123456789"


@pytest.fixture
def runway_and_gemini(monkeypatch):
    for name in ("GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI", "LONGVID_PLANNER"):
        monkeypatch.delenv(name, raising=False)
    runway_server, runway = fake_runway.start_fake_runway(pending_polls=1, running_polls=1)
    monkeypatch.setenv("RUNWAYML_BASE_URL", runway_server.url)
    monkeypatch.setenv("RUNWAYML_API_SECRET", fake_runway.DEFAULT_KEY)
    monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
    monkeypatch.setenv("LONGVID_TASK_TIMEOUT_S", "8")
    with start_fake_gemini(api_key=GEMINI_KEY) as gemini:
        monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.url)
        yield runway, gemini.fake
    runway_server.stop()


def _stopped_run(store: LocalRunStore, spec: RenderSpec) -> str:
    """A run that was planned and stopped before any segment started (resumable)."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        RenderPipeline(store, InlineSegmentRunner(), stop=stop, settings=Settings.from_env()).render(spec, run_id="r")
    return "r"


def _reworded(store_root) -> list[str]:
    manifest = load_manifest((store_root / "r" / "manifest.json").read_text())
    return [r.rephrased_prompt for r in manifest.segments if r.rephrased_prompt]


def test_the_serve_worker_rewords_a_refused_prompt_with_gemini_when_it_is_configured(runway_and_gemini, tmp_path):
    """Bug: the Serve worker built its pipeline without a planner, so a SAFETY refusal was
    always reworded offline even with Gemini configured."""
    from serve.worker import RenderWorker
    from longvid.wiring import RenderOptions

    runway, gemini = runway_and_gemini
    store = LocalRunStore(tmp_path)
    spec = RenderSpec(prompt=PROMPT, duration_s=5, resolution="360p", provider="runway", judge="off")
    run_id = _stopped_run(store, spec)
    runway.faults.append(fake_runway.Fault("fail", failure_code="SAFETY.INPUT.TEXT"))
    worker = RenderWorker(store, InlineSegmentRunner, RenderOptions(planner="auto"), poll_s=0.05, settings=Settings.from_env())
    worker.start(run_id, "attempt-1")
    deadline = time.monotonic() + 60
    while worker.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert load_manifest((tmp_path / "r" / "manifest.json").read_text()).status == "done"
    assert [p.startswith("Softly lit:") for p in _reworded(tmp_path)] == [True]
    assert any("prompt" in (r.response_schema or {}).get("properties", {}) for r in gemini.requests)


@pytest.mark.ray
def test_longvid_resume_rewords_a_refused_prompt_with_gemini_when_it_is_configured(runway_and_gemini, tmp_path, ray_session, capsys):
    """Bug: `longvid resume` passed no planner (and had no --planner), so it reworded offline."""
    from longvid.cli import main

    runway, _gemini = runway_and_gemini
    spec = RenderSpec(prompt=PROMPT, duration_s=5, resolution="360p", provider="runway", judge="off")
    _stopped_run(LocalRunStore(tmp_path), spec)
    runway.faults.append(fake_runway.Fault("fail", failure_code="SAFETY.INPUT.TEXT"))
    assert main(["resume", "r", "--store", str(tmp_path), "--json"]) == 0
    assert [p.startswith("Softly lit:") for p in _reworded(tmp_path)] == [True]


@pytest.mark.ray
def test_longvid_render_uses_the_judge_the_spec_asks_for(tmp_path, ray_session):
    """Bug: the public longvid.render() ignored spec.judge (no judge at all)."""
    import longvid

    spec = RenderSpec(prompt="a red fox in the snow", duration_s=5, resolution="360p", judge="structural")
    result = longvid.render(spec, runs_dir=tmp_path, planner="offline")
    report = json.loads((tmp_path / result.run_id / "report.json").read_text())
    assert report["judge"]["backend"] == "structural"
    assert all(segment["scores"] for segment in report["segments"])


class _ClosingJudge(ConsistencySegmentJudge):
    """The structural judge in this process, recording that its render released it."""

    closed = 0

    def close(self) -> None:
        type(self).closed += 1
        super().close()


def test_the_serve_worker_releases_the_judge_when_a_render_ends(tmp_path):
    """Bug: only the batch job released a render's judge actors; a Serve replica (and the
    CLI) kept them for the life of the process."""
    from serve.worker import RenderWorker

    store = LocalRunStore(tmp_path)
    spec = RenderSpec(prompt="a red fox in the snow", duration_s=5, resolution="360p", judge="structural")
    run_id = _stopped_run(store, spec)
    _ClosingJudge.closed = 0

    def judge_factory(spec):
        return _ClosingJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))

    worker = RenderWorker(store, InlineSegmentRunner, judge_factory=judge_factory, poll_s=0.05)
    worker.start(run_id, "attempt-1")
    deadline = time.monotonic() + 60
    while worker.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert load_manifest((tmp_path / "r" / "manifest.json").read_text()).status == "done"
    assert _ClosingJudge.closed == 1


class _WarningPlanner(OfflinePlanner):
    def plan_with_report(self, spec, max_scenes=8):
        return PlanResult(self.plan(spec, max_scenes), warnings=["the Gemini planner failed, used the offline planner"])


def test_planner_warnings_reach_the_manifest_whichever_pipeline_renders_the_plan(tmp_path):
    """Bug: warnings reached the manifest only because the CLI happened to plan and render
    with one planner object; a plan rendered by another pipeline lost them."""
    spec = RenderSpec(prompt="a red fox in the snow", duration_s=5, resolution="360p", judge="off")
    planned = RenderPipeline(planner=_WarningPlanner()).plan(spec)
    RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner()).render(spec, run_id="r", planned=planned)
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    assert "the Gemini planner failed, used the offline planner" in manifest.warnings


def test_budget_shows_both_bounds_and_warns_when_failover_could_not_be_afforded(monkeypatch):
    """The pre-check and the API used different estimates (cheapest vs dearest): one estimate
    now carries both; a budget between them plans with a warning, below both is refused."""
    from longvid.errors import InputError
    from longvid.providers.estimate import budget_verdict, estimate_cost

    estimate = estimate_cost([6.0, 6.0], {"runway": 0.12, "veo": 0.40})
    assert (estimate.cheapest, estimate.dearest) == ("runway", "veo")
    assert estimate.low_usd == pytest.approx(1.44) and estimate.high_usd == pytest.approx(4.8)
    refusal, warning = budget_verdict(estimate, 2.0)
    assert refusal is None and "veo" in warning and "$4.80" in warning
    refusal, _ = budget_verdict(estimate, 1.0)
    assert "exceeds the budget $1.00" in refusal
    assert budget_verdict(estimate, 10.0) == (None, None)
    keys = Settings.from_env({"RUNWAYML_API_SECRET": "k", "GOOGLE_API_KEY": "k"})
    spec = RenderSpec(prompt="a surreal lighthouse", duration_s=12, provider="runway,veo", budget_usd=1.0)
    with pytest.raises(InputError, match="exceeds the budget"):
        RenderPipeline(settings=keys).plan(spec)


def test_a_create_call_cut_short_by_a_crash_is_counted_and_said(tmp_path, monkeypatch):
    """Resume makes a new task after a crash during a create call; the orphan stays in the
    ledger at its estimate, and now the manifest, status and report say it may be paid."""
    from longvid.cli import main
    from longvid.providers import register_provider
    from longvid.providers.base import ProviderCapabilities
    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider

    # The preview renderer with a price: its tasks are re-rendered by the worker that collects them.
    paid = ProviderCapabilities(**{**PREVIEW_CAPABILITIES.__dict__, "name": "paidpreview", "price_per_second_usd": 0.1})

    class CrashingOnce(PreviewProvider):
        crashed = False

        def __init__(self):
            super().__init__()
            self.capabilities = paid

        def submit(self, job, conditioning_png=None):
            if not CrashingOnce.crashed:
                CrashingOnce.crashed = True
                raise KeyboardInterrupt  # the driver dies during the create call
            return super().submit(job, conditioning_png)

    register_provider("paidpreview", paid, lambda settings: CrashingOnce())
    spec = RenderSpec(prompt="a red fox in the snow", duration_s=5, resolution="360p", judge="off", provider="paidpreview")
    store = LocalRunStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        RenderPipeline(store, InlineSegmentRunner()).render(spec, run_id="r")
    RenderPipeline(store, InlineSegmentRunner()).resume("r")
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    orphan = [e for e in manifest.ledger if e.task_id is None]
    assert len(orphan) == 1 and orphan[0].state.value == "charged" and orphan[0].cost_usd == orphan[0].estimate_usd
    said = [w for w in manifest.warnings if "may have been paid for without a result" in w]
    assert len(said) == 1 and said[0].startswith("segment 0: a paidpreview task")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert said[0] in report["warnings"]
    monkeypatch.delenv("LONGVID_STORE", raising=False)
    assert main(["status", "r", "--store", str(tmp_path), "--json"]) == 0


def test_a_provider_whose_client_cannot_be_built_is_refused_before_anything_starts(tmp_path):
    """Checking only that a key is set let a bad base URL through to every segment's create
    call (exit 1 after Ray and the judge started); building the client refuses it up front."""
    from longvid.errors import InputError

    settings = Settings.from_env({"RUNWAYML_API_SECRET": "k", "RUNWAYML_BASE_URL": "ftp://runway.example"})
    with pytest.raises(InputError, match="RUNWAYML_BASE_URL"):
        RenderPipeline(LocalRunStore(tmp_path), settings=settings).plan(
            RenderSpec(prompt="a fox", duration_s=10, provider="runway"))
    assert not list(tmp_path.iterdir())  # no run folder


def test_a_segment_task_carries_only_its_own_providers_credentials():
    import pickle

    settings = Settings.from_env({"RUNWAYML_API_SECRET": "runway-secret-1234", "GOOGLE_API_KEY": "google-key-5678"})
    runway_task, preview_task = pickle.dumps(settings.for_provider("runway")), pickle.dumps(settings.for_provider("preview"))
    assert b"runway-secret-1234" in runway_task and b"google-key-5678" not in runway_task
    assert b"runway-secret-1234" not in preview_task and b"google-key-5678" not in preview_task
    assert settings.for_provider("veo").polling == settings.polling


def test_run_errors_are_one_line_whatever_raised_them():
    from longvid.runtime.failures import run_failure_reason

    remote = RuntimeError("\x1b[36mray::JudgeActor.info()\x1b[39m (pid=7)\n  File \"/srv/app/judge.py\", line 3, in info\n"
                          "RuntimeError: the judge actor could not start")
    assert run_failure_reason(remote) == "RuntimeError: the judge actor could not start"


class _ExtraScoreJudge(ConsistencySegmentJudge):
    def judge(self, job, segment, previous):
        verdict = super().judge(job, segment, previous)
        return type(verdict)(passed=verdict.passed, scores={**verdict.scores, "motion": 0.3}, reason=verdict.reason,
                             quality=verdict.quality)


def test_a_judge_reporting_an_unknown_score_does_not_fail_a_paid_segment(tmp_path):
    judge = _ExtraScoreJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
    spec = RenderSpec(prompt="a red fox in the snow", duration_s=5, resolution="360p", judge="structural")
    RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), judge=judge).render(spec, run_id="r")
    manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
    assert manifest.status == "done" and all(r.scores for r in manifest.segments)
    assert any("motion" in w for w in manifest.warnings)
