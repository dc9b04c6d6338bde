"""The generate step: schedule ready segments within the cluster's capacity, route each to a
provider, record every state change, and decide what each failure means (poll again, a new
task, another provider, a reworded prompt, or fail).

The loop owns its state (queue, tasks in flight, seam frames, the ledger) for one
invocation; its collaborators are injected: the runner (Ray tasks or inline), the router
(providers and their gates), acceptance (record, judge, accept) and the planner's rewording.

Over 400 lines on purpose: the generate loop is one state machine, read and changed together.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, RenderError
from ..manifest import RunManifest, RunStatus, reset, transition, update_record, with_warnings
from ..observability import render_events
from ..observability.render_events import LoopEvents
from ..providers._http import is_safety_refusal
from ..providers.base import ProviderCapabilities
from ..providers.ledger import CostLedger, EntryState
from ..providers.routing import counts_against_provider
from ..settings import Settings
from ..spec import RenderSpec, SegmentJob, SegmentState
from .acceptance import Acceptance, fold_adjustments, sha256_hex
from .best_of_n import BestOfN
from .conditioning import chain_conditioning
from .failures import (
    Cancelled, FailureDecision, failure_code, failure_decision, failure_detail, failure_reason, nothing_created,
)
from .protocols import ProgressSink
from .normalisation import needs_normalising
from .resources import (EstimatorConfig, admit, estimate, fit_to_cluster, normalise_estimate, normalise_slots, priority,
                        resident_in_flight_limit, total, within_limit)
from .resume import attempt_seed, segment_key
from .router import WAIT, SegmentRouter
from .runlock import RunLock, RunLocked
from .layout import MANIFEST, original_path
from .store import RunFolder, RunStore, read_manifest, write_model
from .tasks import COLLECT_RETRIES, SegmentResult, SegmentRunner, seam_frame_png


@dataclass(frozen=True)
class GenerateOutcome:
    manifest: RunManifest
    generated: int  # made by a provider in this invocation
    reused: int  # kept from an earlier attempt or taken from the cache


class _Start(enum.Enum):
    """What trying to start one segment did."""

    STARTED = "started"  # a task is in flight (a Ray task waits for it)
    PROGRESSED = "progressed"  # its state changed without a task in flight (cached, failed, failing over)
    WAITING = "waiting"  # its provider is full or its breaker open: try again shortly


class GenerateLoop:
    """One invocation of the generate step over one run folder."""

    def __init__(self, run: RunFolder, manifest: RunManifest, jobs: list[SegmentJob], capabilities: ProviderCapabilities, *,
                 store: RunStore, runner: SegmentRunner, router: SegmentRouter, acceptance: Acceptance,
                 progress: ProgressSink, stop: threading.Event, estimator: EstimatorConfig,
                 rephrase: Callable[[str, str], str] | None, settings: Settings, max_tries: int = 2,
                 lease: RunLock | None = None, on_accepted: Callable[[RunManifest, int], None] | None = None,
                 spec: RenderSpec | None = None):
        self.run_folder, self.jobs, self.router = run, jobs, router
        self.store, self.runner, self.acceptance, self.progress = store, runner, acceptance, progress
        self.stop, self.rephrase, self.max_tries, self.lease = stop, rephrase, max_tries, lease
        self.settings = settings  # travels to the Ray tasks that poll and download (secrets masked)
        self.on_accepted = on_accepted  # e.g. the merge ahead (merge_ahead.py)
        self.spec = spec or manifest.spec  # `spec`: an edit's, with its own budget (the manifest keeps the user's request)
        self.capacity = runner.capacity(settings.autoscaling)  # LONGVID_AUTOSCALING, or the runner's guess
        self.in_flight_limit = resident_in_flight_limit(all(router.capabilities(n).resident_model for n in router.names),
                                                        settings.local.workers)  # even when autoscaling: see resources.py
        self.requests = {}
        for job in jobs:
            request, notes = fit_to_cluster(estimate(job, capabilities, self.spec.quality, estimator), self.capacity)
            self.requests[job.index] = request
            manifest = with_warnings(manifest, *(f"segment {job.index}: {n}" for n in notes))
        self.manifest = manifest
        self.needed_seams = {j.conditioned_on for j in jobs if j.conditioned_on is not None}
        self.ledger = CostLedger(self.spec.budget_usd, list(manifest.ledger))
        self.events = LoopEvents(self.ledger.entries)  # metrics and log lines; earlier invocations' charges already counted
        self.manifest = self._account_for_unanswered_creates()
        if hasattr(acceptance.judge, "bind_ledger"):  # a paid judge (Gemini) books its calls here too
            acceptance.judge.bind_ledger(self.ledger, self._persist_ledger)
        self.candidates = BestOfN(self, capabilities.price_per_second_usd)  # --candidates: see candidates.py
        self.done = {r.index for r in manifest.segments if r.state is SegmentState.ACCEPTED}
        self.reused = len(self.done)
        self.generated = 0
        self.queue = sorted((j for j in jobs if j.index not in self.done), key=priority)
        self.seams: dict[int, bytes] = {}
        self.in_flight: dict[Any, tuple[SegmentJob, str, str]] = {}  # handle -> (attempt, key, provider)
        # handle -> (attempt, key, the clip as it arrived, from the cache?): being normalised
        self.normalising: dict[Any, tuple[SegmentJob, str, SegmentResult, bool]] = {}
        # Arrived clips waiting for a normalisation slot, started in timeline order (see _start_normalising).
        self.to_normalise: list[tuple[SegmentJob, str, SegmentResult, bool]] = []
        self.position = {job.index: position for position, job in enumerate(jobs)}
        self.estimator = estimator
        self.failures: list[str] = []
        self.tries: dict[tuple[int, str], int] = {}  # failed tries per (segment, provider) in this invocation
        # The user's first reference image starts each scene at a generative provider (its
        # first frame), so the subject looks like the reference. Not for the procedural preview,
        # which cannot animate a photograph.
        remote = all((router.capabilities(n).runs_remotely or router.capabilities(n).resident_model)
                     and router.capabilities(n).image_conditioning for n in router.names)
        self.reference = self.spec.reference_images[0] if remote and self.spec.reference_images else None
        self._reference_png: dict[tuple[int, int], bytes | None] = {}
        # A model that continues a clip from several of its last frames (a local LTX-Video)
        # gets them all; every other provider gets the seam frame alone.
        self.chain_frames = max(router.capabilities(n).conditioning_frames for n in router.names)

    def _account_for_unanswered_creates(self) -> RunManifest:
        """A create call whose answer never came (the driver died during it, or the outcome
        was unknown) may have made a task the provider bills: it stays on the books at its
        estimate, and the run says so instead of counting it silently."""
        notes = []
        for entry in self.ledger.unanswered():
            if entry.state is EntryState.RESERVED:  # the driver stopped during the call
                self.ledger.charge(entry.key, None, "create call interrupted: a task may exist and be billed; counted at the estimate")
            notes.append(unanswered_warning(entry.segment, entry.provider, entry.estimate_usd))
        manifest = with_warnings(self.manifest, *notes)
        return self._with_ledger(manifest) if notes else manifest

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> GenerateOutcome:
        self.acceptance.remember(self.manifest, self.jobs, self.done)
        idle_waits = 0
        while self.queue or self.in_flight or self.normalising or self.to_normalise or self.candidates.extras:
            if self.stop.is_set():
                self._stop()
            self._start_normalising()
            progressed, waiting = self._start_ready()
            if progressed:
                self.queue.sort(key=priority)
                idle_waits = 0
                continue
            if not self.in_flight and not self.normalising and not self.candidates.extras:
                if waiting:  # a provider is full or its breaker is open: its slot or probe comes
                    if idle_waits == 0:
                        for job in self.queue:
                            self.progress.segment(job.index, SegmentState.PENDING, "waiting for a provider slot or breaker probe")
                    time.sleep(min(2.0, 0.1 * 2**idle_waits))
                    idle_waits += 1
                    continue
                break  # everything left waits on a failed segment
            for handle in self.runner.wait([*self.in_flight, *self.normalising, *self.candidates.extras]):
                if handle in self.candidates.extras:
                    self.candidates.collected(handle)
                elif handle in self.normalising:
                    self._normalised(handle)
                else:
                    self._collected(handle)
        self.acceptance.save_state()
        if self.failures or self.queue:
            blocked = sorted(j.index for j in self.queue)
            detail = "; ".join(self.failures) + (f"; not started (waiting on a failed segment): {blocked}" if blocked else "")
            raise RenderError(f"{len(self.failures)} segment(s) failed: {detail}; resume with: longvid resume {self.run_folder.run_id}")
        return GenerateOutcome(self.manifest, self.generated, self.reused)

    def _stop(self) -> None:
        """The stop event is set: the user cancelled, or another driver took the run over."""
        for handle in [*self.normalising, *self.candidates.extras]:  # originals are on disk: resume normalises them
            self.runner.cancel(handle)
        self.to_normalise.clear()
        if self.lease is not None and self.lease.lost:  # another driver owns the run now: leave it alone
            for handle in self.in_flight:
                self.runner.cancel(handle)
            raise RunLocked(f"run {self.run_folder.run_id} was taken over by another process; this one stopped")
        self._cancel_in_flight()
        raise Cancelled(f"cancelled; resume with: longvid resume {self.run_folder.run_id}")

    def _cancel_in_flight(self) -> None:
        """Stop what is in flight. A provider task that was cancelled is marked failed (resume
        makes a new one); one that could not be cancelled stays submitted (resume polls it)."""
        manifest, router = self.manifest, self.router
        for handle, (job, _key, name) in list(self.in_flight.items()):
            self.runner.cancel(handle)
            router.release(name, job.index)
            record = manifest.segments[job.index]
            if not record.task_id or router.capabilities(name).idempotent_submit:
                continue
            try:
                router.cancel_task(name, record.task_id)
                manifest = transition(manifest, job.index, SegmentState.FAILED, error="cancelled by the user")
            except Exception:  # the task keeps running (or cannot be cancelled): resume will poll it
                pass
        self._write(manifest.model_copy(update={"status": RunStatus.CANCELLED, "error": "cancelled by the user"}))

    def _start_ready(self) -> tuple[bool, bool]:
        """Start what the cluster has room for. Returns (something changed, something waits
        on a provider's gate)."""
        ready = [j for j in self.queue if j.conditioned_on is None or j.conditioned_on in self.done]
        used = total([*(self.requests[j.index] for j, _, _ in self.in_flight.values()),
                      *(self._normalise_request(j) for j, _, _, _ in self.normalising.values())])
        progressed = waiting = False
        admitted = admit([(j.index, self.requests[j.index]) for j in ready], used, self.capacity)
        for index in within_limit(admitted, len(self.in_flight), self.in_flight_limit):
            outcome = self._start(self.jobs[index])
            progressed |= outcome is _Start.PROGRESSED
            waiting |= outcome is _Start.WAITING
        return progressed, waiting

    def _start(self, job: SegmentJob) -> _Start:
        """Start one segment: poll its recorded task, reuse a cached copy, or create a task
        at the provider the router picks."""
        index, router = job.index, self.router
        attempt = self._attempt(job)
        record = self.manifest.segments[index]
        if record.state is SegmentState.GENERATED and record.clip is not None:  # made, never judged (resumed)
            self.queue.remove(job)
            data = self.run_folder.local_path(record.clip.path).read_bytes()
            # No seam here: when a chained segment needs it, it is read from the accepted file.
            result = SegmentResult(index=index, provider=record.clip.provider, model=record.clip.model,
                                   task_id=record.task_id or "resumed", mp4=data, seam_png=None,
                                   seconds=record.clip.seconds_spent, cost_usd=0.0)  # paid for when it was made
            self._arrived(attempt, record.cache_key or "", result, cached=False, recorded=True)
            return _Start.PROGRESSED
        conditioning = self._conditioning(attempt)
        if record.state is SegmentState.SUBMITTED and record.task_id:
            name = record.provider
            key = segment_key(name, router.capabilities(name).cache_model, attempt, conditioning)
            if record.cache_key == key:  # created before a crash: wait for it, do not pay again
                self.queue.remove(job)
                router.hold(name, index)
                self._launch(name, record.task_id, attempt, key, conditioning)
                return _Start.STARTED
            # Its request changed since (e.g. the frame it starts from): the old task may be
            # billed, so it stays on the books, and the segment starts over.
            if self._paid(name):
                self._settle(name, record.task_id, None, "superseded: the request changed; counted at the estimate")
            self._write(reset(self._with_ledger(), index, "its request changed since the task was created"))
        name, why = router.choose(attempt, conditioning is not None, self._budget_left())
        self.events.gate_answer(index, name)
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
        key = segment_key(name, caps.cache_model, attempt, conditioning)
        cached = self.store.cache_get(key)
        if cached is not None:
            router.release(name, index)
            # No seam here either (the cache keeps what the provider made, maybe not yet normalised).
            self._arrived(attempt, key, SegmentResult(index, name, caps.model, f"cache:{key[:16]}", cached, None, 0.0, 0.0), cached=True)
            return _Start.PROGRESSED
        task_id = self._create(name, attempt, conditioning)
        if task_id is None:
            return _Start.PROGRESSED
        self._write(transition(self._with_ledger(), index, SegmentState.SUBMITTED,
                               task_id=task_id, cache_key=key, seed=attempt.seed, provider=name))
        self._launch(name, task_id, attempt, key, conditioning)
        if record.regenerations == 0:
            self.candidates.launch(name, attempt, conditioning)
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
                self._write(self._with_ledger())
            task_id = self.router.client(name).submit(attempt, conditioning)
        except Exception as exc:  # refused by the budget or by the provider's create call
            self.events.error(index, name, failure_code(exc) or exc.__class__.__name__, failure_reason(name, exc))
            if reserved:
                if nothing_created(exc):
                    ledger.release(entry, note=f"create call refused: {exc.__class__.__name__}")
                else:  # the provider may have made (and will bill) a task we never heard of
                    ledger.charge(entry, None, note="create outcome unknown; counted at the estimate")
                    self.manifest = with_warnings(self.manifest, unanswered_warning(index, name, caps.price_per_second_usd * attempt.generate_duration_s))
            if counts_against_provider(failure_code(exc)):
                self.router.record(name, False)  # the outcome first: a half-open probe's slot then closes cleanly
            self.router.release(name, index)
            reason = failure_reason(name, exc)
            self._write(transition(self._with_ledger(), index, SegmentState.FAILED, error=reason[:500]))
            if not isinstance(exc, InputError) and self.router.exclude(index, name, failure_detail(exc)):
                self._requeue(index, f"failing over from {reason}")
            else:
                self._give_up(index, reason)
            return None
        if self._paid(name):
            ledger.attach_task(entry, task_id)
        self.events.created(index, name, task_id)
        return task_id

    def _launch(self, name: str, task_id: str, attempt: SegmentJob, key: str, conditioning: bytes | None) -> None:
        index = attempt.index
        # The Ray task only polls and downloads the task the driver created (its id is recorded
        # first), so Ray may run it again after its worker or node died: the retry polls the same
        # task and pays nothing. (With no retries a lost node failed the render.)
        retries = COLLECT_RETRIES
        handle = self.runner.collect(name, task_id, attempt, self.requests[index], conditioning, index in self.needed_seams, retries,
                                     self.settings.for_provider(name))
        self.in_flight[handle] = (attempt, key, name)
        self.progress.segment(index, SegmentState.SUBMITTED, f"{name} · {self.requests[index].num_cpus:g} cpu")

    def _collected(self, handle: Any) -> None:
        attempt, key, name = self.in_flight.pop(handle)
        try:
            result = self.runner.result(handle)
        except Exception as exc:  # recorded, reported, never swallowed
            self._collect_failed(attempt, key, name, exc)
            return
        self.router.record(name, True)
        self.router.release(name, attempt.index)
        self.events.collected(attempt.index, name, result.model, result.task_id)
        self.generated += 1
        if self._paid(name):
            self._settle(name, result.task_id, result.cost_usd)
            self.manifest = self._with_ledger()
        self._arrived(attempt, key, result, cached=False)

    def _collect_failed(self, attempt: SegmentJob, key: str, name: str, exc: BaseException) -> None:
        """One branch per decision: poll again, leave it for resume, or close the task's
        books and then retry, reword, fail over or give up."""
        index = attempt.index
        reason = failure_reason(name, exc)
        self.events.error(index, name, failure_code(exc) or exc.__class__.__name__, reason)
        record = self.manifest.segments[index]
        tries_key = (index, name)
        self.tries[tries_key] = self.tries.get(tries_key, 0) + 1
        resident = self._resident(name)
        decision = failure_decision(exc, self.tries[tries_key], self.max_tries,
                                    paid_task=self._paid(name) and not resident and bool(record.task_id), resident=resident)
        if decision is FailureDecision.COLLECT_AGAIN:  # the task is fine; reaching it was not
            self._launch(name, record.task_id, attempt, key, self._conditioning(attempt))
            self.progress.segment(index, SegmentState.SUBMITTED, f"polling again: {reason[:80]}")
        elif decision is FailureDecision.LEAVE_SUBMITTED:  # still running or unreachable: resume polls it, never pays again
            self.router.release(name, index)
            self._write(update_record(self.manifest, index, error=reason[:500]))  # why it is not done, until resume collects it
            self._give_up(index, reason)
            self.progress.segment(index, SegmentState.SUBMITTED, reason)
        else:
            self._task_failed(attempt, name, exc, reason, decision)

    def _task_failed(self, attempt: SegmentJob, name: str, exc: BaseException, reason: str, decision: FailureDecision) -> None:
        index = attempt.index
        record = self.manifest.segments[index]
        code = failure_code(exc)
        if counts_against_provider(code):
            self.router.record(name, False)
        self.router.release(name, index)
        if self._paid(name):  # the provider may have charged: count it at the estimate
            self._settle(name, record.task_id, None, "failed; counted at the estimate")
        self._write(transition(self._with_ledger(), index, SegmentState.FAILED, error=reason[:500]))
        if decision is FailureDecision.NEW_TASK:  # e.g. INTERNAL at the provider: the same request may work
            self._requeue(index, f"retrying: {reason[:80]}")
        elif is_safety_refusal(code):  # never the same words again: reworded once by the planner, else fail
            if self.rephrase is not None and not record.rephrased_prompt:
                reworded = self.rephrase(attempt.prompt, code)
                history = [*record.history, f"{name} refused the prompt ({code}); the planner reworded it"]
                self.manifest = update_record(self.manifest, index, rephrased_prompt=reworded, history=history)
                self._requeue(index, f"reworded after {code}")
            else:
                self._give_up(index, reason)
        elif (code is not None or self._resident(name)) and self.router.exclude(index, name, failure_detail(exc)):
            self._requeue(index, f"failing over from {reason[:80]}")
        else:
            self._give_up(index, reason)

    def _arrived(self, attempt: SegmentJob, key: str, result: SegmentResult, cached: bool, recorded: bool = False) -> None:
        """A segment's clip is here. In the house format (the preview renderer's, a normalised
        one) it goes on to the judge; otherwise the original is recorded and a task normalises
        it while the other segments generate."""
        index = attempt.index
        clip = self.manifest.segments[index].clip
        if (recorded and clip.normalised) or (why := needs_normalising(result.mp4, attempt)) is None:
            self._finished(attempt, key, result, cached, recorded)
            return
        if not recorded or clip.path != original_path(index):
            self.manifest = self.acceptance.record_original(self.manifest, attempt, result, key, cached)
        self.to_normalise.append((attempt, key, result, cached))
        self.progress.segment(index, SegmentState.GENERATED, f"normalising ({why})"[:120])

    def _start_normalising(self) -> None:
        """Start the waiting normalisations the cluster has room for, earliest in the timeline
        first: clips often arrive together (one latency for all), and the merge ahead can only
        write a segment once every one before it is in."""
        if not self.to_normalise:
            return
        self.to_normalise.sort(key=lambda item: self.position[item[0].index])
        slots = normalise_slots(self.capacity, self._normalise_request(self.to_normalise[0][0]), len(self.normalising))
        # The last thing this render waits for (nothing else generating or normalising) may use
        # every core x264 wants, though it asked Ray for one; otherwise each keeps to its one.
        threads = 0 if not self.normalising and not self.in_flight and len(self.to_normalise) == 1 else 1
        for attempt, key, result, cached in self.to_normalise[:slots]:
            handle = self.runner.normalise(attempt, result.mp4, self._normalise_request(attempt), attempt.index in self.needed_seams,
                                           threads)
            self.normalising[handle] = (attempt, key, result, cached)
        del self.to_normalise[:slots]

    def _normalised(self, handle: Any) -> None:
        attempt, key, result, cached = self.normalising.pop(handle)
        index = attempt.index
        try:
            done = self.runner.result(handle)
        except Exception as exc:
            # The provider's clip is on disk and recorded (GENERATED, not normalised): resume
            # normalises it again from there and never pays the provider a second time.
            reason = f"{result.provider}: the clip could not be normalised ({failure_detail(exc, 200)}); resume normalises it again"
            self._write(update_record(self.manifest, index, error=reason[:500]))
            self._give_up(index, reason)
            return
        render_events.normalised(done.seconds)
        self.manifest = self.acceptance.record_normalised(self.manifest, attempt, done.mp4, done.seconds, key)
        # Paid for when it arrived (recorded with the original): the normalised file costs nothing more.
        normalised = dataclasses.replace(result, mp4=done.mp4, seam_png=done.seam_png, cost_usd=0.0,
                                         seconds=result.seconds + done.seconds)
        self._finished(attempt, key, normalised, cached, recorded=True)

    def _normalise_request(self, job: SegmentJob):
        request, _notes = fit_to_cluster(normalise_estimate(job, self.estimator), self.capacity)
        return request

    def _finished(self, attempt: SegmentJob, key: str, result: SegmentResult, cached: bool, recorded: bool = False) -> None:
        index = attempt.index
        if self.candidates.waiting(attempt, key, result, cached, recorded):
            return  # its other candidates are still coming: judged together when they are in
        if (chosen := self.candidates.choose(attempt, key, result, recorded)) is not None:
            attempt, key, result, recorded = chosen
            cached = cached and chosen[0].seed == self.jobs[index].seed
        self.manifest, accepted = self.acceptance.finish(self.manifest, self.jobs, attempt, result, key, cached=cached,
                                                         recorded=recorded)
        if len(self.ledger.entries) != len(self.manifest.ledger):  # the judge booked a call
            self._write(self._with_ledger())
        if not accepted:
            self.queue.append(self.jobs[index])
            self.queue.sort(key=priority)
            return
        self.done.add(index)
        if self.on_accepted is not None:
            self.on_accepted(self.manifest, index)
        self.events.segment(index, result.provider, result.model, "cached" if cached else "accepted")
        if cached:
            self.reused += 1
        if result.seam_png is not None and self.manifest.segments[index].clip.sha256 == sha256_hex(result.mp4):
            self.seams[index] = result.seam_png
        else:  # an earlier attempt was kept: read its seam frame from its file when needed
            self.seams.pop(index, None)

    # -- bookkeeping ----------------------------------------------------------------------

    def _attempt(self, job: SegmentJob) -> SegmentJob:
        """The job as this attempt makes it: a new seed after the judge sent it back, the
        planner's rewording after a SAFETY refusal."""
        record = self.manifest.segments[job.index]
        changes: dict[str, Any] = {}
        if record.regenerations:
            changes["seed"] = attempt_seed(job.seed, record.regenerations)
        if record.rephrased_prompt:
            changes["prompt"] = record.rephrased_prompt
        if record.prompt_adjustments:  # a vision judge said what the last attempt missed
            changes["prompt"] = fold_adjustments(changes.get("prompt", job.prompt), record.prompt_adjustments)
        return job.model_copy(update=changes) if changes else job

    def _conditioning(self, attempt: SegmentJob) -> bytes | None:
        """The image a segment starts from: the previous segment's seam frame when chained,
        the user's reference image for a scene's first segment at a generative provider."""
        previous = attempt.conditioned_on
        if previous is not None and self.chain_frames > 1:
            clip = self.manifest.segments[previous].clip
            return chain_conditioning(self.run_folder.local_path(clip.path), self.jobs[previous].frames, self.chain_frames)
        if previous is not None:
            if previous not in self.seams:  # accepted in an earlier invocation: read it back
                clip = self.manifest.segments[previous].clip
                self.seams[previous] = seam_frame_png(self.run_folder.local_path(clip.path).read_bytes(), self.jobs[previous].frames)
            return self.seams[previous]
        if self.reference is None or attempt.segment_in_scene != 0:
            return None
        size = (attempt.width, attempt.height)
        if size not in self._reference_png:
            self._reference_png[size] = fitted_png(self.reference, size)
            if self._reference_png[size] is None:
                self.manifest = with_warnings(self.manifest, f"reference image {self.reference.name} could not be read; scenes start from text only")
        return self._reference_png[size]

    def _write(self, manifest: RunManifest | None = None) -> None:
        if manifest is not None:
            self.manifest = manifest
        write_model(self.run_folder, MANIFEST, self.manifest)

    def _persist_ledger(self) -> None:
        """The ledger into the manifest on disk, whatever else is newer there (the judge calls
        this mid-acceptance, when acceptance has written records the loop does not hold yet)."""
        write_model(self.run_folder, MANIFEST, read_manifest(self.run_folder).model_copy(update={"ledger": list(self.ledger.entries)}))

    def _with_ledger(self, manifest: RunManifest | None = None) -> RunManifest:
        self.events.charged(self.ledger.entries)  # the ledger changed: count new charges once
        return (manifest or self.manifest).model_copy(update={"ledger": list(self.ledger.entries)})

    def _settle(self, provider: str, task_id: str | None, cost_usd: float | None, note: str = "") -> None:
        """Charge the reserved entry of `provider`'s task `task_id` (resumed tasks were reserved
        by an earlier run); task ids are only unique per provider."""
        for entry in self.ledger.entries:
            if entry.provider == provider and entry.task_id == task_id and entry.state is EntryState.RESERVED:
                self.ledger.charge(entry.key, cost_usd, note)
                return

    def _paid(self, name: str) -> bool:
        return self.router.capabilities(name).price_per_second_usd > 0

    def _resident(self, name: str) -> bool:
        """A local model: its task lives only in our worker, so a failure is retried or failed
        over, never left "submitted" for resume to poll (it would fail the same way)."""
        return self.router.capabilities(name).resident_model

    def _budget_left(self) -> float | None:
        return None if self.ledger.budget_usd is None else self.ledger.budget_usd - self.ledger.committed_usd

    def _requeue(self, index: int, detail: str) -> None:
        self._write(transition(self.manifest, index, SegmentState.PENDING))
        self.queue.append(self.jobs[index])
        self.queue.sort(key=priority)
        self.progress.segment(index, SegmentState.PENDING, detail[:120])

    def _give_up(self, index: int, reason: str) -> None:
        record = self.manifest.segments[index]
        self.events.segment(index, record.provider, None, "unfinished" if record.state is SegmentState.SUBMITTED else "failed")
        self.failures.append(f"segment {index}: {reason}")
        self.progress.segment(index, SegmentState.FAILED, reason)


def fitted_png(path: Path, size: tuple[int, int]) -> bytes | None:
    """`path` cropped to the aspect of `size` and scaled to it, as PNG; None if unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            fitted = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
    except OSError:
        return None
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()


def unanswered_warning(segment: int, provider: str, estimate_usd: float) -> str:
    return (f"segment {segment}: a {provider} task may have been paid for without a result "
            f"(its create call got no answer); counted at its estimate of ${estimate_usd:.2f}")
