"""What a render leaves behind once its segments are accepted: the merged video, the
result the caller gets, report.json, the review files (contact sheet, report.html) and
each provider's health for `longvid providers`."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..manifest import RunManifest, RunPlan, RunStatus, with_warnings
from ..media import MergeInput, MergeStats, merge_segments
from ..observability import render_events
from ..spec import SegmentJob, Storyboard
from .merge_ahead import MergeAhead
from .protocols import ProgressSink, SegmentJudge
from .router import SegmentRouter
from .layout import FINAL, REPORT, health_state
from .store import RunFolder, RunStore


@dataclass(frozen=True)
class RenderResult:
    run_id: str
    run_dir: str
    output: str
    frames: int
    fps: int
    width: int
    height: int
    segments: int
    scenes: int
    generated_segments: int  # made by a provider in this invocation
    reused_segments: int  # kept from an earlier attempt or taken from the cache
    cost_usd: float
    wall_s: float
    merge: MergeStats
    warnings: list[str] = field(default_factory=list)
    cost_by_provider: dict[str, float] = field(default_factory=dict)
    providers_used: dict[str, int] = field(default_factory=dict)  # segments made by each provider
    sound: dict | None = None  # the soundtrack's figures (loudness, true peak, cues, step times); None when silent

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def to_dict(self) -> dict:
        data = asdict(self)
        data["duration_s"] = round(self.duration_s, 4)
        data["wall_s"] = round(self.wall_s, 3)
        return data


@dataclass(frozen=True)
class MergeTarget:
    """Where a render's merge writes. Without a soundtrack to mix: final.mp4 itself, with the
    clips' audio in it. With narration or music to mix: the picture, and the clips' audio as
    raw PCM (no AAC made only to be decoded again), in scratch files of this invocation's
    own beside final.mp4; only the soundtrack step then writes final.mp4, so a failed one
    leaves the previous final.mp4 as it was, and a driver that lost the run to another never
    touches the new owner's files (the owner's merge sweeps stale ones: timeline.sweep_scratch)."""

    picture: Path
    audio_pcm: Path | None = None

    @property
    def is_final(self) -> bool:
        return self.audio_pcm is None

    def remove(self) -> None:
        if not self.is_final:
            self.picture.unlink(missing_ok=True)
            self.audio_pcm.unlink(missing_ok=True)


def merge_target(run: RunFolder, soundtrack_mixes: bool) -> MergeTarget:
    from ..media.timeline import new_scratch_tag, scratch_beside

    final = run.scratch_path(FINAL)
    if not soundtrack_mixes:
        return MergeTarget(final)
    tag = new_scratch_tag()
    return MergeTarget(scratch_beside(final, tag, "picture.mp4"), scratch_beside(final, tag, "audio.f32"))


def merge_run(run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob], stream_copy: bool,
              progress: ProgressSink, ahead: MergeAhead | None = None, target: MergeTarget | None = None) -> MergeStats:
    """The accepted segments merged with their transitions into `target` (default: the run's
    final.mp4, published): what `ahead` (made with the same target) merged while they
    generated, finished, or (without it, or when it cannot be used) a merge from scratch."""
    target = target or MergeTarget(run.scratch_path(FINAL))
    progress.merging()
    started = time.perf_counter()
    stats = ahead.finish(manifest) if ahead is not None else None
    if stats is not None:
        render_events.merged(time.perf_counter() - started)
        if target.is_final:
            run.publish(FINAL, target.picture)
        return stats
    spec = manifest.spec
    inputs = [
        MergeInput(run.local_path(manifest.segments[j.index].clip.path), j.frames, j.head_frames, j.head_transition, j.tail_frames)
        for j in jobs
    ]
    width, height = spec.frame_size
    started = time.perf_counter()
    stats = merge_segments(inputs, target.picture, spec.fps, width, height, stream_copy=stream_copy, audio_pcm=target.audio_pcm)
    render_events.merged(time.perf_counter() - started)
    if target.is_final:
        run.publish(FINAL, target.picture)
    return stats


def build_result(run: RunFolder, manifest: RunManifest, storyboard: Storyboard, jobs: list[SegmentJob], stats: MergeStats,
                 generated: int, reused: int, wall_s: float, sound: dict | None = None) -> RenderResult:
    width, height = manifest.spec.frame_size
    return RenderResult(
        run_id=run.run_id,
        run_dir=run.location(),
        output=manifest.output,
        frames=stats.frames,
        fps=manifest.spec.fps,
        width=width,
        height=height,
        segments=len(jobs),
        scenes=len(storyboard.scenes),
        generated_segments=generated,
        reused_segments=reused,
        cost_usd=manifest.cost_usd,
        wall_s=wall_s,
        merge=stats,
        warnings=list(manifest.warnings),
        cost_by_provider=manifest.cost_breakdown()["by_provider"],
        providers_used=providers_used(manifest),
        sound=sound,
    )


def write_report(run: RunFolder, manifest: RunManifest, result: RenderResult, judge: SegmentJudge | None) -> None:
    """report.json: what a person or a dashboard wants from a finished run."""
    judge_info = None if judge is None else {"backend": judge.backend, "notes": judge.notes}
    report = {
        "run_id": manifest.run_id,
        "prompt": manifest.spec.prompt,
        "output": result.output,
        "duration_s": round(result.duration_s, 4),
        "frames": result.frames,
        "size": [result.width, result.height],
        "fps": result.fps,
        "cost_usd": result.cost_usd,
        "cost": manifest.cost_breakdown(),
        "providers_used": result.providers_used,
        "wall_s": round(result.wall_s, 3),
        "judge": judge_info,
        "segments": [
            {
                "index": r.index, "scene": r.scene_index, "state": r.state.value, "provider": r.provider,
                "attempts": r.attempts, "regenerations": r.regenerations, "cached": r.cached, "seed": r.seed,
                "cost_usd": r.cost_usd, "error": r.error, "scores": [attempt.model_dump(mode="json") for attempt in r.scores],
                **({"candidates": [c.model_dump(mode="json") for c in r.candidates]} if r.candidates else {}),
            }
            for r in manifest.segments
        ],
        "merge": asdict(result.merge),
        "sound": result.sound,
        "warnings": list(manifest.warnings),
    }
    run.write_bytes(REPORT, json.dumps(report, indent=2, ensure_ascii=False).encode())


def draw_sheet_ahead(run: RunFolder, manifest: RunManifest, storyboard: Storyboard, jobs: list[SegmentJob]) -> Future:
    """The contact sheet (PNG bytes), drawn on a thread of its own while the merge and the
    soundtrack finish on the render's: it reads only the accepted segments, and its header
    shows the run as it will read once done (status done; the cost is final once every
    segment is accepted). Two cores then share the render's last steps."""
    from ..review.contact_sheet import contact_sheet_png
    from ..review.summary import summarise

    done = manifest.model_copy(update={"status": RunStatus.DONE})
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contact-sheet")
    try:
        return pool.submit(lambda: contact_sheet_png(run, summarise(done, RunPlan(storyboard=storyboard, segments=jobs))))
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one job


def write_review(run: RunFolder, manifest: RunManifest, storyboard: Storyboard, jobs: list[SegmentJob],
                 sheet: Future | None = None) -> RunManifest:
    """contact_sheet.png and report.html for people to look at; never fails a render.
    `sheet`: from draw_sheet_ahead (None: drawn here)."""
    from ..review import write_review as write_review_files

    try:
        sheet_png = sheet.result() if sheet is not None else None
        write_review_files(run, manifest, RunPlan(storyboard=storyboard, segments=jobs), sheet_png=sheet_png)
    except Exception as exc:
        manifest = with_warnings(manifest, f"review files not written: {exc.__class__.__name__}: {exc}")
    return manifest


def save_health(store: RunStore, router: SegmentRouter) -> None:
    """Breaker and concurrency state per provider, for `longvid providers` to show."""
    try:
        for name, snapshot in router.health().items():
            snapshot["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            store.put_state(health_state(name), json.dumps(snapshot).encode())
    except Exception:  # health is advisory: never fail a render over it
        pass


def providers_used(manifest: RunManifest) -> dict[str, int]:
    used: dict[str, int] = {}
    for record in manifest.segments:
        if record.clip is not None:
            used[record.clip.provider] = used.get(record.clip.provider, 0) + 1
    return used


def copy_out(run: RunFolder, output: Path) -> None:
    from .store import atomic_copy

    atomic_copy(run.local_path(FINAL), output)
