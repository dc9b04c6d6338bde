"""The fault matrix: a render through the real Runway client against the fake server, one
injected fault at a time. Each render ends with every segment accepted (retry or repair)
or a clear per-segment failure; every task that exists at the provider is in the ledger;
the budget is never passed."""


import pytest

from longvid.errors import RenderError
from longvid.manifest import load_manifest
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.settings import Settings
from longvid.spec import RenderSpec, SegmentState
from longvid.testing.fake_runway import DEFAULT_KEY, Fault, start_fake_runway

# fault, expected outcome, extra tasks created at the provider beyond one per segment
MATRIX = [
    (Fault("429", on="create", retry_after=0.05), "ok", 0),
    (Fault("503", on="create"), "ok", 0),
    # The fake fails before making a task, but a client cannot know that: it is booked at the estimate.
    (Fault("500", on="create"), "failed: outcome unknown", -1),
    # Refused for safety: reworded once by the planner, and the reworded prompt passes...
    (Fault("fail", failure_code="SAFETY.INPUT.TEXT"), "ok: reworded", 1),
    (Fault("fail", failure_code="INTERNAL"), "ok", 1),
    (Fault("throttle", polls=3), "ok", 0),
    (Fault("stuck"), "submitted: still running", 0),
    (Fault("malformed", on="poll"), "ok", 0),
    (Fault("500", on="poll", times=2), "ok", 0),
    (Fault("truncate", on="download"), "ok", 0),
]


@pytest.mark.parametrize("fault, outcome, extra", MATRIX, ids=[f"{f.kind}-{f.on}-{f.failure_code}" for f, _, _ in MATRIX])
def test_fault_matrix(fault, outcome, extra, tmp_path, monkeypatch):
    server, fake = start_fake_runway(pending_polls=1, running_polls=1)
    try:
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
        monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
        monkeypatch.setenv("LONGVID_TASK_TIMEOUT_S", "8")  # above the client's own poll backoff
        budget = 5.0
        spec = RenderSpec(prompt="a lighthouse at night", duration_s=8, resolution="360p", provider="runway",
                          judge="off", budget_usd=budget, continuity="anchor")
        fake.faults.append(fault)
        pipeline = RenderPipeline(LocalRunStore(tmp_path / "store"), InlineSegmentRunner(), settings=Settings.from_env())
        if outcome.startswith("ok"):
            result = pipeline.render(spec, run_id="r")
            assert result.frames == 8 * 24
        else:
            with pytest.raises(RenderError) as info:
                pipeline.render(spec, run_id="r")
            message = str(info.value)
            assert "segment" in message and "longvid resume r" in message
        manifest = load_manifest((tmp_path / "store" / "r" / "manifest.json").read_text())
        segments = len(manifest.segments)
        assert len(fake.tasks) == segments + extra  # tasks that exist at the provider
        booked = {e.task_id for e in manifest.ledger}
        assert set(fake.tasks) <= booked  # ...and every one is on the books
        unknown = [e for e in manifest.ledger if e.task_id is None]
        assert all(e.state == "charged" and "unknown" in e.note for e in unknown)
        assert len(manifest.ledger) == len(fake.tasks) + len(unknown)
        assert manifest.cost_usd <= budget
        states = [r.state for r in manifest.segments]
        if outcome.startswith("ok"):
            assert states == [SegmentState.ACCEPTED] * segments
            if "reworded" in outcome:
                reworded = [r for r in manifest.segments if r.rephrased_prompt]
                assert len(reworded) == 1 and reworded[0].rephrased_prompt.startswith("A gentle")
                assert fake.tasks[reworded[0].task_id].prompt.startswith("A gentle")
        elif outcome.startswith("failed"):
            bad = [r for r in manifest.segments if r.state is SegmentState.FAILED]
            assert len(bad) == 1 and bad[0].error
            if "SAFETY" in outcome:
                assert "SAFETY" in bad[0].error
        else:  # still running at the provider: left submitted so that resume polls it
            assert states.count(SegmentState.SUBMITTED) == 1
        assert DEFAULT_KEY not in (tmp_path / "store" / "r" / "manifest.json").read_text()
    finally:
        server.stop()


def test_resume_after_a_refused_create_keeps_the_books_straight(tmp_path, monkeypatch):
    """A create refused with 429 past its retries, then a resume: a new ledger entry, the
    released one stays released, and the segment completes."""
    server, fake = start_fake_runway(pending_polls=1, running_polls=1)
    try:
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
        monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
        spec = RenderSpec(prompt="a lighthouse at night", duration_s=8, resolution="360p", provider="runway",
                          judge="off", budget_usd=5.0, continuity="anchor")
        fake.faults.append(Fault("400", on="create", times=1, message="bad request"))
        store = LocalRunStore(tmp_path / "store")
        with pytest.raises(RenderError):
            RenderPipeline(store, InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
        first = load_manifest((tmp_path / "store" / "r" / "manifest.json").read_text())
        # One refused create does not stop the independent segments.
        assert sum(r.state is SegmentState.ACCEPTED for r in first.segments) == len(first.segments) - 1
        result = RenderPipeline(store, InlineSegmentRunner(), settings=Settings.from_env()).resume("r")
        manifest = load_manifest((tmp_path / "store" / "r" / "manifest.json").read_text())
        assert result.frames == 8 * 24 and all(r.state is SegmentState.ACCEPTED for r in manifest.segments)
        released = [e for e in manifest.ledger if e.state == "released"]
        assert len(released) == 1 and released[0].cost_usd == 0.0
        assert len({e.key for e in manifest.ledger}) == len(manifest.ledger) == len(fake.tasks) + 1
    finally:
        server.stop()


def test_a_prompt_refused_again_after_rewording_fails_with_the_reason(tmp_path, monkeypatch):
    """SAFETY is never retried verbatim: one reworded try, then the segment fails."""
    server, fake = start_fake_runway(pending_polls=1, running_polls=1)
    try:
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", DEFAULT_KEY)
        monkeypatch.setenv("LONGVID_POLL_INTERVAL_S", "0.02")
        fake.faults.append(Fault("fail", failure_code="SAFETY.INPUT.TEXT", times=None))
        spec = RenderSpec(prompt="a knight with a sword", duration_s=8, resolution="360p", provider="runway",
                          judge="off", budget_usd=5.0, continuity="anchor")
        with pytest.raises(RenderError, match="SAFETY"):
            RenderPipeline(LocalRunStore(tmp_path), InlineSegmentRunner(), settings=Settings.from_env()).render(spec, run_id="r")
        manifest = load_manifest((tmp_path / "r" / "manifest.json").read_text())
        assert all(r.state is SegmentState.FAILED and "SAFETY" in r.error for r in manifest.segments)
        assert len(fake.tasks) == 2 * len(manifest.segments)  # the planned prompt, then the reworded one
        prompts = sorted(t.prompt for t in fake.tasks.values())
        assert sum("staff" in p for p in prompts) == len(manifest.segments)  # "sword" reworded
        assert len(manifest.ledger) == len(fake.tasks)
    finally:
        server.stop()
