"""A run folder written before the run state was typed (tests/data/run_v1, made by
make_run_v1.py with the code of commit 820ec13) still reads, shows and resumes: the judge's
attempts, the ledger and the status keep their JSON shape on disk."""

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from longvid.cli import main
from longvid.consistency import FramePackCompressor, JudgeConfig
from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
from longvid.manifest import AttemptRecord, RunPlan, RunStatus, load_manifest
from longvid.providers import register_provider
from longvid.providers.ledger import EntryState, LedgerEntry
from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
from longvid.review.summary import summarise
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from serve.views import render_view, summary_view

RUN = Path(__file__).parent / "data" / "run_v1" / "legacy-v1"


class LegacyPaid(PreviewProvider):
    """The provider the fixture was rendered with: the preview renderer, ten cents a second,
    non-idempotent (so a recorded task is polled, never re-created). Counts creates."""

    capabilities = replace(PREVIEW_CAPABILITIES, name="legacy-paid", idempotent_submit=False, price_per_second_usd=0.10)
    tasks: ClassVar[dict] = {}
    creates: ClassVar[list[int]] = []

    def price(self, duration_s):
        return 0.10 * duration_s

    def submit(self, job, conditioning_png=None):
        LegacyPaid.creates.append(job.index)
        task_id = super().submit(job, conditioning_png)
        LegacyPaid.tasks[task_id] = self._jobs[task_id]
        return task_id

    def poll(self, task_id):
        self._jobs.setdefault(task_id, LegacyPaid.tasks[task_id])
        return super().poll(task_id)


@pytest.fixture
def store(tmp_path):
    register_provider("legacy-paid", LegacyPaid.capabilities, lambda settings: LegacyPaid())
    LegacyPaid.creates.clear()
    shutil.copytree(RUN, tmp_path / "store" / "legacy-v1")
    return tmp_path / "store"


def test_old_manifest_loads_and_writes_back_byte_for_byte():
    text = (RUN / "manifest.json").read_text()
    manifest = load_manifest(text)
    assert manifest.model_dump_json(indent=2) == text  # what the runtime writes: the same shape, the same values
    assert manifest.status == "failed" and manifest.cost_usd == pytest.approx(2.6)
    assert manifest.cost_breakdown()["by_segment"] == {"0": 0.45, "1": 0.9, "2": 0.45, "3": 0.8}


def test_old_manifest_reads_as_typed_records():
    manifest = load_manifest((RUN / "manifest.json").read_text())
    assert manifest.status is RunStatus.FAILED
    assert all(isinstance(e, LedgerEntry) and e.state is EntryState.CHARGED for e in manifest.ledger)
    rejected, kept = manifest.segments[3].scores
    assert isinstance(rejected, AttemptRecord) and not rejected.passed and kept.passed
    assert rejected.measured == {"anchor": rejected.anchor, "seam": rejected.seam} and rejected.anchor < 0.75
    assert kept.quality > rejected.quality and manifest.segments[3].seed == kept.seed
    assert manifest.segments[1].scores == [] and manifest.segments[1].error


def test_api_and_review_show_the_old_run_as_before():
    text = (RUN / "manifest.json").read_text()
    before, manifest = json.loads(text), load_manifest(text)
    body = json.dumps(render_view("legacy-v1", manifest, None, 0.0, 60.0, links={}, hidden=[]))
    shown = json.loads(body)
    assert shown["status"] == "failed" and '"status": "failed"' in body
    for old, now in zip(before["segments"], shown["segments"]):  # the judge's attempts: same keys, order and values
        assert json.dumps(now["scores"]) == json.dumps(old["scores"])
    assert json.loads(json.dumps(summary_view("legacy-v1", manifest, None, 0.0, 60.0)))["status"] == "failed"
    plan = RunPlan.model_validate_json((RUN / "plan.json").read_text())
    first, second = summarise(manifest, plan).segments[3].judged
    assert first.describe().startswith(f"attempt 1 failed · seed {first.seed} · quality 0.24 · anchor 0.24 seam 0.78 · anchor 0.235 < 0.750")
    assert second.passed and second.scores == pytest.approx({"anchor": 0.9918, "seam": 0.998}, abs=1e-4)


def test_status_of_an_old_run_says_what_resume_will_do(store, capsys):
    assert main(["status", "legacy-v1", "--store", str(store), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "failed" and shown["cost_usd"] == pytest.approx(2.6)
    assert [s["resume"] for s in shown["segments"]] == ["keep", "generate", "keep", "keep"]


def test_old_run_resumes_keeping_its_accepted_segments_and_their_scores(store):
    before = json.loads((RUN / "manifest.json").read_text())
    judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
    result = RenderPipeline(LocalRunStore(store), InlineSegmentRunner(), judge=judge).resume("legacy-v1")
    assert LegacyPaid.creates == [1]  # only the failed segment was paid for again
    assert result.reused_segments == 3 and result.generated_segments == 1
    after = json.loads((store / "legacy-v1" / "manifest.json").read_text())
    assert after["status"] == "done" and after["error"] is None
    assert [s["state"] for s in after["segments"]] == ["accepted"] * 4
    for index in (0, 2, 3):  # the judge's attempts from before the upgrade, unchanged
        assert after["segments"][index]["scores"] == before["segments"][index]["scores"]
    assert after["ledger"][:6] == before["ledger"] and len(after["ledger"]) == 7
    assert after["ledger"][6]["segment"] == 1 and after["ledger"][6]["state"] == "charged"
    report = json.loads((store / "legacy-v1" / "report.json").read_text())
    assert [len(s["scores"]) for s in report["segments"]] == [1, 1, 1, 2]
    assert report["segments"][3]["scores"] == before["segments"][3]["scores"]
