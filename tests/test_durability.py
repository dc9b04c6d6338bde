"""Durable renders without Ray: resume decisions, the segment cache, corruption, edits,
cancellation and a crash between creating a provider task and collecting it."""

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import decode_rgb
from longvid.errors import InputError
from longvid.manifest import RunManifest, SegmentRecord, load_manifest
from longvid.providers import register_provider
from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.pipeline import Cancelled
from longvid.runtime.resume import Action, resume_action, segment_key
from longvid.spec import Clip, RenderSpec, SegmentState

SPEC = dict(prompt="a red fox. a frozen river. a ridge at dusk.", duration_s=8, resolution="360p", seed=5)


def _pipeline(store, **kwargs):
    return RenderPipeline(LocalRunStore(store), InlineSegmentRunner(), **kwargs)


def _manifest(run_dir: Path) -> RunManifest:
    return load_manifest((run_dir / "manifest.json").read_text())


# -- pure decisions ---------------------------------------------------------------------

def _record(state, **extra):
    return SegmentRecord(index=0, scene_index=0, provider="x", state=state, **extra)


CLIP = Clip(segment_index=0, provider="x", model="m", path="segments/seg_0000.mp4", frames=1, width=2, height=2, fps=24, sha256="0")


@pytest.mark.parametrize(
    "record, file_ok, idempotent, action",
    [
        (_record(SegmentState.ACCEPTED, clip=CLIP), True, False, Action.KEEP),
        (_record(SegmentState.ACCEPTED, clip=CLIP), False, False, Action.GENERATE),
        (_record(SegmentState.GENERATED, clip=CLIP), True, False, Action.ACCEPT),
        (_record(SegmentState.SUBMITTED, task_id="t1"), False, False, Action.POLL),
        (_record(SegmentState.SUBMITTED, task_id="t1"), False, True, Action.GENERATE),
        (_record(SegmentState.FAILED, error="boom"), False, False, Action.GENERATE),
        (_record(SegmentState.PENDING), False, False, Action.GENERATE),
    ],
)
def test_resume_decisions(record, file_ok, idempotent, action):
    assert resume_action(record, lambda r: file_ok, idempotent)[0] is action


def test_segment_key_tracks_content_not_position():
    spec = RenderSpec(**SPEC)
    planned = RenderPipeline().plan(spec)
    storyboard, jobs = planned.storyboard, planned.jobs
    job = jobs[1]
    key = segment_key("preview", "m", job, None)
    assert key == segment_key("preview", "m", job.model_copy(update={"index": 9, "start_frame": 500}), None)
    for changed in (
        job.model_copy(update={"prompt": job.prompt + "!"}),
        job.model_copy(update={"seed": job.seed + 1}),
        job.model_copy(update={"generate_duration_s": job.generate_duration_s + 1}),
    ):
        assert segment_key("preview", "m", changed, None) != key
    assert segment_key("preview", "m", job, b"png") != key
    assert segment_key("runway", "m", job, None) != key


# -- whole renders, inline ----------------------------------------------------------------

def test_rerender_reuses_every_segment_from_the_cache(tmp_path):
    spec = RenderSpec(**SPEC)
    first = _pipeline(tmp_path / "store").render(spec, output=tmp_path / "a.mp4")
    second = _pipeline(tmp_path / "store").render(spec, output=tmp_path / "b.mp4")
    assert first.generated_segments == first.segments and first.reused_segments == 0
    assert second.generated_segments == 0 and second.reused_segments == second.segments
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert all(r.cached for r in _manifest(Path(second.run_dir)).segments)


@pytest.mark.parametrize("continuity", ["auto", "chain"])
def test_editing_one_scene_regenerates_only_what_it_affects(tmp_path, continuity):
    board = tmp_path / "board.json"
    scenes = [
        {"description": "a lighthouse at night", "lighting": "night", "duration_s": 4},
        {"description": "waves crash on rocks", "camera_movement": "pan_left", "duration_s": 4},
        {"description": "a ship arrives at dawn", "lighting": "dawn", "duration_s": 4},
    ]
    board.write_text(json.dumps({"title": "Sea", "scenes": scenes}))
    spec = RenderSpec(prompt="sea", duration_s=31, fps=12, resolution="360p", storyboard_file=board, continuity=continuity)
    first = _pipeline(tmp_path / "store").render(spec)
    jobs = json.loads((Path(first.run_dir) / "plan.json").read_text())["segments"]
    scenes[1]["description"] = "waves crash on black rocks under a storm"
    board.write_text(json.dumps({"title": "Sea", "scenes": scenes}))
    second = _pipeline(tmp_path / "store").render(spec)
    edited = {j["index"] for j in jobs if j["scene_index"] == 1}
    assert len(edited) >= 2
    if continuity == "chain":
        # The next scene's opener starts from the edited scene's last frame, so it changes too.
        # Segments after it start from frames that came out byte-identical, so they are reused.
        edited.add(min(j["index"] for j in jobs if j["scene_index"] == 2))
    regenerated = {r.index for r in _manifest(Path(second.run_dir)).segments if not r.cached}
    assert regenerated == edited
    assert second.generated_segments == len(edited) and second.reused_segments == len(jobs) - len(edited)


def test_corrupt_segment_is_detected_and_regenerated(tmp_path):
    spec = RenderSpec(**SPEC)
    result = _pipeline(tmp_path / "store").render(spec, output=tmp_path / "out.mp4")
    reference = decode_rgb(tmp_path / "out.mp4")
    run_dir = Path(result.run_dir)
    victim = run_dir / "segments" / "seg_0001.mp4"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated on disk
    store = LocalRunStore(tmp_path / "store")
    # Drop the cache copy too, so the segment must really be generated again.
    for cached in (tmp_path / "store" / "cache").rglob("*.mp4"):
        cached.unlink()
    again = RenderPipeline(store, InlineSegmentRunner()).resume(result.run_id)
    assert again.generated_segments == 1 and again.reused_segments == result.segments - 1
    history = _manifest(run_dir).segments[1].history
    assert history and "checksum" in history[0]
    assert all(abs(a.astype(int) - b).max() == 0 for a, b in zip(reference, decode_rgb(tmp_path / "out.mp4")))


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"version": 1, "run_id": "x", "spec"', "corrupt or truncated"),
        ('{"version": 99, "run_id": "x"}', "upgrade longvid"),
        ('{"version": 1, "run_id": "x"}', "is invalid"),
    ],
)
def test_bad_manifests_are_refused_clearly(tmp_path, content, message):
    spec = RenderSpec(**SPEC)
    result = _pipeline(tmp_path / "store").render(spec)
    (Path(result.run_dir) / "manifest.json").write_text(content)
    with pytest.raises(InputError, match=message):
        _pipeline(tmp_path / "store").resume(result.run_id)


def test_existing_run_id_with_another_request_is_refused(tmp_path):
    _pipeline(tmp_path / "store").render(RenderSpec(**SPEC), run_id="mine")
    with pytest.raises(InputError, match="exists with a different request"):
        _pipeline(tmp_path / "store").render(RenderSpec(**{**SPEC, "seed": 6}), run_id="mine")


def test_cancel_leaves_a_resumable_run(tmp_path):
    stop = threading.Event()

    class StopAfterFirst:
        def planned(self, *a):
            pass

        def segment(self, index, state, detail=""):
            if state is SegmentState.ACCEPTED:
                stop.set()

        def merging(self):
            pass

    spec = RenderSpec(**SPEC)
    pipeline = _pipeline(tmp_path / "store", progress=StopAfterFirst(), stop=stop)
    with pytest.raises(Cancelled, match="longvid resume cancelled-run"):
        pipeline.render(spec, run_id="cancelled-run", output=tmp_path / "out.mp4")
    run_dir = tmp_path / "store" / "cancelled-run"
    manifest = _manifest(run_dir)
    assert manifest.status == "cancelled"
    accepted = sum(1 for r in manifest.segments if r.state is SegmentState.ACCEPTED)
    assert 1 <= accepted < len(manifest.segments)
    done = _pipeline(tmp_path / "store").resume("cancelled-run")
    assert done.reused_segments >= accepted and (tmp_path / "out.mp4").is_file()
    assert _manifest(run_dir).status == "done"


# -- a paid-style provider: resume must poll, never create twice -------------------------

class CountingProvider(PreviewProvider):
    """The preview renderer behind a non-idempotent, task-style front, counting creates."""

    capabilities = replace(PREVIEW_CAPABILITIES, name="counting", idempotent_submit=False)
    creates: dict[int, int] = {}
    tasks: dict[str, tuple] = {}

    def submit(self, job, conditioning_png=None):
        CountingProvider.creates[job.index] = CountingProvider.creates.get(job.index, 0) + 1
        task_id = super().submit(job, conditioning_png)
        CountingProvider.tasks[task_id] = self._jobs[task_id]
        return task_id

    def poll(self, task_id):
        self._jobs.setdefault(task_id, CountingProvider.tasks[task_id])  # the "server" remembers
        return super().poll(task_id)


class CrashingRunner(InlineSegmentRunner):
    """Creates go through, then the 'process' dies before any result is collected."""

    def wait(self, handles):
        raise SystemExit("simulated crash")


def test_crash_after_creating_tasks_polls_them_on_resume(tmp_path):
    register_provider("counting", CountingProvider.capabilities, lambda settings: CountingProvider())
    CountingProvider.creates.clear()
    spec = RenderSpec(**{**SPEC, "provider": "counting", "continuity": "anchor"})
    with pytest.raises(SystemExit):
        RenderPipeline(LocalRunStore(tmp_path / "store"), CrashingRunner()).render(spec, run_id="crashed")
    manifest = _manifest(tmp_path / "store" / "crashed")
    submitted = [r.index for r in manifest.segments if r.state is SegmentState.SUBMITTED]
    assert submitted and all(manifest.segments[i].task_id for i in submitted)
    created_before = dict(CountingProvider.creates)
    result = _pipeline(tmp_path / "store").resume("crashed")
    assert result.frames == spec.total_frames
    for index in submitted:
        assert CountingProvider.creates[index] == created_before[index] == 1  # polled, not re-created
    assert sum(CountingProvider.creates.values()) == result.segments


class PaidFlakyProvider(CountingProvider):
    """Ten cents a second; the first task for segment 1 fails at the provider."""

    capabilities = replace(PREVIEW_CAPABILITIES, name="paid", idempotent_submit=False, price_per_second_usd=0.10)
    failed_once: set[str] = set()

    def price(self, duration_s):
        return 0.10 * duration_s

    def poll(self, task_id):
        job, _ = CountingProvider.tasks[task_id]
        if job.index == 1 and not PaidFlakyProvider.failed_once:
            PaidFlakyProvider.failed_once.add(task_id)
        if task_id in PaidFlakyProvider.failed_once:
            from longvid.providers.base import TaskState, TaskStatus

            return TaskStatus(TaskState.FAILED, error="internal error", failure_code="INTERNAL")
        return super().poll(task_id)


def test_ledger_records_every_paid_call_and_holds_the_budget(tmp_path):
    from longvid.errors import RenderError

    register_provider("paid", PaidFlakyProvider.capabilities, lambda settings: PaidFlakyProvider())
    CountingProvider.creates.clear()
    PaidFlakyProvider.failed_once.clear()
    probe = RenderSpec(**{**SPEC, "provider": "paid"})
    jobs = RenderPipeline().plan(probe).jobs
    estimates = [0.10 * j.generate_duration_s for j in jobs]
    budget = sum(estimates) + estimates[1] * 0.5  # not enough to pay segment 1 twice
    spec = RenderSpec(**{**SPEC, "provider": "paid", "budget_usd": budget, "continuity": "anchor"})
    with pytest.raises(RenderError, match="segment 1"):
        _pipeline(tmp_path / "store").render(spec, run_id="paid")
    manifest = _manifest(tmp_path / "store" / "paid")
    assert len(manifest.ledger) == sum(CountingProvider.creates.values()) == len(jobs)  # nothing paid off the books
    assert manifest.cost_usd == pytest.approx(sum(estimates)) and manifest.cost_usd <= budget
    assert [e.state for e in manifest.ledger].count("charged") == len(jobs)
    with pytest.raises(RenderError, match="budget"):
        _pipeline(tmp_path / "store").resume("paid")  # a second try at segment 1 would pass the budget
    manifest = _manifest(tmp_path / "store" / "paid")
    assert sum(CountingProvider.creates.values()) == len(manifest.ledger) == len(jobs)
    assert manifest.cost_usd <= budget
