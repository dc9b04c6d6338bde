"""The render pipeline: check inputs, plan, segment, generate on Ray, merge, finish.

Each step is a named method, so a caller (the CLI, a batch job, the Serve app) can run the
whole thing or stop after planning. Every state change is written to the run folder before
the next step starts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import InputError, RenderError
from ..manifest import RunManifest, SegmentRecord, transition
from ..media import MergeInput, MergeStats, merge_segments
from ..planning import OfflinePlanner, load_storyboard, segment_count, segment_storyboard
from ..planning.segmentation import DEFAULT_RULES
from ..providers import provider_capabilities
from ..providers.base import ProviderCapabilities
from ..spec import Clip, RenderSpec, SegmentJob, SegmentState, Storyboard
from .resources import DEFAULT_ESTIMATOR, EstimatorConfig, admit, estimate, fit_to_cluster, priority, total
from .store import LocalRunStore, RunFolder, atomic_copy, new_run_id
from .tasks import SegmentResult, SegmentRunner


class ProgressSink(Protocol):
    def planned(self, storyboard: Storyboard, jobs: list[SegmentJob], run: RunFolder) -> None: ...

    def segment(self, index: int, state: SegmentState, detail: str = "") -> None: ...

    def merging(self) -> None: ...


class NullProgress:
    def planned(self, storyboard, jobs, run):
        pass

    def segment(self, index, state, detail=""):
        pass

    def merging(self):
        pass


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
    cost_usd: float
    wall_s: float
    merge: MergeStats
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def to_dict(self) -> dict:
        data = asdict(self)
        data["duration_s"] = round(self.duration_s, 4)
        data["wall_s"] = round(self.wall_s, 3)
        return data


class RenderPipeline:
    def __init__(
        self,
        store: LocalRunStore,
        runner: SegmentRunner | None = None,
        planner: OfflinePlanner | None = None,
        progress: ProgressSink | None = None,
        estimator: EstimatorConfig = DEFAULT_ESTIMATOR,
    ):
        self.store = store
        self.runner = runner
        self.planner = planner or OfflinePlanner()
        self.progress = progress or NullProgress()
        self.estimator = estimator

    # -- steps ---------------------------------------------------------------------------

    def check_inputs(self, spec: RenderSpec) -> ProviderCapabilities:
        capabilities = provider_capabilities(spec.provider)  # unknown provider -> InputError
        if spec.aspect_ratio not in capabilities.aspect_ratios:
            allowed = ", ".join(a.value for a in capabilities.aspect_ratios)
            raise InputError(f"provider {spec.provider!r} cannot make {spec.aspect_ratio.value} video; use one of {allowed}")
        return capabilities

    def prepare_plan(self, spec: RenderSpec, capabilities: ProviderCapabilities) -> Storyboard:
        if spec.storyboard_file is not None:
            return load_storyboard(spec.storyboard_file, spec.prompt)
        max_scenes = segment_count(spec.duration_s, spec.fps, capabilities.durations, DEFAULT_RULES)
        return self.planner.plan(spec, max_scenes=max_scenes)

    def prepare_segments(self, spec: RenderSpec, storyboard: Storyboard, capabilities: ProviderCapabilities) -> list[SegmentJob]:
        try:
            jobs = segment_storyboard(storyboard, spec, capabilities.durations)
        except ValueError as exc:
            raise InputError(f"cannot segment this storyboard: {exc}") from None
        cost = sum(capabilities.price_per_second_usd * j.generate_duration_s for j in jobs)
        if spec.budget_usd is not None and cost > spec.budget_usd + 1e-9:
            raise InputError(
                f"estimated cost ${cost:.2f} exceeds the budget ${spec.budget_usd:.2f}; raise --budget or shorten --duration"
            )
        return jobs

    def generate(self, run: RunFolder, manifest: RunManifest, spec: RenderSpec, jobs: list[SegmentJob], capabilities: ProviderCapabilities) -> RunManifest:
        if self.runner is None:
            raise RuntimeError("this pipeline was built for planning only: give it a SegmentRunner")
        capacity = self.runner.capacity()
        requests = {}
        for job in jobs:
            request, notes = fit_to_cluster(estimate(job, capabilities, spec.quality, self.estimator), capacity)
            requests[job.index] = request
            for note in notes:
                manifest.warnings.append(f"segment {job.index}: {note}")
        # Free, idempotent renders may be retried by Ray; paid calls never are, so a crashed
        # worker cannot pay twice (resume polls the recorded task instead).
        retries = 2 if capabilities.price_per_second_usd == 0 else 0
        needed_seams = {j.conditioned_on for j in jobs if j.conditioned_on is not None}
        queue = sorted(jobs, key=priority)
        seams: dict[int, bytes | None] = {}
        in_flight: dict[object, SegmentJob] = {}
        failures: list[str] = []
        while queue or in_flight:
            ready = [j for j in queue if j.conditioned_on is None or j.conditioned_on in seams]
            used = total(requests[j.index] for j in in_flight.values())
            for index in admit([(j.index, requests[j.index]) for j in ready], used, capacity):
                job = jobs[index]
                queue.remove(job)
                conditioning = seams.get(job.conditioned_on) if job.conditioned_on is not None else None
                handle = self.runner.submit(spec.provider, job, requests[index], conditioning, index in needed_seams, retries)
                in_flight[handle] = job
                manifest = transition(manifest, index, SegmentState.SUBMITTED)
                run.write_model(RunFolder.MANIFEST, manifest)
                self.progress.segment(index, SegmentState.SUBMITTED, f"{requests[index].num_cpus:g} cpu")
            if not in_flight:
                break  # everything left waits on a failed segment
            for handle in self.runner.wait(list(in_flight)):
                job = in_flight.pop(handle)
                try:
                    result = self.runner.result(handle)
                except Exception as exc:  # recorded, reported, never swallowed
                    reason = f"{exc.__class__.__name__}: {exc}"
                    manifest = transition(manifest, job.index, SegmentState.FAILED, error=reason[:500])
                    run.write_model(RunFolder.MANIFEST, manifest)
                    failures.append(f"segment {job.index}: {reason}")
                    self.progress.segment(job.index, SegmentState.FAILED, reason)
                    continue
                manifest = self._record(run, manifest, job, result)
                seams[job.index] = result.seam_png
        if failures or queue:
            blocked = [j.index for j in queue]
            detail = "; ".join(failures) + (f"; not started (waiting on a failed segment): {blocked}" if blocked else "")
            raise RenderError(f"{len(failures)} segment(s) failed: {detail}")
        return manifest

    def _record(self, run: RunFolder, manifest: RunManifest, job: SegmentJob, result: SegmentResult) -> RunManifest:
        import hashlib

        relative = run.segment_path(job.index)
        run.write_bytes(relative, result.mp4)
        clip = Clip(
            segment_index=job.index,
            provider=result.provider,
            model=result.model,
            path=relative,
            frames=int(round(job.generate_duration_s * job.fps)),
            width=job.width,
            height=job.height,
            fps=job.fps,
            cost_usd=result.cost_usd,
            seconds_spent=round(result.seconds, 3),
            sha256=hashlib.sha256(result.mp4).hexdigest(),
        )
        manifest = transition(
            manifest, job.index, SegmentState.GENERATED,
            task_id=result.task_id, clip=clip, cost_usd=result.cost_usd, resources=result.resources,
        )
        run.write_model(RunFolder.MANIFEST, manifest)
        # No consistency judge is configured in this pipeline yet: generated is accepted.
        manifest = transition(manifest, job.index, SegmentState.ACCEPTED)
        run.write_model(RunFolder.MANIFEST, manifest)
        self.progress.segment(job.index, SegmentState.ACCEPTED, f"{result.seconds:.1f}s")
        return manifest

    def merge(self, run: RunFolder, manifest: RunManifest, spec: RenderSpec, jobs: list[SegmentJob]) -> MergeStats:
        self.progress.merging()
        inputs = [
            MergeInput(run.resolve(manifest.segments[j.index].clip.path), j.frames, j.head_frames, j.head_transition, j.tail_frames)
            for j in jobs
        ]
        width, height = spec.frame_size
        return merge_segments(inputs, run.resolve(RunFolder.FINAL), spec.fps, width, height)

    # -- the whole render -----------------------------------------------------------------

    def plan(self, spec: RenderSpec) -> tuple[Storyboard, list[SegmentJob]]:
        capabilities = self.check_inputs(spec)
        storyboard = self.prepare_plan(spec, capabilities)
        return storyboard, self.prepare_segments(spec, storyboard, capabilities)

    def render(
        self,
        spec: RenderSpec,
        output: Path | None = None,
        run_id: str | None = None,
        planned: tuple[Storyboard, list[SegmentJob]] | None = None,
    ) -> RenderResult:
        """The whole render. `planned` reuses a plan from `plan()` for the same spec."""
        started = time.perf_counter()
        capabilities = self.check_inputs(spec)
        storyboard, jobs = planned or (None, None)
        if storyboard is None:
            storyboard = self.prepare_plan(spec, capabilities)
            jobs = self.prepare_segments(spec, storyboard, capabilities)
        run = self.store.create(run_id or new_run_id(spec.model_dump_json()))
        run.write_model(RunFolder.PLAN, storyboard)
        manifest = RunManifest(
            run_id=run.run_id,
            spec=spec,
            status="rendering",
            segments=[SegmentRecord(index=j.index, scene_index=j.scene_index, provider=spec.provider) for j in jobs],
        )
        run.write_model(RunFolder.MANIFEST, manifest)
        self.progress.planned(storyboard, jobs, run)
        try:
            manifest = self.generate(run, manifest, spec, jobs, capabilities)
            manifest = manifest.model_copy(update={"status": "merging"})
            run.write_model(RunFolder.MANIFEST, manifest)
            stats = self.merge(run, manifest, spec, jobs)
            final = run.resolve(RunFolder.FINAL)
            if output is not None:
                atomic_copy(final, Path(output))
            manifest = manifest.model_copy(update={"status": "done", "output": str(output or final)})
            run.write_model(RunFolder.MANIFEST, manifest)
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, RenderError) else f"{exc.__class__.__name__}: {exc}"
            manifest = manifest.model_copy(update={"status": "failed", "error": reason[:1000]})
            run.write_model(RunFolder.MANIFEST, manifest)
            raise
        width, height = spec.frame_size
        return RenderResult(
            run_id=run.run_id,
            run_dir=str(run.path),
            output=str(output or final),
            frames=stats.frames,
            fps=spec.fps,
            width=width,
            height=height,
            segments=len(jobs),
            scenes=len(storyboard.scenes),
            cost_usd=manifest.cost_usd,
            wall_s=time.perf_counter() - started,
            merge=stats,
            warnings=list(manifest.warnings),
        )
