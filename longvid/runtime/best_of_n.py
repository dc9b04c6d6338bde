"""Best-of-N inside the generate loop: the extra candidates of a segment are created beside
its own task, collected in parallel, and judged together with it when all are in (the rules
are in candidates.py). Kept out of generate.py so the loop's state machine stays as it was:
the segment's own task is the loop's, its candidates are this helper's, and the loop only
asks it three things (launch, is this segment still waiting, which candidate is kept).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..manifest import update_record, with_warnings
from ..spec import SegmentJob, SegmentState
from .acceptance import sha256_hex
from .candidates import CandidatePlan, candidate_seed, plan_candidates, without_openers
from .failures import failure_reason, nothing_created
from .layout import MANIFEST, segment_path
from .normalisation import needs_normalising
from .resume import segment_key
from .store import write_model
from .tasks import COLLECT_RETRIES, SegmentResult, normalise_segment


class BestOfN:
    def __init__(self, loop: Any, price_per_second_usd: float) -> None:
        self.loop = loop
        # Only segments still to make count beside the budget: accepted ones (kept by an edit,
        # or done before a resume) are paid for already, in committed_usd or by an earlier version.
        to_make = [j for j in loop.jobs if loop.manifest.segments[j.index].state is not SegmentState.ACCEPTED]
        plan, note = plan_candidates(loop.spec, to_make, price_per_second_usd, loop.ledger.committed_usd)
        if plan.count > 1 and loop.acceptance.judge is None:
            plan, note = CandidatePlan(1), "--candidates needs a judge to choose between them: making one per segment"
        plan, blind = without_openers(plan, getattr(loop.acceptance.judge, "compares_openers", True))
        self.plan = plan
        for said in (note, blind):
            if said:
                loop.manifest = with_warnings(loop.manifest, said)
        self.extras: dict[Any, tuple[int, int, SegmentJob, str, str, str | None]] = {}  # handle -> (index, k, attempt, provider, key, task)
        self.done: dict[int, list[tuple[int, SegmentJob, SegmentResult, str]]] = {}
        self.pending: dict[int, int] = {}  # segment -> candidates still in flight
        self.stashed: dict[int, tuple] = {}  # segment -> its own result, waiting for its candidates

    def launch(self, name: str, attempt: SegmentJob, conditioning: bytes | None) -> None:
        """Create and start the extra candidates of `attempt` at provider `name` (each reserved
        in the ledger first); one that cannot be made is skipped with a warning."""
        loop, index = self.loop, attempt.index
        count = self.plan.for_job(attempt)
        if count <= 1 or index in self.pending or index in self.done:
            return  # none asked for, or made already (the segment's own task is being retried)
        caps, ledger = loop.router.capabilities(name), loop.ledger
        launched = 0
        for k in range(1, count):
            cand = attempt.model_copy(update={"seed": candidate_seed(attempt.seed, k)})
            entry = f"seg{index}/cand{k}-{sum(1 for e in ledger.entries if e.key.startswith(f'seg{index}/cand{k}-')) + 1}"
            try:
                if loop._paid(name):
                    ledger.reserve(entry, index, name, caps.price_per_second_usd * cand.generate_duration_s)
                    loop._write(loop._with_ledger())  # on disk before the create call, like the segment's own
                task_id = loop.router.client(name).submit(cand, conditioning)
            except Exception as exc:  # the budget or the provider refused: fewer candidates, said once
                if any(e.key == entry for e in ledger.entries):
                    if nothing_created(exc):
                        ledger.release(entry, note="candidate not created")
                    else:
                        ledger.charge(entry, None, note="candidate create outcome unknown; counted at the estimate")
                loop.manifest = with_warnings(loop.manifest, f"segment {index}: candidate {k + 1} not made: {failure_reason(name, exc)}"[:300])
                continue
            if loop._paid(name):
                ledger.attach_task(entry, task_id)
            handle = loop.runner.collect(name, task_id, cand, loop.requests[index], conditioning, False,
                                         COLLECT_RETRIES, loop.settings.for_provider(name))  # polls only: see generate._launch
            self.extras[handle] = (index, k, cand, name, segment_key(name, caps.cache_model, cand, conditioning), task_id)
            launched += 1
        if launched:
            self.pending[index] = launched
            self.done[index] = []
        loop._write(loop._with_ledger())

    def collected(self, handle: Any) -> None:
        """A candidate's task ended: keep its clip (in the house format) or say why not."""
        loop = self.loop
        index, k, cand, name, key, task_id = self.extras.pop(handle)
        try:
            result = loop.runner.result(handle)
            if loop._paid(name):
                loop._settle(name, result.task_id, result.cost_usd)
            if needs_normalising(result.mp4, cand) is not None:  # in the driver: candidates are few
                done = normalise_segment(cand, result.mp4, False)
                result = dataclasses.replace(result, mp4=done.mp4, seam_png=None)
            self.done[index].append((k, cand, result, key))
        except Exception as exc:
            if loop._paid(name):
                loop._settle(name, task_id, None, "candidate failed; counted at the estimate")
            loop.manifest = with_warnings(loop.manifest, f"segment {index}: candidate {k + 1} failed: {failure_reason(name, exc)}"[:300])
        loop._write(loop._with_ledger())
        self.pending[index] -= 1
        if self.pending[index] == 0:
            del self.pending[index]
            if index in self.stashed:
                loop._finished(*self.stashed.pop(index))

    def waiting(self, attempt: SegmentJob, key: str, result: SegmentResult, cached: bool, recorded: bool) -> bool:
        """True (and the segment's own result kept) while its candidates are still in flight."""
        if self.pending.get(attempt.index):
            self.stashed[attempt.index] = (attempt, key, result, cached, recorded)
            return True
        return False

    def choose(self, attempt: SegmentJob, key: str, result: SegmentResult, recorded: bool):
        """None without candidates; else (attempt, key, result, recorded) of the one the judge
        keeps. Every candidate's cost is added to the segment's: the kept one's by the usual
        recording unless the segment's own clip was recorded already."""
        extras = self.done.pop(attempt.index, None)
        if not extras:
            return None
        loop, index = self.loop, attempt.index
        # A clip recorded already (normalised, or resumed) arrives here at $0, its cost being on
        # the record since it arrived: show the candidate at what it cost, and count it once.
        counted = 0.0
        if recorded and loop.manifest.segments[index].clip is not None:
            counted = loop.manifest.segments[index].clip.cost_usd
            result = dataclasses.replace(result, cost_usd=counted)
        candidates = [(0, attempt, result, key), *sorted(extras, key=lambda c: c[0])]
        # choose_candidate adds the cost of every candidate not kept (less `counted`); the kept
        # one's is added when finish() records it, or, when the segment's own clip was recorded
        # already, here.
        manifest, (kept, kept_result, kept_key) = loop.acceptance.choose_candidate(loop.manifest, loop.jobs, candidates, counted)
        if recorded and kept.seed != attempt.seed:  # put the kept candidate in the recorded clip's place
            record = manifest.segments[index]
            loop.run_folder.write_bytes(segment_path(index), kept_result.mp4)
            clip = record.clip.model_copy(update={"sha256": sha256_hex(kept_result.mp4), "cost_usd": kept_result.cost_usd})
            manifest = update_record(manifest, index, clip=clip, seed=kept.seed, cache_key=kept_key,
                                     cost_usd=record.cost_usd + kept_result.cost_usd)
            write_model(loop.run_folder, MANIFEST, manifest)
        loop.manifest = manifest
        return kept, kept_key, kept_result, recorded
