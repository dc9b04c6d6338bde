"""The render pipeline in named steps: check inputs, plan, generate, merge, finish.

A caller (the CLI, a batch job, the Serve app, `longvid.render`) runs the whole thing or
stops after planning; `longvid.wiring` builds it the same way for each of them. Every state
change is written to the run folder before the next step starts, which is what makes a
render resumable:

- the driver creates each provider task itself and records its id (SUBMITTED) before a Ray
  task waits for it, so a resumed render polls that task instead of paying for another;
- a segment's bytes are written (GENERATED, with their checksum) before it is accepted;
- every generated segment also goes into a content-addressed cache in the store, so an
  identical segment in any later render under the same store is reused, not regenerated.

The steps live in their own modules: `generate` (the loop that schedules, routes and
collects segments), `acceptance` (record, judge, keep-best, resume reconciliation),
`outputs` (merge, result, report.json, review files) and `failures` (what a failure means).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..manifest import RunManifest, RunPlan, RunStatus, SegmentRecord, stretched_s
from ..observability.render_events import RenderEvents
from ..planning import OfflinePlanner, load_storyboard, segment_count, segment_storyboard
from ..planning.segmentation import segment_fit
from ..planning.segmentation import DEFAULT_RULES
from ..providers import create_provider, provider_capabilities, provider_configured
from ..providers.base import ProviderCapabilities
from ..providers.estimate import CostEstimate, budget_verdict, estimate_cost
from ..providers.registry import PROVIDER_SETTINGS
from ..settings import Settings
from ..sound.finish import check_music
from ..sound.narration import NarrationRecord, Spoken
from ..spec import MAX_DURATION_S, RenderSpec, SegmentJob, Storyboard
from .acceptance import Acceptance
from .failures import Cancelled, FailureDecision, failure_decision, run_failure_reason
from .generate import GenerateLoop, GenerateOutcome
from .outputs import (RenderResult, build_result, copy_out, draw_sheet_ahead, merge_run, merge_target, save_health, write_report,
                      write_review)
from .protocols import JudgeVerdict, NullProgress, Planner, ProgressSink, SegmentJudge
from .resources import DEFAULT_ESTIMATOR, EstimatorConfig
from .router import SegmentRouter, candidate_providers, combined_capabilities
from .edit_run import apply_prepared, finish_version
from .runlock import RunLock, RunLocked
from .versions import edit_spec, pending_edit
from .layout import FINAL, MANIFEST, PLAN
from .merge_ahead import MergeAhead
from .narration_step import (add_soundtrack, apply_narration_choice, book_speech_costs, copy_subtitles_out,
                             soundtrack_mixes, speak_storyboard, write_narration)
from .store import LocalRunStore, RunFolder, RunStore, new_run_id, read_manifest, write_model
from .tasks import SegmentRunner

__all__ = [
    "Cancelled", "FailureDecision", "JudgeVerdict", "NullProgress", "Planner", "ProgressSink", "RenderPipeline",
    "RenderPlan", "RenderResult", "SegmentJudge", "failure_decision",
]


@dataclass(frozen=True)
class RenderPlan:
    """What a render will make, before anything is paid: the storyboard, the exact segment
    jobs, the cost bounds, and the planner's warnings (they go into the manifest)."""

    storyboard: Storyboard
    jobs: list[SegmentJob]
    capabilities: ProviderCapabilities
    estimate: CostEstimate
    warnings: list[str] = field(default_factory=list)
    narration: Spoken | None = None  # the synthesised narration and its timing; None when silent


class RenderPipeline:
    def __init__(
        self,
        store: RunStore | None = None,
        runner: SegmentRunner | None = None,
        planner: Planner | None = None,
        progress: ProgressSink | None = None,
        estimator: EstimatorConfig = DEFAULT_ESTIMATOR,
        judge: SegmentJudge | None = None,
        stop: threading.Event | None = None,
        stream_copy: bool = True,
        settings: Settings | None = None,
        allow_download: bool = False,
    ):
        self.store = store if store is not None else LocalRunStore()
        self.runner = runner
        self.planner = planner or OfflinePlanner()
        self.progress = progress or NullProgress()
        self.estimator = estimator
        self.judge = judge
        self.stop = stop or threading.Event()
        self.stream_copy = stream_copy  # False: re-encode every frame at merge
        self.max_tries = 2  # per segment and invocation, for failures worth retrying
        self.settings = settings if settings is not None else Settings()  # defaults: no provider keys
        self.allow_download = allow_download  # Piper voices: fetched only when the user allowed it

    # -- planning steps -------------------------------------------------------------------

    def check_inputs(self, spec: RenderSpec) -> ProviderCapabilities:
        """What the spec's provider(s) can do together; refuses unknown or unconfigured ones."""
        capabilities = combined_capabilities(spec.provider, self.settings)  # unknown provider -> InputError
        for name in candidate_providers(spec.provider, self.settings):
            if provider_capabilities(name, self.settings).resident_model:
                resident = create_provider(name, self.settings)  # a missing model: an error that says where it looked
                if hasattr(resident, "check_render"):  # segments no GPU node could hold: refused now
                    resident.check_render(*spec.frame_size, spec.fps)
            if not provider_configured(name, self.settings):  # refused now, not after Ray has started
                _needed, hint = PROVIDER_SETTINGS.get(name, ((), ""))
                raise InputError(f"provider {name!r} is not configured: {hint}")
            if provider_capabilities(name, self.settings).runs_remotely:
                # Building the client checks the rest of its configuration (base URL, Veo's
                # project credentials) before Ray starts; it is closed at once.
                client = create_provider(name, self.settings)
                close = getattr(client, "close", None)
                if close is not None:
                    close()
        if spec.music is not None:
            check_music(spec.music)  # a bad music file is refused before anything is paid
        if spec.aspect_ratio not in capabilities.aspect_ratios:
            allowed = ", ".join(a.value for a in capabilities.aspect_ratios)
            raise InputError(f"provider {spec.provider!r} cannot make {spec.aspect_ratio.value} video; use one of {allowed}")
        return capabilities

    def prepare_segments(self, spec: RenderSpec, storyboard: Storyboard, capabilities: ProviderCapabilities,
                         scene_frames: list[int] | None = None) -> tuple[list[SegmentJob], CostEstimate, list[str]]:
        """The segment jobs, their cost bounds, and the budget's warning if any; refuses a
        storyboard that cannot be cut or a budget even the cheapest candidate passes.
        `scene_frames`: each scene's exact length (the narration's timing)."""
        try:
            jobs = segment_storyboard(storyboard, spec, capabilities.durations, scene_frames=scene_frames)
        except ValueError as exc:
            raise InputError(f"cannot segment this storyboard: {exc}") from None
        prices = {n: provider_capabilities(n, self.settings).price_per_second_usd
                  for n in candidate_providers(spec.provider, self.settings)}
        estimate = estimate_cost((j.generate_duration_s for j in jobs), prices)
        refusal, warning = budget_verdict(estimate, spec.budget_usd)
        if refusal is not None:
            raise InputError(refusal)
        return jobs, estimate, [warning] if warning else []

    def plan(self, spec: RenderSpec, storyboard: Storyboard | None = None,
             max_duration_s: float = MAX_DURATION_S) -> RenderPlan:
        """The plan for `spec`: the given storyboard, the spec's storyboard file, or the planner's.
        `max_duration_s`: the longest video the caller allows, narration included (the API's is lower)."""
        capabilities = self.check_inputs(spec)
        warnings: list[str] = []
        if storyboard is None and spec.storyboard_file is not None:
            storyboard = load_storyboard(spec.storyboard_file, spec.prompt)
        elif storyboard is None:
            max_scenes = segment_count(spec.duration_s, spec.fps, capabilities.durations, DEFAULT_RULES)
            report = self.planner.plan_with_report(spec, max_scenes=max_scenes)
            storyboard, warnings = report.storyboard, list(report.warnings)
        storyboard = apply_narration_choice(spec, storyboard)
        fit = segment_fit(capabilities.durations, spec.fps, spec.duration_s)
        spoken, speech_warnings = speak_storyboard(
            spec, storyboard, self.settings, self.store, self.allow_download, max_duration_s,
            check_scene_frames=lambda frames: self.prepare_segments(spec, storyboard, capabilities, frames), fit=fit)
        jobs, estimate, budget_warnings = self.prepare_segments(spec, storyboard, capabilities,
                                                                spoken.timing.scene_frames if spoken else None)
        return RenderPlan(storyboard, jobs, capabilities, estimate, [*warnings, *speech_warnings, *budget_warnings], spoken)

    # -- whole renders --------------------------------------------------------------------

    def render(self, spec: RenderSpec, output: Path | None = None, run_id: str | None = None,
               planned: RenderPlan | None = None) -> RenderResult:
        """A new render, or the continuation of run `run_id` if it exists with this spec.
        `planned` reuses a plan from `plan()` for the same spec."""
        started = time.perf_counter()
        if run_id is not None and self.store.has_run(run_id):
            existing = read_manifest(self.store.open(run_id))
            if existing.spec != spec:
                raise InputError(f"run {run_id} exists with a different request; resume it with `longvid resume {run_id}` or pick another --run-id")
            return self.resume(run_id, output)
        capabilities = self.check_inputs(spec)
        planned = planned or self.plan(spec)
        run = self.store.create(run_id or new_run_id(spec.model_dump_json()))
        with RunLock(run, self.settings.store.run_lock_ttl_s, on_lost=self.stop.set) as lease:  # before the manifest exists, so no resume can start on it meanwhile
            narration = planned.narration
            run_plan = RunPlan(storyboard=planned.storyboard, segments=planned.jobs,
                               narration=narration.record if narration else None)
            write_model(run, PLAN, run_plan)
            manifest = RunManifest(
                stretched_s=stretched_s(run_plan, spec),
                run_id=run.run_id,
                spec=spec,
                status=RunStatus.RENDERING,
                warnings=list(planned.warnings),
                output=str(output) if output is not None else None,  # so a resumed render writes there too
                segments=[SegmentRecord(index=j.index, scene_index=j.scene_index, provider=spec.provider) for j in planned.jobs],
            )
            if narration is not None:
                manifest = book_speech_costs(manifest, narration.costs)
            write_model(run, MANIFEST, manifest)
            return self._execute(run, manifest, planned.storyboard, planned.jobs, capabilities, output, started, lease,
                                 narration.record if narration else None, narration.clips if narration else {})

    def resume(self, run_id: str, output: Path | None = None) -> RenderResult:
        """Continue an interrupted (or finished) run from its folder."""
        started = time.perf_counter()
        run = self.store.open(run_id)
        with RunLock(run, self.settings.store.run_lock_ttl_s, on_lost=self.stop.set) as lease:  # one driver per run: a second one would pay for the same segments again
            edit = pending_edit(run)  # an interrupted edit: finish applying it, render it, then file it as its version
            if edit is not None:
                apply_prepared(run, edit)
            manifest = read_manifest(run)
            plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
            capabilities = self.check_inputs(manifest.spec)
            acceptance = Acceptance(run, self.store, self.judge, self.progress)
            manifest = acceptance.reconcile(manifest.model_copy(update={"status": RunStatus.RENDERING, "error": None}), plan.segments,
                                            lambda name: provider_capabilities(name, self.settings).idempotent_submit)
            if output is None and manifest.output and not manifest.output.startswith(run.location()):
                output = Path(manifest.output)
            result = self._execute(run, manifest, plan.storyboard, plan.segments, capabilities, output, started, lease,
                                   plan.narration, {})
            if edit is not None:
                finish_version(run, edit)
            return result

    # -- the render steps -----------------------------------------------------------------

    def generate(self, run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob], capabilities: ProviderCapabilities,
                 lease: RunLock | None = None, ahead: MergeAhead | None = None) -> GenerateOutcome:
        """Generate every segment not yet accepted (each accepted one goes on to `ahead`'s merge)."""
        if self.runner is None:
            raise RuntimeError("this pipeline was built for planning only: give it a SegmentRunner")
        router = SegmentRouter(manifest.spec, run.run_id, self.settings, self.runner.gates)
        router.release_all()  # slots a crashed earlier invocation of this run still holds
        try:
            loop = GenerateLoop(run, manifest, jobs, capabilities, store=self.store, runner=self.runner, router=router,
                                acceptance=Acceptance(run, self.store, self.judge, self.progress), progress=self.progress,
                                stop=self.stop, estimator=self.estimator, rephrase=self.planner.rephrase,
                                max_tries=self.max_tries, lease=lease, settings=self.settings,
                                on_accepted=ahead.accepted if ahead is not None else None, spec=edit_spec(run, manifest))
            return loop.run()
        finally:
            router.release_all()  # whatever ended the loop (an error included), this run holds no slot now
            save_health(self.store, router)
            router.close()

    def _execute(self, run: RunFolder, manifest: RunManifest, storyboard: Storyboard, jobs: list[SegmentJob],
                 capabilities: ProviderCapabilities, output: Path | None, started: float,
                 lease: RunLock | None = None, narration: NarrationRecord | None = None,
                 clips: dict[str, bytes] | None = None) -> RenderResult:
        self.progress.planned(storyboard, jobs, run)
        events = RenderEvents(run.run_id, manifest.spec.provider)  # metrics, and the run id on this thread's log lines
        ahead = sheet = target = None
        try:
            if narration is not None:  # speech/, narration.wav, subtitles: before any segment is paid for
                manifest = write_narration(run, manifest, narration, clips or {}, self.store, self.settings)
                write_model(run, MANIFEST, manifest)
            target = merge_target(run, soundtrack_mixes(manifest.spec, narration))  # see MergeTarget
            ahead = MergeAhead(run, manifest.spec, jobs, self.stream_copy, target.picture, target.audio_pcm)  # merges while the segments generate
            ahead.feed_accepted(manifest)
            outcome = self.generate(run, manifest, jobs, capabilities, lease, ahead)

            def still_owner() -> None:  # a driver whose lease lapsed stops before it writes the run's video
                if lease is not None and lease.lost:
                    raise RunLocked(f"run {run.run_id} was taken over by another process; this one stopped")

            still_owner()
            manifest = outcome.manifest.model_copy(update={"status": RunStatus.MERGING})
            write_model(run, MANIFEST, manifest)
            sheet = draw_sheet_ahead(run, manifest, storyboard, jobs)  # on a thread, beside the merge and the soundtrack
            stats = merge_run(run, manifest, jobs, self.stream_copy, self.progress, ahead, target)
            sound = add_soundtrack(run, manifest.spec, narration, None if target.is_final else target, stats.audio, still_owner)
            if output is not None:
                copy_out(run, Path(output))
                if manifest.spec.subtitles:
                    copy_subtitles_out(run, Path(output))
            manifest = manifest.model_copy(update={"status": RunStatus.DONE, "output": str(output) if output else run.location(FINAL)})
            result = build_result(run, manifest, storyboard, jobs, stats, outcome.generated, outcome.reused,
                                  time.perf_counter() - started, sound)
            # The reports are written before the manifest says done, so whoever sees "done"
            # (the API, the studio) finds them.
            write_report(run, manifest, result, self.judge)
            manifest = write_review(run, manifest, storyboard, jobs, sheet)
            write_model(run, MANIFEST, manifest)
            events.finished(manifest.cost_usd)
        except (Cancelled, RunLocked) as exc:  # RunLocked: another driver owns the run now; write nothing
            events.failed("cancelled" if isinstance(exc, Cancelled) else "taken_over")
            raise
        except BaseException as exc:
            if lease is not None and lease.lost:  # the run is another driver's now: its manifest is not ours to mark
                events.failed("taken_over")
                raise
            # The folder holds the latest manifest (every transition is written): mark that
            # one, never an older copy that would forget finished segments.
            try:
                latest = read_manifest(run)
            except Exception:  # never hide the original error behind this one
                latest = manifest
            if isinstance(exc, KeyboardInterrupt):
                status, reason = RunStatus.CANCELLED, "interrupted"
            else:
                status, reason = RunStatus.FAILED, run_failure_reason(exc)
            write_model(run, MANIFEST, latest.model_copy(update={"status": status, "error": reason[:1000]}))
            events.failed(status.value, reason)
            raise
        finally:
            if ahead is not None:
                ahead.abandon()  # its scratch files, unless it finished
            if sheet is not None:
                wait_futures([sheet])  # it reads the run's files: done before the scratch copies go
            if target is not None:
                target.remove()  # the picture and audio a soundtrack did not consume (a failure)
            run.discard_scratch()  # S3 runs: the local copies are done with
            events.close()
        return result
