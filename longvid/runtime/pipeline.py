"""The render pipeline: check inputs, plan, segment, generate on Ray, merge, finish.

Each step is a named method, so a caller (the CLI, a batch job, the Serve app) can run the
whole thing or stop after planning. Every state change is written to the run folder before
the next step starts, which is what makes a render resumable:

- the driver creates each provider task itself and records its id (SUBMITTED) before a Ray
  task waits for it, so a resumed render polls that task instead of paying for another;
- a segment's bytes are written (GENERATED, with their checksum) before it is accepted;
- every generated segment also goes into a content-addressed cache in the store, so an
  identical segment in any later render under the same store is reused, not regenerated.
"""

from __future__ import annotations

import enum
import functools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import InputError, LongvidError, RenderError
from ..manifest import RunManifest, RunPlan, SegmentRecord, reset, transition
from ..media import MergeInput, MergeStats, merge_segments
from ..planning import OfflinePlanner, load_storyboard, segment_count, segment_storyboard
from ..planning.segmentation import DEFAULT_RULES
from ..providers import create_provider, provider_capabilities
from ..providers.base import ProviderCapabilities
from ..providers.ledger import BudgetExceeded, CostLedger, EntryState, LedgerEntry
from ..providers._http import is_safety_refusal
from ..providers.routing import counts_against_provider
from ..settings import Settings
from ..spec import Clip, RenderSpec, SegmentJob, SegmentState, Storyboard
from .resources import DEFAULT_ESTIMATOR, EstimatorConfig, admit, estimate, fit_to_cluster, priority, total
from .resume import Action, attempt_seed, resume_plan, segment_key
from .router import WAIT, SegmentRouter, candidate_providers, combined_capabilities
from .runlock import RunLock, RunLocked
from .store import FINAL, MANIFEST, PLAN, REPORT, LocalRunStore, RunFolder, RunStore, atomic_copy, clip_verifies, new_run_id, read_manifest, segment_path, write_model
from .tasks import SegmentResult, SegmentRunner, seam_frame_png


class FailureDecision(enum.Enum):
    COLLECT_AGAIN = "collect again"  # polling or downloading failed; the task itself is fine
    NEW_TASK = "new task"  # the provider failed the task for a reason that may pass
    LEAVE_SUBMITTED = "leave submitted"  # still running or unknown: resume polls it
    GIVE_UP = "give up"  # the input must change (SAFETY), or a bug: fail with the reason


def failure_decision(exc: BaseException, tries: int, max_tries: int, paid_task: bool = False) -> FailureDecision:
    """What to do after collecting a segment failed. Only provider errors are retried, and
    never one whose advice is to change the input (SAFETY is not retried verbatim). A paid
    task that failed on our side (a crashed worker, no provider verdict) stays submitted, so
    resume polls it instead of paying for another."""
    from ..providers._http import RetryAdvice, retry_advice

    code = getattr(exc, "failure_code", None)
    if code is None:
        return FailureDecision.LEAVE_SUBMITTED if paid_task else FailureDecision.GIVE_UP
    advice = retry_advice(code)
    if advice is RetryAdvice.CHECK:
        return FailureDecision.LEAVE_SUBMITTED
    if advice is not RetryAdvice.SAME:
        return FailureDecision.GIVE_UP
    reachable_only = getattr(exc, "retryable", False)  # polling or downloading failed, not the task
    if tries >= max_tries:
        # A paid task we merely could not reach may still finish: resume polls it, never pays again.
        return FailureDecision.LEAVE_SUBMITTED if reachable_only and paid_task else FailureDecision.GIVE_UP
    return FailureDecision.COLLECT_AGAIN if reachable_only else FailureDecision.NEW_TASK


class Cancelled(LongvidError):
    """The user stopped the render; the run folder is resumable."""

    exit_code = 130


class Planner(Protocol):
    """Storyboard from a spec: the offline planner, Gemini, or anything alike. `warnings`
    (optional) says what went wrong on the way, e.g. a fallback; it lands in the manifest."""

    name: str

    def plan(self, spec: RenderSpec, max_scenes: int) -> Storyboard: ...


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
class JudgeVerdict:
    passed: bool
    scores: dict[str, Any]
    reason: str = ""
    quality: float = 0.0  # higher is better; picks the attempt to keep when none passes


class SegmentJudge(Protocol):
    """Scores a generated segment; a failing one is regenerated with a new seed."""

    max_attempts: int

    def judge(self, job: SegmentJob, segment: Path, previous: tuple[SegmentJob, Path] | None) -> JudgeVerdict: ...


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
        store: RunStore | None = None,
        runner: SegmentRunner | None = None,
        planner: Planner | None = None,
        progress: ProgressSink | None = None,
        estimator: EstimatorConfig = DEFAULT_ESTIMATOR,
        judge: SegmentJudge | None = None,
        stop: threading.Event | None = None,
        stream_copy: bool = True,
        settings: Settings | None = None,
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

    # -- steps ---------------------------------------------------------------------------

    def check_inputs(self, spec: RenderSpec) -> ProviderCapabilities:
        """What the spec's provider(s) can do together; refuses unknown or unconfigured ones."""
        capabilities = combined_capabilities(spec.provider, self.settings)  # unknown provider -> InputError
        for name in candidate_providers(spec.provider, self.settings):
            if provider_capabilities(name, self.settings).runs_remotely:  # a missing key is refused now, not after Ray has started
                close = getattr(create_provider(name, self.settings), "close", None)
                if close is not None:
                    close()
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
        cheapest = min(provider_capabilities(n, self.settings).price_per_second_usd for n in candidate_providers(spec.provider, self.settings))
        cost = sum(cheapest * j.generate_duration_s for j in jobs)
        if spec.budget_usd is not None and cost > spec.budget_usd + 1e-9:
            raise InputError(
                f"estimated cost ${cost:.2f} exceeds the budget ${spec.budget_usd:.2f}; raise --budget or shorten --duration"
            )
        return jobs

    def prepare_resume(self, run: RunFolder, manifest: RunManifest, capabilities: ProviderCapabilities,
                       jobs: list[SegmentJob]) -> RunManifest:
        """Bring an interrupted run's manifest to a state the generate step can continue:
        verified segments are kept, the rest reset or left to be polled."""

        file_ok = functools.partial(clip_verifies, run)
        idempotent = lambda name: provider_capabilities(name, self.settings).idempotent_submit  # noqa: E731
        for index, (action, reason) in resume_plan(manifest, file_ok, idempotent).items():
            record = manifest.segments[index]
            state = record.state
            if action is Action.ACCEPT and self.judge is not None and state is SegmentState.GENERATED:
                continue  # the crash came before the judge saw it: the generate step judges it
            rejected = (action is Action.ACCEPT and self.judge is not None and state is SegmentState.JUDGED
                        and bool(record.scores) and not record.scores[-1].get("passed", True))
            if rejected and record.regenerations + 1 < self.judge.max_attempts:
                # The judge had sent it back; the crash came before it was reset: do that now.
                manifest = reset(manifest, index, "the judge rejected it before the render stopped")
                manifest = _update_record(manifest, index, regenerations=record.regenerations + 1)
            elif rejected:
                # Rejected on its last allowed attempt before the render stopped: what the render
                # would have done next, keep the best attempt and say so.
                manifest = self._keep_best_attempt(run, manifest, jobs[index], list(record.scores))
                manifest = transition(manifest, index, SegmentState.ACCEPTED)
            elif action is Action.ACCEPT:
                manifest = transition(manifest, index, SegmentState.ACCEPTED)
            elif action is Action.GENERATE and state is SegmentState.FAILED:
                manifest = transition(manifest, index, SegmentState.PENDING, error=None)
            elif action is Action.GENERATE and state is not SegmentState.PENDING:
                manifest = reset(manifest, index, reason)
        write_model(run, MANIFEST, manifest)
        return manifest

    def generate(self, run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob], capabilities: ProviderCapabilities,
                 lease: RunLock | None = None) -> tuple[RunManifest, int, int]:
        """Generate every segment not yet accepted. Returns (manifest, generated, reused)."""
        if self.runner is None:
            raise RuntimeError("this pipeline was built for planning only: give it a SegmentRunner")
        router = SegmentRouter(manifest.spec, run.run_id, self.settings, getattr(self.runner, "gates", None))
        router.release_all()  # slots a crashed earlier invocation of this run still holds
        try:
            return _GenerateLoop(self, run, manifest, jobs, capabilities, router, lease).run()
        finally:
            router.release_all()  # whatever ended the loop (an error included), this run holds no slot now
            self._save_health(router)
            router.close()

    def _save_health(self, router: SegmentRouter) -> None:
        """Breaker and concurrency state per provider, for `longvid providers` to show."""
        try:
            for name, snapshot in router.health().items():
                snapshot["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.store.put_state(f"health/{name}.json", json.dumps(snapshot).encode())
        except Exception:  # health is advisory: never fail a render over it
            pass

    def _attempt(self, manifest: RunManifest, job: SegmentJob) -> SegmentJob:
        record = manifest.segments[job.index]
        changes: dict[str, Any] = {}
        if record.regenerations:
            changes["seed"] = attempt_seed(job.seed, record.regenerations)
        if record.rephrased_prompt:
            changes["prompt"] = record.rephrased_prompt
        return job.model_copy(update=changes) if changes else job

    def _conditioning(self, run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob], job: SegmentJob, seams: dict[int, bytes]) -> bytes | None:
        previous = job.conditioned_on
        if previous is None:
            return None
        if previous not in seams:  # accepted in an earlier invocation: read it back
            clip = manifest.segments[previous].clip
            seams[previous] = seam_frame_png(run.local_path(clip.path).read_bytes(), jobs[previous].frames)
        return seams[previous]

    def _finish(self, run, manifest, jobs, job, result: SegmentResult, key: str, cached: bool,
                recorded: bool = False) -> tuple[RunManifest, bool]:
        """Record a generated segment, judge it, and accept it or send it back. `recorded`:
        its file and GENERATED state were written by an earlier invocation; judge it only."""
        index = job.index
        relative = segment_path(index)
        record = manifest.segments[index]
        if recorded:
            clip = record.clip
        else:
            run.write_bytes(relative, result.mp4)
            clip = Clip(
                segment_index=index,
                provider=result.provider,
                model=result.model,
                path=relative,
                frames=int(round(job.generate_duration_s * job.fps)),
                width=job.width,
                height=job.height,
                fps=job.fps,
                cost_usd=result.cost_usd,
                seconds_spent=round(result.seconds, 3),
                sha256=_sha256(result.mp4),
            )
            manifest = transition(
                manifest, index, SegmentState.GENERATED,
                task_id=result.task_id, clip=clip, cost_usd=record.cost_usd + result.cost_usd, provider=result.provider,
                resources=result.resources, cached=cached, seed=job.seed, cache_key=key,
            )
            write_model(run, MANIFEST, manifest)
            if not cached:
                self.store.cache_put(key, result.mp4)
        if self.judge is not None:
            previous = None
            if index > 0 and jobs[index - 1].scene_index == job.scene_index and manifest.segments[index - 1].clip is not None:
                previous = (jobs[index - 1], run.local_path(manifest.segments[index - 1].clip.path))
            verdict = self.judge.judge(job, run.local_path(relative), previous)
            regenerations = manifest.segments[index].regenerations
            attempt_file = f"segments/seg_{index:04d}.attempt{regenerations}.mp4"
            entry = {"seed": job.seed, "passed": verdict.passed, "quality": verdict.quality, "file": attempt_file,
                     "sha256": clip.sha256, **verdict.scores}
            scores = [*manifest.segments[index].scores, entry]
            manifest = transition(manifest, index, SegmentState.JUDGED, scores=scores)
            write_model(run, MANIFEST, manifest)
            if not verdict.passed and regenerations + 1 < self.judge.max_attempts:
                run.write_bytes(attempt_file, result.mp4)  # kept in case no later attempt does better
                manifest = reset(manifest, index, f"judge: {verdict.reason}")
                manifest = _update_record(manifest, index, regenerations=regenerations + 1, scores=scores, cost_usd=record.cost_usd + result.cost_usd)
                write_model(run, MANIFEST, manifest)
                self.progress.segment(index, SegmentState.PENDING, f"regenerating: {verdict.reason}")
                return manifest, False
            if not verdict.passed:
                manifest = self._keep_best_attempt(run, manifest, job, scores, verdict.reason)
        manifest = transition(manifest, index, SegmentState.ACCEPTED)
        write_model(run, MANIFEST, manifest)
        self.progress.segment(index, SegmentState.ACCEPTED, "cached" if cached else f"{result.seconds:.1f}s")
        return manifest, True

    def _keep_best_attempt(self, run: RunFolder, manifest: RunManifest, job: SegmentJob, scores: list[dict],
                           reason: str = "") -> RunManifest:
        """No attempt passed: put the best-scoring one in the segment's place, with a warning."""
        best = max(scores, key=lambda entry: entry.get("quality", 0.0))
        index = job.index
        if best is not scores[-1] and run.exists(best["file"]):
            data = run.read_bytes(best["file"])
            run.write_bytes(segment_path(index), data)
            clip = manifest.segments[index].clip.model_copy(update={"sha256": best["sha256"]})
            manifest = _update_record(manifest, index, clip=clip, seed=best["seed"])
            write_model(run, MANIFEST, manifest)
        remember = getattr(self.judge, "remember_accepted", None)
        if remember is not None:
            remember(job.model_copy(update={"seed": best["seed"]}), run.local_path(segment_path(index)))
        manifest.warnings.append(f"segment {index}: below the consistency thresholds after {len(scores)} attempts; "
                                 f"kept the best one (seed {manifest.segments[index].seed})" + (f": {reason}" if reason else ""))
        return manifest

    def _cancel(self, run: RunFolder, manifest: RunManifest, router: SegmentRouter, in_flight: dict) -> RunManifest:
        """Stop what is in flight. A provider task that was cancelled is marked failed (resume
        makes a new one); one that could not be cancelled stays submitted (resume polls it)."""
        for handle, (job, _key, name) in list(in_flight.items()):
            self.runner.cancel(handle)
            router.release(name, job.index)
            record = manifest.segments[job.index]
            if not record.task_id or router.capabilities(name).idempotent_submit:
                continue
            cancel = getattr(router.client(name), "cancel", None)
            if cancel is None:
                continue
            try:
                cancel(record.task_id)
                manifest = transition(manifest, job.index, SegmentState.FAILED, error="cancelled by the user")
            except Exception:  # the task keeps running; resume will poll it
                pass
        manifest = manifest.model_copy(update={"status": "cancelled", "error": "cancelled by the user"})
        write_model(run, MANIFEST, manifest)
        return manifest

    def merge(self, run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob]) -> MergeStats:
        self.progress.merging()
        spec = manifest.spec
        inputs = [
            MergeInput(run.local_path(manifest.segments[j.index].clip.path), j.frames, j.head_frames, j.head_transition, j.tail_frames)
            for j in jobs
        ]
        width, height = spec.frame_size
        final = run.scratch_path(FINAL)
        stats = merge_segments(inputs, final, spec.fps, width, height, stream_copy=self.stream_copy)
        run.publish(FINAL, final)
        return stats

    # -- whole renders --------------------------------------------------------------------

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
        """A new render, or the continuation of run `run_id` if it exists with this spec.
        `planned` reuses a plan from `plan()` for the same spec."""
        started = time.perf_counter()
        if run_id is not None and self.store.has_run(run_id):
            existing = read_manifest(self.store.open(run_id))
            if existing.spec != spec:
                raise InputError(f"run {run_id} exists with a different request; resume it with `longvid resume {run_id}` or pick another --run-id")
            return self.resume(run_id, output)
        capabilities = self.check_inputs(spec)
        storyboard, jobs = planned or self.plan(spec)
        run = self.store.create(run_id or new_run_id(spec.model_dump_json()))
        with RunLock(run, self.settings.store.run_lock_ttl_s, on_lost=self.stop.set) as lease:  # before the manifest exists, so no resume can start on it meanwhile
            write_model(run, PLAN, RunPlan(storyboard=storyboard, segments=jobs))
            manifest = RunManifest(
                run_id=run.run_id,
                spec=spec,
                status="rendering",
                warnings=list(getattr(self.planner, "warnings", []) or []),
                output=str(output) if output is not None else None,  # so a resumed render writes there too
                segments=[SegmentRecord(index=j.index, scene_index=j.scene_index, provider=spec.provider) for j in jobs],
            )
            write_model(run, MANIFEST, manifest)
            return self._execute(run, manifest, storyboard, jobs, capabilities, output, started, lease)

    def resume(self, run_id: str, output: Path | None = None) -> RenderResult:
        """Continue an interrupted (or finished) run from its folder."""
        started = time.perf_counter()
        run = self.store.open(run_id)
        with RunLock(run, self.settings.store.run_lock_ttl_s, on_lost=self.stop.set) as lease:  # one driver per run: a second one would pay for the same segments again
            manifest = read_manifest(run)
            plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
            capabilities = self.check_inputs(manifest.spec)
            manifest = self.prepare_resume(run, manifest.model_copy(update={"status": "rendering", "error": None}), capabilities,
                                           plan.segments)
            if output is None and manifest.output and not manifest.output.startswith(run.location()):
                output = Path(manifest.output)
            return self._execute(run, manifest, plan.storyboard, plan.segments, capabilities, output, started, lease)

    def _execute(self, run, manifest, storyboard, jobs, capabilities, output, started, lease: RunLock | None = None) -> RenderResult:
        self.progress.planned(storyboard, jobs, run)
        try:
            manifest, generated, reused = self.generate(run, manifest, jobs, capabilities, lease)
            manifest = manifest.model_copy(update={"status": "merging"})
            write_model(run, MANIFEST, manifest)
            stats = self.merge(run, manifest, jobs)
            if output is not None:
                atomic_copy(run.local_path(FINAL), Path(output))
            manifest = manifest.model_copy(update={"status": "done", "output": str(output) if output else run.location(FINAL)})
            result = self._result(run, manifest, storyboard, jobs, stats, generated, reused, started)
            # The reports are written before the manifest says done, so whoever sees "done"
            # (the API, the studio) finds them.
            run.write_bytes(REPORT, json.dumps(self._report(manifest, result), indent=2, ensure_ascii=False).encode())
            manifest = self._write_review(run, manifest, storyboard, jobs)
            write_model(run, MANIFEST, manifest)
        except (Cancelled, RunLocked):  # RunLocked: another driver owns the run now; write nothing
            raise
        except BaseException as exc:
            # The folder holds the latest manifest (every transition is written): mark that
            # one, never an older copy that would forget finished segments.
            try:
                latest = read_manifest(run)
            except Exception:  # never hide the original error behind this one
                latest = manifest
            if isinstance(exc, KeyboardInterrupt):
                status, reason = "cancelled", "interrupted"
            else:
                status, reason = "failed", str(exc) if isinstance(exc, LongvidError) else f"{exc.__class__.__name__}: {exc}"
            write_model(run, MANIFEST, latest.model_copy(update={"status": status, "error": reason[:1000]}))
            raise
        finally:
            run.discard_scratch()  # S3 runs: the local copies are done with
        return result

    def _result(self, run, manifest, storyboard, jobs, stats, generated, reused, started) -> RenderResult:
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
            wall_s=time.perf_counter() - started,
            merge=stats,
            warnings=list(manifest.warnings),
            cost_by_provider=manifest.cost_breakdown()["by_provider"],
            providers_used=_providers_used(manifest),
        )

    def _write_review(self, run: RunFolder, manifest: RunManifest, storyboard: Storyboard, jobs: list[SegmentJob]) -> RunManifest:
        """contact_sheet.png and report.html for people to look at; never fails a render."""
        from ..review import write_review

        try:
            write_review(run, manifest, RunPlan(storyboard=storyboard, segments=jobs))
        except Exception as exc:
            manifest = manifest.model_copy(update={"warnings": [*manifest.warnings, f"review files not written: {exc.__class__.__name__}: {exc}"]})
        return manifest

    def _report(self, manifest: RunManifest, result: RenderResult) -> dict:
        """report.json: what a person or a dashboard wants from a finished run."""
        judge = None
        if self.judge is not None:
            judge = {"backend": getattr(self.judge, "backend", None), "notes": getattr(self.judge, "notes", "")}
        return {
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
            "judge": judge,
            "segments": [
                {
                    "index": r.index, "scene": r.scene_index, "state": r.state.value, "provider": r.provider,
                    "attempts": r.attempts, "regenerations": r.regenerations, "cached": r.cached, "seed": r.seed,
                    "cost_usd": r.cost_usd, "scores": r.scores,
                }
                for r in manifest.segments
            ],
            "merge": asdict(result.merge),
            "warnings": list(manifest.warnings),
        }


# Failures of a create call that prove no task exists at the provider.
_NOTHING_CREATED_CODES = frozenset({"HTTP.RATE_LIMITED", "HTTP.UNAVAILABLE", "HTTP.REJECTED", "HTTP.AUTH", "HTTP.UNREACHABLE"})


def _fitted_png(path: Path, size: tuple[int, int]) -> bytes | None:
    """`path` cropped to the aspect of `size` and scaled to it, as PNG; None if unreadable."""
    import io

    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            fitted = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
    except OSError:
        return None
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()


def _providers_used(manifest: RunManifest) -> dict[str, int]:
    used: dict[str, int] = {}
    for record in manifest.segments:
        if record.clip is not None:
            used[record.clip.provider] = used.get(record.clip.provider, 0) + 1
    return used


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _nothing_created(exc: BaseException) -> bool:
    return isinstance(exc, (BudgetExceeded, InputError)) or getattr(exc, "failure_code", None) in _NOTHING_CREATED_CODES


def _with_ledger(manifest: RunManifest, ledger: CostLedger) -> RunManifest:
    return manifest.model_copy(update={"ledger": [asdict(e) for e in ledger.entries]})


def _settle(ledger: CostLedger, provider: str, task_id: str | None, cost_usd: float | None, note: str = "") -> None:
    """Charge the reserved entry of `provider`'s task `task_id` (resumed tasks were reserved
    by an earlier run); task ids are only unique per provider."""
    for entry in ledger.entries:
        if entry.provider == provider and entry.task_id == task_id and entry.state is EntryState.RESERVED:
            ledger.charge(entry.key, cost_usd, note)
            return


def _update_record(manifest: RunManifest, index: int, **changes) -> RunManifest:
    segments = list(manifest.segments)
    segments[index] = segments[index].model_copy(update=changes)
    return manifest.model_copy(update={"segments": segments})


class _Start(enum.Enum):
    """What trying to start one segment did."""

    STARTED = "started"  # a task is in flight (a Ray task waits for it)
    PROGRESSED = "progressed"  # its state changed without a task in flight (cached, failed, failing over)
    WAITING = "waiting"  # its provider is full or its breaker open: try again shortly


class _GenerateLoop:
    """One invocation of the generate step: schedule ready segments within the cluster's
    capacity, route each to a provider, record every state change, and decide what each
    failure means (poll again, new task, another provider, a reworded prompt, or fail)."""

    def __init__(self, pipeline: RenderPipeline, run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob],
                 capabilities: ProviderCapabilities, router: SegmentRouter, lease: RunLock | None = None):
        self.p, self.run_folder, self.manifest, self.jobs, self.router = pipeline, run, manifest, jobs, router
        self.lease = lease
        self.spec = manifest.spec
        self.capacity = pipeline.runner.capacity()
        self.requests = {}
        for job in jobs:
            request, notes = fit_to_cluster(estimate(job, capabilities, self.spec.quality, pipeline.estimator), self.capacity)
            self.requests[job.index] = request
            manifest.warnings.extend(f"segment {job.index}: {n}" for n in notes if f"segment {job.index}: {n}" not in manifest.warnings)
        self.needed_seams = {j.conditioned_on for j in jobs if j.conditioned_on is not None}
        self.ledger = CostLedger(self.spec.budget_usd, [LedgerEntry.from_dict(e) for e in manifest.ledger])
        self.done = {r.index for r in manifest.segments if r.state is SegmentState.ACCEPTED}
        self.reused = len(self.done)
        self.generated = 0
        self.queue = sorted((j for j in jobs if j.index not in self.done), key=priority)
        self.seams: dict[int, bytes] = {}
        self.in_flight: dict[Any, tuple[SegmentJob, str, str]] = {}  # handle -> (attempt, key, provider)
        self.failures: list[str] = []
        self.tries: dict[tuple[int, str], int] = {}  # failed tries per (segment, provider) in this invocation
        self.rephrase = getattr(pipeline.planner, "rephrase", None)
        # The user's first reference image starts each scene at a generative provider (its
        # first frame), so the subject looks like the reference. Not for the procedural preview,
        # which cannot animate a photograph.
        remote = all(router.capabilities(n).runs_remotely and router.capabilities(n).image_conditioning for n in router.names)
        self.reference = self.spec.reference_images[0] if remote and self.spec.reference_images else None
        self._reference_png: dict[tuple[int, int], bytes | None] = {}

    # -- bookkeeping ----------------------------------------------------------------------

    def _conditioning(self, attempt: SegmentJob) -> bytes | None:
        """The image a segment starts from: the previous segment's seam frame when chained,
        the user's reference image for a scene's first segment at a generative provider."""
        seam = self.p._conditioning(self.run_folder, self.manifest, self.jobs, attempt, self.seams)
        if seam is not None or self.reference is None or attempt.segment_in_scene != 0:
            return seam
        size = (attempt.width, attempt.height)
        if size not in self._reference_png:
            self._reference_png[size] = _fitted_png(self.reference, size)
            if self._reference_png[size] is None:
                self.manifest.warnings.append(f"reference image {self.reference.name} could not be read; scenes start from text only")
        return self._reference_png[size]

    def _write(self, manifest: RunManifest | None = None) -> None:
        if manifest is not None:
            self.manifest = manifest
        write_model(self.run_folder, MANIFEST, self.manifest)

    def _paid(self, name: str) -> bool:
        return self.router.capabilities(name).price_per_second_usd > 0

    def _budget_left(self) -> float | None:
        return None if self.ledger.budget_usd is None else self.ledger.budget_usd - self.ledger.committed_usd

    def _requeue(self, index: int, detail: str) -> None:
        self._write(transition(self.manifest, index, SegmentState.PENDING))
        self.queue.append(self.jobs[index])
        self.queue.sort(key=priority)
        self.p.progress.segment(index, SegmentState.PENDING, detail[:120])

    def _give_up(self, index: int, reason: str) -> None:
        self.failures.append(f"segment {index}: {reason}")
        self.p.progress.segment(index, SegmentState.FAILED, reason)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> tuple[RunManifest, int, int]:
        p = self.p
        remember = getattr(p.judge, "remember_accepted", None)
        for index in sorted(self.done) if remember is not None else ():
            remember(self.jobs[index], self.run_folder.local_path(self.manifest.segments[index].clip.path))
        idle_waits = 0
        while self.queue or self.in_flight:
            if p.stop.is_set():
                if self.lease is not None and self.lease.lost:  # another driver took the run over: leave it alone
                    for handle in self.in_flight:
                        p.runner.cancel(handle)
                    raise RunLocked(f"run {self.run_folder.run_id} was taken over by another process; this one stopped")
                self.manifest = p._cancel(self.run_folder, self.manifest, self.router, self.in_flight)
                raise Cancelled(f"cancelled; resume with: longvid resume {self.run_folder.run_id}")
            progressed, waiting = self._start_ready()
            if progressed:
                self.queue.sort(key=priority)
                idle_waits = 0
                continue
            if not self.in_flight:
                if waiting:  # a provider is full or its breaker is open: its slot or probe comes
                    if idle_waits == 0:
                        for job in self.queue:
                            self.p.progress.segment(job.index, SegmentState.PENDING, "waiting for a provider slot or breaker probe")
                    time.sleep(min(2.0, 0.1 * 2**idle_waits))
                    idle_waits += 1
                    continue
                break  # everything left waits on a failed segment
            for handle in p.runner.wait(list(self.in_flight)):
                self._collected(handle)
        save_state = getattr(p.judge, "save_state", None)
        if save_state is not None:
            save_state(self.run_folder)
        if self.failures or self.queue:
            blocked = sorted(j.index for j in self.queue)
            detail = "; ".join(self.failures) + (f"; not started (waiting on a failed segment): {blocked}" if blocked else "")
            raise RenderError(f"{len(self.failures)} segment(s) failed: {detail}; resume with: longvid resume {self.run_folder.run_id}")
        return self.manifest, self.generated, self.reused

    def _start_ready(self) -> tuple[bool, bool]:
        """Start what the cluster has room for. Returns (something changed, something waits
        on a provider's gate)."""
        ready = [j for j in self.queue if j.conditioned_on is None or j.conditioned_on in self.done]
        used = total(self.requests[j.index] for j, _, _ in self.in_flight.values())
        progressed = waiting = False
        for index in admit([(j.index, self.requests[j.index]) for j in ready], used, self.capacity):
            outcome = self._start(self.jobs[index])
            progressed |= outcome is _Start.PROGRESSED
            waiting |= outcome is _Start.WAITING
        return progressed, waiting

    def _start(self, job: SegmentJob) -> _Start:
        """Start one segment: poll its recorded task, reuse a cached copy, or create a task
        at the provider the router picks."""
        index, router = job.index, self.router
        attempt = self.p._attempt(self.manifest, job)
        record = self.manifest.segments[index]
        if record.state is SegmentState.GENERATED and record.clip is not None:  # made, never judged (resumed)
            self.queue.remove(job)
            data = self.run_folder.local_path(record.clip.path).read_bytes()
            seam = seam_frame_png(data, job.frames) if index in self.needed_seams else None
            result = SegmentResult(index=index, provider=record.clip.provider, model=record.clip.model,
                                   task_id=record.task_id or "resumed", mp4=data, seam_png=seam,
                                   seconds=record.clip.seconds_spent, cost_usd=0.0)  # paid for when it was made
            self._finished(attempt, record.cache_key or "", result, cached=False, recorded=True)
            return _Start.PROGRESSED
        conditioning = self._conditioning(attempt)
        if record.state is SegmentState.SUBMITTED and record.task_id:
            name = record.provider
            key = segment_key(name, router.capabilities(name).model, attempt, conditioning)
            if record.cache_key == key:  # created before a crash: wait for it, do not pay again
                self.queue.remove(job)
                router.hold(name, index)
                self._launch(name, record.task_id, attempt, key, conditioning)
                return _Start.STARTED
            # Its request changed since (e.g. the frame it starts from): the old task may be
            # billed, so it stays on the books, and the segment starts over.
            if self._paid(name):
                _settle(self.ledger, name, record.task_id, None, "superseded: the request changed; counted at the estimate")
            self._write(reset(_with_ledger(self.manifest, self.ledger), index, "its request changed since the task was created"))
        name, why = router.choose(attempt, conditioning is not None, self._budget_left())
        if name is None:
            if why == WAIT:
                return _Start.WAITING
            self.queue.remove(job)
            reason = f"no provider left to try ({router.failure_summary(index)})"
            self._write(transition(self.manifest, index, SegmentState.FAILED, error=reason[:500]))
            self._give_up(index, reason)
            return _Start.PROGRESSED
        self.queue.remove(job)
        caps = router.capabilities(name)
        key = segment_key(name, caps.model, attempt, conditioning)
        cached = self.p.store.cache_get(key)
        if cached is not None:
            router.release(name, index)
            seam = seam_frame_png(cached, job.frames) if index in self.needed_seams else None
            self._finished(attempt, key, SegmentResult(index, name, caps.model, f"cache:{key[:16]}", cached, seam, 0.0, 0.0), cached=True)
            return _Start.PROGRESSED
        task_id = self._create(name, attempt, conditioning)
        if task_id is None:
            return _Start.PROGRESSED
        self._write(transition(_with_ledger(self.manifest, self.ledger), index, SegmentState.SUBMITTED,
                               task_id=task_id, cache_key=key, seed=attempt.seed, provider=name))
        self._launch(name, task_id, attempt, key, conditioning)
        return _Start.STARTED

    def _create(self, name: str, attempt: SegmentJob, conditioning: bytes | None) -> str | None:
        """Create the task at the provider, reserved in the ledger (and written) first.
        None when the budget or the provider refused; the segment then fails over or fails."""
        index, caps, ledger = attempt.index, self.router.capabilities(name), self.ledger
        entry = f"seg{index}/call{sum(1 for e in ledger.entries if e.segment == index) + 1}"
        reserved = False
        try:
            if self._paid(name):
                ledger.reserve(entry, index, name, caps.price_per_second_usd * attempt.generate_duration_s)
                reserved = True
                self._write(_with_ledger(self.manifest, ledger))
            task_id = self.router.client(name).submit(attempt, conditioning)
        except Exception as exc:  # refused by the budget or by the provider's create call
            if reserved:
                if _nothing_created(exc):
                    ledger.release(entry, note=f"create call refused: {exc.__class__.__name__}")
                else:  # the provider may have made (and will bill) a task we never heard of
                    ledger.charge(entry, None, note="create outcome unknown; counted at the estimate")
            code = "BUDGET" if isinstance(exc, BudgetExceeded) else getattr(exc, "failure_code", None)
            if counts_against_provider(code):
                self.router.record(name, False)  # the outcome first: a half-open probe's slot then closes cleanly
            self.router.release(name, index)
            reason = f"{name}: {exc.__class__.__name__}: {exc}"
            self._write(transition(_with_ledger(self.manifest, ledger), index, SegmentState.FAILED, error=reason[:500]))
            if not isinstance(exc, InputError) and self.router.exclude(index, name, f"{exc.__class__.__name__}: {exc}"):
                self._requeue(index, f"failing over from {reason}")
            else:
                self._give_up(index, reason)
            return None
        if self._paid(name):
            ledger.attach_task(entry, task_id)
        return task_id

    def _launch(self, name: str, task_id: str, attempt: SegmentJob, key: str, conditioning: bytes | None) -> None:
        index = attempt.index
        caps = self.router.capabilities(name)
        # Free, idempotent renders may be retried by Ray; paid calls never are, so a crashed
        # worker cannot pay twice (resume polls the recorded task instead).
        retries = 2 if caps.idempotent_submit else 0
        handle = self.p.runner.collect(name, task_id, attempt, self.requests[index], conditioning, index in self.needed_seams, retries,
                                       self.p.settings)
        self.in_flight[handle] = (attempt, key, name)
        self.p.progress.segment(index, SegmentState.SUBMITTED, f"{name} · {self.requests[index].num_cpus:g} cpu")

    def _collected(self, handle: Any) -> None:
        attempt, key, name = self.in_flight.pop(handle)
        try:
            result = self.p.runner.result(handle)
        except Exception as exc:  # recorded, reported, never swallowed
            self._collect_failed(attempt, key, name, exc)
            return
        self.router.record(name, True)
        self.router.release(name, attempt.index)
        self.generated += 1
        if self._paid(name):
            _settle(self.ledger, name, result.task_id, result.cost_usd)
            self.manifest = _with_ledger(self.manifest, self.ledger)
        self._finished(attempt, key, result, cached=False)

    def _collect_failed(self, attempt: SegmentJob, key: str, name: str, exc: BaseException) -> None:
        """One branch per decision: poll again, leave it for resume, or close the task's
        books and then retry, reword, fail over or give up."""
        index = attempt.index
        reason = f"{name}: {exc.__class__.__name__}: {exc}"
        record = self.manifest.segments[index]
        tries_key = (index, name)
        self.tries[tries_key] = self.tries.get(tries_key, 0) + 1
        decision = failure_decision(exc, self.tries[tries_key], self.p.max_tries, paid_task=self._paid(name) and bool(record.task_id))
        if decision is FailureDecision.COLLECT_AGAIN:  # the task is fine; reaching it was not
            self._launch(name, record.task_id, attempt, key, self._conditioning(attempt))
            self.p.progress.segment(index, SegmentState.SUBMITTED, f"polling again: {reason[:80]}")
        elif decision is FailureDecision.LEAVE_SUBMITTED:  # still running or unreachable: resume polls it, never pays again
            self.router.release(name, index)
            self._give_up(index, reason)
            self.p.progress.segment(index, SegmentState.SUBMITTED, reason)
        else:
            self._task_failed(attempt, name, exc, reason, decision)

    def _task_failed(self, attempt: SegmentJob, name: str, exc: BaseException, reason: str, decision: FailureDecision) -> None:
        index = attempt.index
        record = self.manifest.segments[index]
        code = getattr(exc, "failure_code", None)
        if counts_against_provider(code):
            self.router.record(name, False)
        self.router.release(name, index)
        if self._paid(name):  # the provider may have charged: count it at the estimate
            _settle(self.ledger, name, record.task_id, None, "failed; counted at the estimate")
        self._write(transition(_with_ledger(self.manifest, self.ledger), index, SegmentState.FAILED, error=reason[:500]))
        if decision is FailureDecision.NEW_TASK:  # e.g. INTERNAL at the provider: the same request may work
            self._requeue(index, f"retrying: {reason[:80]}")
        elif is_safety_refusal(code):  # never the same words again: reworded once by the planner, else fail
            if self.rephrase is not None and not record.rephrased_prompt:
                reworded = self.rephrase(attempt.prompt, code)
                history = [*record.history, f"{name} refused the prompt ({code}); the planner reworded it"]
                self.manifest = _update_record(self.manifest, index, rephrased_prompt=reworded, history=history)
                self._requeue(index, f"reworded after {code}")
            else:
                self._give_up(index, reason)
        elif code is not None and self.router.exclude(index, name, f"{exc.__class__.__name__}: {exc}"):
            self._requeue(index, f"failing over from {reason[:80]}")
        else:
            self._give_up(index, reason)

    def _finished(self, attempt: SegmentJob, key: str, result: SegmentResult, cached: bool, recorded: bool = False) -> None:
        index = attempt.index
        self.manifest, accepted = self.p._finish(self.run_folder, self.manifest, self.jobs, attempt, result, key, cached=cached,
                                                 recorded=recorded)
        if not accepted:
            self.queue.append(self.jobs[index])
            self.queue.sort(key=priority)
            return
        self.done.add(index)
        if cached:
            self.reused += 1
        if result.seam_png is not None and self.manifest.segments[index].clip.sha256 == _sha256(result.mp4):
            self.seams[index] = result.seam_png
        else:  # an earlier attempt was kept: read its seam frame from its file when needed
            self.seams.pop(index, None)
