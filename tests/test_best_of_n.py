"""Best-of-N: N candidates of a segment, made in parallel, the best kept by the judge, every
candidate's cost booked; the budget lowers N with a warning."""

import json
from dataclasses import replace

import pytest

from longvid.consistency import FramePackCompressor, JudgeConfig
from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
from longvid.providers import registry
from longvid.providers.ledger import EntryState
from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.planning.segmentation import scene_seed
from longvid.providers.preview import render_frames
from longvid.runtime.candidates import CandidatePlan, candidate_seed, pick_best, plan_candidates, without_openers
from longvid.runtime.store import read_manifest
from longvid.spec import RenderSpec
from longvid.testing import drift_clips as dc

PRICE = 0.05  # USD per second


class PaidPreview(PreviewProvider):
    """The preview renderer billed like a paid provider; a scene opener's planned seed and its
    first extra candidate come out in the wrong palette, the second extra one right (so the
    judge must swap the planned seed out)."""

    capabilities = replace(PREVIEW_CAPABILITIES, name="paid-preview", price_per_second_usd=PRICE)
    good_extra_k = 2
    watch = None  # a store folder: each extra candidate's create call looks for its reservation there
    reserved_first: dict = {}  # (segment, seed) -> its reservation was on disk at the first create call

    def submit(self, job, conditioning_png=None):
        planned = scene_seed(0, job.scene_index)
        if self.watch is not None and job.segment_in_scene == 0 and job.seed != planned and (job.index, job.seed) not in self.reserved_first:
            ledgers = [json.loads(m.read_text()).get("ledger", []) for m in self.watch.rglob("manifest.json")]
            self.reserved_first[job.index, job.seed] = (any(e["key"].startswith(f"seg{job.index}/cand") and e.get("task_id") is None
                                           and e["estimate_usd"] > 0 for entries in ledgers for e in entries))
        if job.segment_in_scene == 0:  # openers arrive at another size: normalised, so recorded before judging
            job = job.model_copy(update={"width": job.width + 32})
        bad = {planned, candidate_seed(planned, 1)} if job.segment_in_scene == 0 else set()
        if job.seed in bad:
            job = dc.with_scene(job, color_palette=dc.DRIFT_PALETTE)
        return super().submit(job, conditioning_png)

    def price(self, duration_s):
        return round(PRICE * duration_s, 6)


def test_plan_candidates_lowers_n_to_the_budget_and_scopes_it():
    jobs = dc.tiny_jobs(duration_s=12)  # 4 segments, 2 scene openers
    spec = RenderSpec(prompt="a fox", duration_s=12, candidates=4, budget_usd=None)
    plan, note = plan_candidates(spec, jobs, 0.1)
    assert plan == CandidatePlan(4, "openers") and note is None
    assert [plan.for_job(j) for j in jobs] == [4, 1, 4, 1]
    assert [CandidatePlan(3, "all").for_job(j) for j in jobs] == [3, 3, 3, 3]
    base = sum(0.1 * j.generate_duration_s for j in jobs)
    extra = sum(0.1 * j.generate_duration_s for j in jobs if j.segment_in_scene == 0)
    tight = spec.model_copy(update={"budget_usd": base + 2 * extra + 0.01})
    plan, note = plan_candidates(tight, jobs, 0.1)
    assert plan.count == 3 and "making 3 candidates per segment instead" in note
    plan, note = plan_candidates(spec.model_copy(update={"budget_usd": base}), jobs, 0.1)
    assert plan.count == 1 and "--candidates 4" in note
    assert plan_candidates(spec.model_copy(update={"budget_usd": 0.0}), jobs, 0.0)[0].count == 4  # free: no limit


def test_pick_best_prefers_passing_then_quality_then_the_planned_seed():
    assert pick_best([(0, False, 0.9), (1, True, 0.5), (2, True, 0.7)]) == 2
    assert pick_best([(0, True, 0.8), (1, True, 0.8)]) == 0
    with pytest.raises(ValueError):
        pick_best([])


def test_render_keeps_the_best_candidate_and_books_every_one(tmp_path):
    saved = dict(registry._FACTORIES)
    registry.register_provider("paid-preview", PaidPreview.capabilities, lambda settings: PaidPreview())
    try:
        spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=6, fps=12, resolution="360p",
                          provider="paid-preview", candidates=3, budget_usd=10.0)
        store = LocalRunStore(tmp_path / "store")
        PaidPreview.watch, PaidPreview.reserved_first = tmp_path / "store", {}
        planned = RenderPipeline(store, InlineSegmentRunner()).plan(spec)
        # The look asked for, as reference images (what --image gives): without them the
        # structural judge could not tell openers apart (see the test below).
        looks = [next(render_frames(j, None, frame_count=1)) for j in planned.jobs if j.segment_in_scene == 0]
        judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), reference_images=looks,
                                        context=FramePackCompressor(device="cpu"))
        result = RenderPipeline(store, InlineSegmentRunner(), judge=judge).render(spec, planned=planned)
    finally:
        PaidPreview.watch = None
        registry._FACTORIES.clear()
        registry._FACTORIES.update(saved)
    run = store.open(result.run_id)
    manifest = read_manifest(run)
    openers = [r for r in manifest.segments if r.candidates]
    assert openers and len(openers) == len({r.scene_index for r in manifest.segments})  # each scene's opener
    for record in openers:
        assert [c.k for c in record.candidates] == [0, 1, 2]
        kept = [c for c in record.candidates if c.kept]
        assert len(kept) == 1
        best = max(record.candidates, key=lambda c: (c.passed, c.quality, -c.k))
        assert kept[0] is best and record.seed == best.seed and record.clip.sha256 == best.sha256
        assert kept[0].k == PaidPreview.good_extra_k and record.seed != scene_seed(0, record.scene_index)  # swapped
        assert not record.candidates[0].passed and record.candidates[0].quality < kept[0].quality
        assert all(run.exists(c.file) for c in record.candidates)
        booked = [e for e in manifest.ledger if e.segment == record.index]
        assert len(booked) == 3 and all(e.state is EntryState.CHARGED for e in booked)
        assert record.cost_usd == pytest.approx(sum(e.cost_usd for e in booked))
        assert record.cost_usd == pytest.approx(sum(c.cost_usd for c in record.candidates))
        # candidate 0 was normalised (recorded before judging): shown at what it cost, not $0
        assert record.candidates[0].cost_usd == pytest.approx(PRICE * record.clip.frames / record.clip.fps, abs=1e-5)
        assert record.clip.cost_usd == pytest.approx(kept[0].cost_usd) and record.clip.original
    # every extra candidate's reservation was on disk before its create call
    assert len(PaidPreview.reserved_first) == 2 * len(openers) and all(PaidPreview.reserved_first.values())
    inside = [r for r in manifest.segments if not r.candidates]
    assert inside and all(len([e for e in manifest.ledger if e.segment == r.index]) == 1 for r in inside)
    import json

    from longvid.review import write_review
    from longvid.manifest import RunPlan

    report = json.loads(run.read_bytes("report.json"))
    shown = report["segments"][openers[0].index]["candidates"]
    assert [c["kept"] for c in shown] == [c.kept for c in openers[0].candidates] and "scores" in shown[0]
    write_review(run, manifest, RunPlan.model_validate_json(run.read_bytes("plan.json")))
    page = run.read_bytes("report.html").decode()
    assert page.count("best of 3") == len(openers) and page.count(">kept</span>") == len(openers)


def test_openers_get_one_candidate_when_the_judge_cannot_compare_them():
    blind = ConsistencySegmentJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
    assert not blind.compares_openers
    import numpy as np

    seeing = ConsistencySegmentJudge(JudgeConfig(backend="structural"), reference_images=[np.zeros((36, 64, 3), np.uint8)],
                                     context=FramePackCompressor(device="cpu"))
    assert seeing.compares_openers
    plan, note = without_openers(CandidatePlan(3, "openers"), False)
    assert plan.count == 1 and "cannot tell scene openers apart" in note
    jobs = dc.tiny_jobs(duration_s=12)
    plan, note = without_openers(CandidatePlan(3, "all"), False)
    assert [plan.for_job(j) for j in jobs] == [1, 3, 1, 3] and "scene openers get one candidate" in note
    assert without_openers(CandidatePlan(3, "openers"), True) == (CandidatePlan(3, "openers"), None)
