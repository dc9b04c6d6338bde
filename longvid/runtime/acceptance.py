"""Acceptance: a generated segment is recorded (its file and GENERATED state, and a copy in
the content-addressed cache), judged, and then accepted or sent back for a new seed; when
no attempt passes, the best one is kept with a warning. Also the resume side of the same
rules: a run interrupted between generating, judging and accepting is brought back to a
state the generate step continues from, as the render would have.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from ..manifest import SCORE_NAMES, AttemptRecord, CandidateRecord, RunManifest, reset, transition, update_record, with_warnings
from ..observability import render_events
from ..spec import Clip, SegmentJob, SegmentState
from .candidates import candidate_path, pick_best
from .layout import MANIFEST, attempt_path, original_path, segment_path
from .protocols import ProgressSink, SegmentJudge
from .resume import Action, resume_plan
from .store import RunFolder, RunStore, clip_verifies, write_model
from .tasks import SegmentResult


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Acceptance:
    """Records, judges and accepts the segments of one run folder."""

    def __init__(self, run: RunFolder, store: RunStore, judge: SegmentJudge | None, progress: ProgressSink):
        self.run, self.store, self.judge, self.progress = run, store, judge, progress

    # -- generate side ----------------------------------------------------------------------

    def finish(self, manifest: RunManifest, jobs: list[SegmentJob], job: SegmentJob, result: SegmentResult, key: str,
               cached: bool, recorded: bool = False) -> tuple[RunManifest, bool]:
        """Record a generated segment, judge it, and accept it or send it back (False).
        `recorded`: its file and GENERATED state were written by an earlier invocation."""
        index, run = job.index, self.run
        record = manifest.segments[index]
        if recorded:
            clip = record.clip
        else:
            manifest, clip = self._record(manifest, job, result, key, cached)
        if self.judge is not None:
            previous = self._previous(manifest, jobs, job)
            verdict = self.judge.judge(job, run.local_path(segment_path(index)), previous)
            if getattr(verdict, "warnings", ()):
                manifest = with_warnings(manifest, *(f"segment {index}: {w}" for w in verdict.warnings))
            render_events.judged(index, self.judge.backend, verdict.passed, verdict.quality, verdict.scores)
            regenerations = manifest.segments[index].regenerations
            kept_at = attempt_path(index, regenerations)
            checks, unknown = _known_checks(verdict.scores)
            if unknown:  # a plugin judge's extra scores: kept out of the typed record, said once
                manifest = with_warnings(manifest, f"the judge's scores {', '.join(sorted(unknown))} are not recorded "
                                                   "(not fields of an attempt record)")
            entry = AttemptRecord(seed=job.seed, passed=verdict.passed, quality=verdict.quality, file=kept_at,
                                  sha256=clip.sha256, **checks)
            scores = [*manifest.segments[index].scores, entry]
            manifest = transition(manifest, index, SegmentState.JUDGED, scores=scores)
            write_model(run, MANIFEST, manifest)
            if not verdict.passed and regenerations + 1 < self.judge.max_attempts:
                run.write_bytes(kept_at, result.mp4)  # kept in case no later attempt does better
                manifest = reset(manifest, index, f"judge: {verdict.reason}")
                manifest = update_record(manifest, index, regenerations=regenerations + 1, scores=scores,
                                         cost_usd=record.cost_usd + result.cost_usd,
                                         prompt_adjustments=tuple(getattr(verdict, "adjustments", ())))
                write_model(run, MANIFEST, manifest)
                self.progress.segment(index, SegmentState.PENDING, f"regenerating: {verdict.reason}")
                render_events.regenerated(index, result.provider)
                return manifest, False
            if not verdict.passed:
                manifest = self.keep_best_attempt(manifest, job, scores, verdict.reason)
        manifest = transition(manifest, index, SegmentState.ACCEPTED)
        write_model(run, MANIFEST, manifest)
        self.progress.segment(index, SegmentState.ACCEPTED, "cached" if cached else f"{result.seconds:.1f}s")
        return manifest, True

    def _previous(self, manifest: RunManifest, jobs: list[SegmentJob], job: SegmentJob):
        """The segment this one follows inside its scene, when it has a file: the judge's seam."""
        index = job.index
        if index > 0 and jobs[index - 1].scene_index == job.scene_index and manifest.segments[index - 1].clip is not None:
            return jobs[index - 1], self.run.local_path(manifest.segments[index - 1].clip.path)
        return None

    def choose_candidate(self, manifest: RunManifest, jobs: list[SegmentJob], candidates: list[tuple[int, SegmentJob, SegmentResult, str]],
                         counted_usd: float = 0.0):
        """Best-of-N: score every candidate (k, attempt, result, cache key) without making it
        context, record them all in the segment's `candidates`, add the cost of those not kept
        (less `counted_usd`, candidate 0's cost when it is on the record already), and return
        (manifest, the kept candidate's (attempt, result, key))."""
        job = candidates[0][1]
        index, previous = job.index, self._previous(manifest, jobs, job)
        score = getattr(self.judge, "score_only", None) or self.judge.judge
        records, scored = [], []
        for k, attempt, result, key in candidates:
            path = candidate_path(index, k)
            self.run.write_bytes(path, result.mp4)
            verdict = score(attempt, self.run.local_path(path), previous)
            scored.append((k, verdict.passed, verdict.quality))
            measured = {name: float(value) for name, value in verdict.scores.items() if name in SCORE_NAMES and value is not None}
            records.append(CandidateRecord(k=k, seed=attempt.seed, provider=result.provider, passed=verdict.passed,
                                           quality=verdict.quality, file=path, sha256=sha256_hex(result.mp4),
                                           cost_usd=result.cost_usd, scores=measured, reason=verdict.reason[:300]))
        best = pick_best(scored)
        records = [r.model_copy(update={"kept": r.k == best}) for r in records]
        not_kept = sum(r.cost_usd for r in records if not r.kept) - (counted_usd if best != 0 else 0.0)
        manifest = update_record(manifest, index, candidates=tuple(records), cost_usd=manifest.segments[index].cost_usd + not_kept)
        write_model(self.run, MANIFEST, manifest)
        kept = next(c for c in candidates if c[0] == best)
        return manifest, (kept[1], kept[2], kept[3])

    def _record(self, manifest: RunManifest, job: SegmentJob, result: SegmentResult, key: str,
                cached: bool) -> tuple[RunManifest, Clip]:
        """The segment's bytes and its GENERATED state, written before anything judges it."""
        index, relative = job.index, segment_path(job.index)
        record = manifest.segments[index]
        self.run.write_bytes(relative, result.mp4)
        clip = Clip(
            segment_index=index, provider=result.provider, model=result.model, path=relative,
            frames=int(round(job.generate_duration_s * job.fps)), width=job.width, height=job.height, fps=job.fps,
            cost_usd=result.cost_usd, seconds_spent=round(result.seconds, 3), sha256=sha256_hex(result.mp4),
            normalised=True,  # the generate step normalises a clip before it is recorded here
        )
        manifest = transition(
            manifest, index, SegmentState.GENERATED,
            task_id=result.task_id, clip=clip, cost_usd=record.cost_usd + result.cost_usd, provider=result.provider,
            resources=result.resources, cached=cached, seed=job.seed, cache_key=key,
        )
        write_model(self.run, MANIFEST, manifest)
        if not cached:
            self.store.cache_put(key, result.mp4)
        return manifest, clip

    def record_original(self, manifest: RunManifest, job: SegmentJob, result: SegmentResult, key: str,
                        cached: bool) -> RunManifest:
        """A provider's clip that is not in the house format, kept as it arrived and recorded
        GENERATED (not yet normalised) before it is normalised: a crash from here on resumes
        from this file, never from a new provider task."""
        index = job.index
        record = manifest.segments[index]
        self.run.write_bytes(original_path(index), result.mp4)
        clip = Clip(
            segment_index=index, provider=result.provider, model=result.model, path=original_path(index),
            frames=int(round(job.generate_duration_s * job.fps)), width=job.width, height=job.height, fps=job.fps,
            cost_usd=result.cost_usd, seconds_spent=round(result.seconds, 3), sha256=sha256_hex(result.mp4),
            normalised=False,
        )
        if record.state is SegmentState.GENERATED:  # recorded by an earlier version, in its segment file's place
            manifest = update_record(manifest, index, clip=clip)
        else:
            manifest = transition(
                manifest, index, SegmentState.GENERATED,
                task_id=result.task_id, clip=clip, cost_usd=record.cost_usd + result.cost_usd, provider=result.provider,
                resources=result.resources, cached=cached, seed=job.seed, cache_key=key,
            )
        write_model(self.run, MANIFEST, manifest)
        if not cached and key:
            # The cache keeps what the provider made for this request: the normalised file also
            # depends on the seams around it (its tail), which the key does not name.
            self.store.cache_put(key, result.mp4)
        return manifest

    def record_normalised(self, manifest: RunManifest, job: SegmentJob, mp4: bytes, seconds: float, key: str) -> RunManifest:
        """The normalised file in the segment's place: what the judge and the merge use."""
        index = job.index
        clip = manifest.segments[index].clip
        self.run.write_bytes(segment_path(index), mp4)
        clip = clip.model_copy(update={"path": segment_path(index), "sha256": sha256_hex(mp4), "normalised": True,
                                       "original": clip.path, "seconds_spent": round(clip.seconds_spent + seconds, 3)})
        manifest = update_record(manifest, index, clip=clip)
        write_model(self.run, MANIFEST, manifest)
        return manifest

    def keep_best_attempt(self, manifest: RunManifest, job: SegmentJob, scores: list[AttemptRecord], reason: str = "") -> RunManifest:
        """No attempt passed: put the best-scoring one in the segment's place, with a warning."""
        run, index = self.run, job.index
        best = max(scores, key=lambda attempt: attempt.quality)
        if best is not scores[-1] and run.exists(best.file):
            run.write_bytes(segment_path(index), run.read_bytes(best.file))
            clip = manifest.segments[index].clip.model_copy(update={"sha256": best.sha256})
            manifest = update_record(manifest, index, clip=clip, seed=best.seed)
            write_model(run, MANIFEST, manifest)
        if self.judge is not None:
            self.judge.remember_accepted(job.model_copy(update={"seed": best.seed}), run.local_path(segment_path(index)))
        return with_warnings(manifest, f"segment {index}: below the consistency thresholds after {len(scores)} attempts; "
                                       f"kept the best one (seed {manifest.segments[index].seed})" + (f": {reason}" if reason else ""))

    def remember(self, manifest: RunManifest, jobs: list[SegmentJob], indices: set[int]) -> None:
        """Segments accepted by an earlier invocation become the judge's context again."""
        if self.judge is None:
            return
        if indices and hasattr(self.judge, "load_state"):
            self.judge.load_state(self.run)
        for index in sorted(indices):
            self.judge.remember_accepted(jobs[index], self.run.local_path(manifest.segments[index].clip.path))

    def save_state(self) -> None:
        if self.judge is not None:
            self.judge.save_state(self.run)

    # -- resume side ------------------------------------------------------------------------

    def reconcile(self, manifest: RunManifest, jobs: list[SegmentJob], idempotent: Callable[[str], bool]) -> RunManifest:
        """Bring an interrupted run's manifest to a state the generate step can continue:
        verified segments are kept, the rest reset or left to be polled. `idempotent`: does
        this provider's submit make the same task again (a free local renderer)?"""
        file_ok = functools.partial(clip_verifies, self.run)
        judge = self.judge
        for index, (action, reason) in resume_plan(manifest, file_ok, idempotent).items():
            record = manifest.segments[index]
            state = record.state
            if action is Action.ACCEPT and state is SegmentState.GENERATED and (judge is not None or not record.clip.normalised):
                continue  # the crash came before the judge saw it, or before it was normalised: the generate step does that
            rejected = (action is Action.ACCEPT and judge is not None and state is SegmentState.JUDGED
                        and bool(record.scores) and not record.scores[-1].passed)
            if rejected and record.regenerations + 1 < judge.max_attempts:
                # The judge had sent it back; the crash came before it was reset: do that now.
                manifest = reset(manifest, index, "the judge rejected it before the render stopped")
                manifest = update_record(manifest, index, regenerations=record.regenerations + 1)
            elif rejected:
                # Rejected on its last allowed attempt before the render stopped: what the render
                # would have done next, keep the best attempt and say so.
                manifest = self.keep_best_attempt(manifest, jobs[index], list(record.scores))
                manifest = transition(manifest, index, SegmentState.ACCEPTED)
            elif action is Action.ACCEPT:
                manifest = transition(manifest, index, SegmentState.ACCEPTED)
            elif action is Action.GENERATE and state is SegmentState.FAILED:
                manifest = transition(manifest, index, SegmentState.PENDING, error=None)
            elif action is Action.GENERATE and state is not SegmentState.PENDING:
                manifest = reset(manifest, index, reason)
        write_model(self.run, MANIFEST, manifest)
        return manifest


# Runway's prompt limit, the smallest of the providers': a provider cuts a longer prompt at its
# end, which is where the adjustments are, so the base prompt is shortened instead.
FOLDED_PROMPT_MAX_CHARS = 1000


def fold_adjustments(prompt: str, adjustments: tuple[str, ...] | list[str], max_chars: int = FOLDED_PROMPT_MAX_CHARS) -> str:
    """The prompt of a regeneration: the segment's prompt with a vision judge's suggested
    changes appended (each once, in order), so the next attempt is asked for what was missing.
    Within `max_chars`: a long base prompt loses its end (at a word) so the adjustments stay."""
    extra = [a.strip().rstrip(".") for a in dict.fromkeys(adjustments) if a and a.strip()]
    if not extra:
        return prompt
    base, tail = prompt.rstrip().rstrip("."), f". Keep consistent: {'; '.join(extra)}."
    if len(base) + len(tail) > max_chars:
        room = max(0, max_chars - len(tail))
        cut = base[:room]
        base = cut.rsplit(" ", 1)[0].rstrip(" ,;:.") if " " in cut and room < len(base) else cut
    return f"{base}{tail}"[:max_chars]


# What a judge may report beside the verdict itself (seed, passed, quality, file and sha256
# are the pipeline's to write).
_CHECK_FIELDS = frozenset(AttemptRecord.model_fields) - {"seed", "passed", "quality", "file", "sha256"}


def _known_checks(scores: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    return {k: v for k, v in scores.items() if k in _CHECK_FIELDS}, {k for k in scores if k not in _CHECK_FIELDS}
