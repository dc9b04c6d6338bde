"""The Gemini vision judge against a local fake of generateContent on 127.0.0.1: the verdict is
parsed, every call is booked in the ledger, failures (429, 500, garbage, timeouts, the budget)
fall back to the local scorers and say so, and a failing verdict's adjustments reach the
regeneration's prompt."""

import pytest
from pydantic import SecretStr

from longvid.consistency import JudgeConfig
from longvid.consistency.gemini_judge import LEDGER_PROVIDER, GeminiVisionJudge, VisionAnswer
from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
from longvid.consistency.vision_check import VisionCheck, borderline
from longvid.errors import InputError
from longvid.providers.ledger import CostLedger, EntryState
from longvid.runtime.acceptance import fold_adjustments
from longvid.settings import GeminiSettings, Settings
from longvid.spec import RenderSpec
from longvid.testing import drift_clips as dc
from longvid.testing.fake_gemini import Fault
from longvid.testing.fake_gemini_judge import PASSING, start_fake_gemini_judge

FAILING = {"character": 0.3, "scene": 0.85, "lighting": 0.8, "motion": 0.9, "passed": False,
           "reasons": ["the fox became a deer"], "adjustments": ["the red fox with a white-tipped tail"]}


@pytest.fixture(scope="module")
def server():
    server = start_fake_gemini_judge()
    yield server
    server.stop()


@pytest.fixture()
def fake(server):
    server.fake.requests.clear()
    server.fake._faults.clear()
    server.fake._script.clear()
    return server.fake


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gemini")
    jobs = dc.tiny_jobs(duration_s=12)[:2]  # one scene, the second segment continues the first
    paths = []
    for job in jobs:
        paths.append(folder / f"seg{job.index}.mp4")
        paths[-1].write_bytes(dc.mp4(job, dc.clean(job)))
    return jobs, paths


def gemini(server, **kw):
    return GeminiVisionJudge(GeminiSettings(api_key=SecretStr(server.api_key), base_url=server.url), **kw)


def adapter(server, mode="primary", ledger=None, **kw):
    judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), vision=VisionCheck(gemini(server, **kw), mode=mode))
    if ledger is not None:
        judge.bind_ledger(ledger)
    return judge


def test_verdict_is_parsed_and_its_cost_booked(server, fake, clips):
    jobs, paths = clips
    ledger = CostLedger(budget_usd=1.0)
    judge = adapter(server, ledger=ledger)
    first = judge.judge(jobs[0], paths[0], None)
    fake.script(FAILING)
    second = judge.judge(jobs[1], paths[1], (jobs[0], paths[0]))
    assert first.passed and first.scores["vision"]["character"] == PASSING["character"]
    assert not second.passed and "gemini: the fox became a deer" in second.reason
    assert second.adjustments == ("the red fox with a white-tipped tail",) and second.quality == pytest.approx(0.3)
    # What went over the wire: keyframes and labelled references inline, the verdict's schema.
    request = fake.requests[-1]
    assert request.api_key == server.api_key and request.generation_config["responseMimeType"] == "application/json"
    assert set(request.response_schema["required"]) >= {"character", "scene", "lighting", "motion", "passed"}
    images = request.images
    assert len(images) >= 4 and all(mime == "image/png" and data.startswith(b"\x89PNG") for mime, data in images)
    assert any("first accepted frame of this scene" in t for t in request.texts)
    assert any("previous segment" in t for t in request.texts)
    # Booked: two calls, charged at their token counts, under the judge's own provider name.
    entries = [e for e in ledger.entries if e.provider == LEDGER_PROVIDER]
    assert [e.key for e in entries] == ["seg0/judge1", "seg1/judge1"]
    assert all(e.state is EntryState.CHARGED and 0 < e.cost_usd < e.estimate_usd for e in entries)
    assert second.scores["vision"]["cost_usd"] == entries[1].cost_usd


@pytest.mark.parametrize("fault", [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.MALFORMED])
def test_failures_fall_back_to_the_local_scorers_and_say_so(server, fake, clips, fault):
    jobs, paths = clips
    ledger = CostLedger()
    fake.inject(fault)
    verdict = adapter(server, ledger=ledger).judge(jobs[0], paths[0], None)
    assert verdict.passed and "vision" not in verdict.scores  # the local verdict: a clean segment passes
    assert "Gemini judge unavailable" in verdict.scores["notes"] and "local scorers" in verdict.scores["notes"]
    assert verdict.warnings and server.api_key not in " ".join(verdict.warnings)
    expected = {Fault.RATE_LIMIT: "429", Fault.SERVER_ERROR: "500", Fault.MALFORMED: "not a verdict"}[fault]
    assert expected in verdict.warnings[0]
    entry = ledger.entries[-1]
    # An error answer is not billed; a garbage answer was (tokens in and out).
    assert entry.state is (EntryState.CHARGED if fault is Fault.MALFORMED else EntryState.RELEASED)


def test_timeouts_and_an_exhausted_budget_fall_back_too(server, fake, clips):
    jobs, paths = clips
    fake.slow_s = 3.0
    fake.inject(Fault.SLOW)
    ledger = CostLedger()
    slow = adapter(server, ledger=ledger, timeout_s=0.5).judge(jobs[0], paths[0], None)
    assert slow.passed and "could not be reached" in slow.warnings[0]
    assert ledger.entries[-1].state is EntryState.CHARGED  # it may have reached the model: counted
    broke = CostLedger(budget_usd=0.0)
    poor = adapter(server, ledger=broke).judge(jobs[0], paths[0], None)
    assert poor.passed and "budget" in poor.warnings[0] and broke.entries == []


def test_second_opinion_asks_only_about_borderline_segments(server, fake, clips):
    jobs, paths = clips
    judge = adapter(server, mode="second_opinion")
    clean = judge.judge(jobs[1], paths[1], (jobs[0], paths[0]))
    assert clean.passed and fake.requests == []  # clear pass: nothing paid
    thresholds = judge.config.structural_thresholds
    scores = judge.history[-1].model_copy(update={"anchor": thresholds.anchor - 0.01})
    assert borderline(scores, thresholds, judge.config.second_opinion_band) == ["anchor"]
    assert judge.vision.wanted(scores, thresholds)


def test_adjustments_are_folded_into_the_regeneration_prompt():
    assert fold_adjustments("a fox in snow.", ["the red fox", "the red fox", " dawn light. "]) == \
        "a fox in snow. Keep consistent: the red fox; dawn light."
    assert fold_adjustments("a fox", []) == "a fox"
    long = "a red fox walks through deep snow under tall pines " * 30  # ~1500 characters
    folded = fold_adjustments(long, ["the red fox with a white-tipped tail"])
    assert len(folded) <= 1000 and folded.endswith("Keep consistent: the red fox with a white-tipped tail.")
    assert folded.startswith("a red fox walks") and ".. " not in folded  # Runway keeps the adjustments


def test_measured_failures_stand_against_a_passing_gemini_verdict():
    """Temporal and (thresholded) weighted failures are measured on the frames: Gemini's pass
    does not clear them; a failed consistency check alone it does decide."""
    from longvid.consistency.gemini_judge import VisionAnswer, VisionResult
    from longvid.consistency.judge import SegmentScores
    from longvid.consistency.vision_check import combine

    answer = VisionAnswer(character=0.9, scene=0.9, lighting=0.9, motion=0.9, passed=True)
    passing = VisionResult(answer=answer, passed=True, cost_usd=0.001, prompt_tokens=10, output_tokens=5, model="m")
    for failure in ("subject 0.610 < 0.800: the subject changes", "jump 0.010 < 0.100: a hard cut"):
        local = SegmentScores(passed=False, failures=[failure], backend="clip")
        verdict = combine(local, -1.0, passing, None)
        assert not verdict.passed and verdict.reason == failure and verdict.quality == -1.0
    judged = SegmentScores(passed=False, failures=["anchor 0.600 < 0.700: drifted"], backend="clip")
    assert combine(judged, 0.6, passing, None).passed


def test_gemini_judge_without_a_key_is_refused_up_front():
    from longvid.wiring import RenderOptions, make_vision_check

    with pytest.raises(InputError, match="--judge gemini needs a Gemini key"):
        make_vision_check(RenderSpec(prompt="a fox", judge="gemini"), RenderOptions(), Settings(), 0.05)
    with pytest.raises(InputError, match="--second-opinion"):
        make_vision_check(RenderSpec(prompt="a fox"), RenderOptions(second_opinion=True), Settings(), 0.05)
    assert make_vision_check(RenderSpec(prompt="a fox"), RenderOptions(), Settings(), 0.05) is None
    assert VisionAnswer.model_json_schema()["required"]


def test_a_render_books_the_judge_and_regenerates_with_its_adjustments(server, fake, tmp_path):
    """End to end (in-process runner): Gemini fails segment 1's first attempt; the segment is
    regenerated with the adjustments in its prompt, and every call is in the manifest's ledger."""
    from longvid.consistency import FramePackCompressor
    from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
    from longvid.runtime.store import read_manifest

    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=6, fps=12, resolution="360p",
                      judge="gemini", budget_usd=1.0)
    fake.script(PASSING).script(FAILING)  # segment 0 passes, segment 1's first attempt fails
    judge = adapter(server)
    judge.context = FramePackCompressor(device="cpu")
    store = LocalRunStore(tmp_path / "store")
    result = RenderPipeline(store, InlineSegmentRunner(), judge=judge).render(spec)
    manifest = read_manifest(store.open(result.run_id))
    record = manifest.segments[1]
    assert record.regenerations == 1 and [a.passed for a in record.scores] == [False, True]
    assert record.scores[0].vision.reasons == ("the fox became a deer",) and record.scores[1].vision.passed
    assert record.prompt_adjustments == ("the red fox with a white-tipped tail",)
    folded = [r for r in fake.requests if any("Keep consistent: the red fox with a white-tipped tail" in t for t in r.texts)]
    assert len(folded) == 1  # the regenerated attempt was asked for, and judged, with the adjustment
    booked = [e for e in manifest.ledger if e.provider == LEDGER_PROVIDER]
    assert len(booked) == len(fake.requests) == len(manifest.segments) + 1 and all(e.state is EntryState.CHARGED for e in booked)
    # resuming the finished run does not mistake the judge's calls (no task ids) for unanswered creates
    from longvid.providers.ledger import TASKLESS_PROVIDERS

    assert LEDGER_PROVIDER in TASKLESS_PROVIDERS
    judge = adapter(server)
    judge.context = FramePackCompressor(device="cpu")
    RenderPipeline(store, InlineSegmentRunner(), judge=judge).resume(result.run_id)
    resumed = read_manifest(store.open(result.run_id))
    assert not [w for w in resumed.warnings if "may have been paid for without a result" in w], resumed.warnings
    assert [e for e in resumed.ledger if e.provider == LEDGER_PROVIDER] == booked


def test_the_cli_refuses_judge_gemini_without_a_key_in_one_line(tmp_path, capsys, monkeypatch):
    from longvid.cli import main

    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    code = main(["render", "a fox", "-d", "5", "--judge", "gemini", "--store", str(tmp_path), "--candidates", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--judge gemini needs a Gemini key" in err
    assert not any(tmp_path.iterdir())  # nothing started


def test_the_kept_candidate_is_not_asked_about_twice(server, fake, clips):
    """Best-of-N scores a candidate (score_only), then judges the kept one for the record:
    Gemini is asked once about the same bytes, and the verdict is the same."""
    jobs, paths = clips
    ledger = CostLedger(budget_usd=1.0)
    judge = adapter(server, ledger=ledger)
    scored = judge.score_only(jobs[0], paths[0], None)
    kept = judge.judge(jobs[0], paths[0], None)
    assert len(fake.requests) == 1 and len([e for e in ledger.entries if e.provider == LEDGER_PROVIDER]) == 1
    assert kept.passed == scored.passed and kept.scores["vision"] == scored.scores["vision"]
    judge.judge(jobs[0], paths[0], None)  # a regeneration of the same bytes later is asked again
    assert len(fake.requests) == 2


def test_a_judge_call_is_on_the_books_before_it_is_made(server, fake, clips):
    """bind_ledger's persist runs after the reservation, before the request: a driver that dies
    during the call leaves it in the manifest."""
    jobs, paths = clips
    ledger, seen = CostLedger(budget_usd=1.0), []
    judge = adapter(server)
    judge.bind_ledger(ledger, lambda: seen.append(([(e.key, e.state) for e in ledger.entries], len(fake.requests))))
    judge.judge(jobs[0], paths[0], None)
    assert seen == [([("seg0/judge1", EntryState.RESERVED)], 0)] and len(fake.requests) == 1


def test_resume_keeps_the_second_opinion_and_refuses_it_without_a_key(tmp_path, capsys, monkeypatch):
    """--second-opinion and --judge-model travel with the run (in its spec): resume judges as
    the render did, and refuses in one line, before Ray, when the key is gone."""
    from longvid.cli import main
    from longvid.manifest import RunManifest
    from longvid.runtime import LocalRunStore
    from longvid.runtime.layout import MANIFEST
    from longvid.runtime.store import write_model
    from longvid.wiring import RenderOptions, make_vision_check

    spec = RenderSpec(prompt="a fox", judge="structural", second_opinion=True, judge_model="gemini-2.5-pro")
    assert RenderSpec.model_validate_json(spec.model_dump_json()) == spec
    assert "second_opinion" not in RenderSpec(prompt="a fox").model_dump_json()  # old run ids unchanged
    check = make_vision_check(spec, RenderOptions(), Settings(gemini=GeminiSettings(api_key=SecretStr("k" * 20))), 0.05)
    assert check is not None and check.mode == "second_opinion" and check.judge.model == "gemini-2.5-pro"
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    write_model(LocalRunStore(tmp_path).create("r1"), MANIFEST, RunManifest(run_id="r1", spec=spec))
    code = main(["resume", "r1", "--store", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--second-opinion needs a Gemini key" in err
