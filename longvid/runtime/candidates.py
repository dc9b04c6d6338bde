"""Best-of-N: several candidates of a segment, generated at once, the best kept by the judge.

`--candidates N` makes N candidates (the planned seed and N-1 others) of each scene opener
(`--candidates-for openers`, the default: an opener gates the chain behind it and sets the
scene's look) or of every segment (`all`). They are created together and collected in
parallel; when all are in, each is scored by the judge without being remembered, the best
(passing first, then the judge's quality, then the earliest) goes on as the segment's result
(judged again for the record, accepted or regenerated as usual), and every candidate is
listed in the segment's record (`candidates`) and in report.json / report.html with its
scores. Every candidate's cost is reserved and charged in the ledger (`segN/candK`) and
added to the segment's cost.

Openers need a judge that can compare them (`without_openers`): the structural scorer with
no reference images has nothing to hold an opener against, so openers then get one
candidate and the render says so up front (a warning, not an error: the render itself is
fine, only the extra candidates would be wasted).

The budget: before the render, N is lowered (with a warning) to the largest count whose
extra candidates, at the cheapest provider's price, still fit in the budget next to one
generation of every segment; `plan`'s estimate shows one. Candidates still in flight when a
render stops are cancelled and not asked for again on resume (their ledger entries stay on
the books); only a segment's first attempt has candidates, not its regenerations.

Pure decisions here; the generate loop (generate.py) and acceptance do the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..spec import RenderSpec, SegmentJob
from .resume import attempt_seed

CANDIDATE_SEED_OFFSET = 1000  # candidate k's seed is attempt_seed(seed, 1000 + k): never a regeneration's


def candidate_seed(seed: int, k: int) -> int:
    return seed if k == 0 else attempt_seed(seed, CANDIDATE_SEED_OFFSET + k)


def candidate_path(index: int, k: int) -> str:
    return f"segments/seg_{index:04d}.cand{k}.mp4"


@dataclass(frozen=True)
class CandidatePlan:
    count: int = 1  # N after the budget
    scope: str = "openers"  # or "all", or "inside" (all but openers: see without_openers)

    def for_job(self, job: SegmentJob) -> int:
        """How many candidates of `job` to make (1: none beyond the segment itself)."""
        if self.count <= 1:
            return 1
        if self.scope == "inside":
            return self.count if job.segment_in_scene > 0 else 1
        return self.count if self.scope == "all" or job.segment_in_scene == 0 else 1


def plan_candidates(spec: RenderSpec, jobs: Sequence[SegmentJob], price_per_second_usd: float,
                    committed_usd: float = 0.0) -> tuple[CandidatePlan, str | None]:
    """N bounded by the budget: the largest N whose extra candidates (at `price_per_second_usd`)
    fit beside one generation of every segment and what is already committed. Returns the
    plan and a warning when N had to be lowered."""
    wanted = CandidatePlan(spec.candidates, spec.candidates_for)
    if wanted.count <= 1 or spec.budget_usd is None or price_per_second_usd <= 0:
        return wanted, None
    base = sum(price_per_second_usd * j.generate_duration_s for j in jobs)
    extra_each = sum(price_per_second_usd * j.generate_duration_s for j in jobs if wanted.for_job(j) > 1)
    room = spec.budget_usd - committed_usd - base
    fits = 1 + (int(room // extra_each + 1e-9) if extra_each > 0 and room > 0 else 0)
    if fits >= wanted.count:
        return wanted, None
    fits = max(1, fits)
    # Said by the CLI's render and plan and by the API's plans and renders alike: both names.
    return CandidatePlan(fits, wanted.scope), (
        f"{wanted.count} candidates per segment (--candidates {wanted.count}, or the request's \"candidates\") would need "
        f"up to ${base + extra_each * (wanted.count - 1):.2f} with a ${spec.budget_usd:.2f} budget: "
        f"making {fits} candidate{'s' if fits != 1 else ''} per segment instead")


def extra_candidate_seconds(plan: CandidatePlan, jobs: Sequence[SegmentJob]) -> float:
    """Generated seconds the candidates beyond each segment's own add (what an estimate counts:
    openers included, since whether the judge can compare them is known only at render time)."""
    return sum((plan.for_job(j) - 1) * j.generate_duration_s for j in jobs)


def without_openers(plan: CandidatePlan, judge_compares_openers: bool) -> tuple[CandidatePlan, str | None]:
    """A scene opener has no scene anchor, seam or long-range anchor yet, so unless the judge
    has something else to compare it with (CLIP's prompt score, reference images, Gemini as
    the primary judge) every candidate scores alike and the planned seed always wins: paying
    for the others would be waste. Then openers get one candidate, said once, up front."""
    if plan.count <= 1 or judge_compares_openers:
        return plan, None
    why = ("the judge cannot tell scene openers apart (no CLIP, no --image references, no --judge gemini): "
           "scene openers get one candidate")
    if plan.scope == "all":
        return CandidatePlan(plan.count, "inside"), why
    return CandidatePlan(1), f"--candidates {plan.count} for scene openers needs a judge that can compare them: {why}"


def pick_best(scored: Sequence[tuple[int, bool, float]]) -> int:
    """The k of the best candidate among (k, passed, quality): passing first, then quality,
    then the earliest (the planned seed wins a tie)."""
    if not scored:
        raise ValueError("no candidates to choose from")
    return max(scored, key=lambda c: (c[1], c[2], -c[0]))[0]
